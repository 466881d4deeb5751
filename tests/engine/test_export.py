"""Exports load back and answer like the trained model (with its output activation)."""

from __future__ import annotations

import ast
import re
import sys

import numpy as np
import onnx
import pytest
import tomllib
import torch
from onnx.reference import ReferenceEvaluator
from safetensors.torch import load_file

from app.engine import export
from app.engine.build import build_model
from tests.conftest import ROOT
from tests.engine.engine_testing import dataset, mlp_spec, run, subset


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("export")
    data = subset(dataset("moons", tmp_path), 200)
    _, sink = run(tmp_path, mlp_spec(8, 2), data, epochs=1)
    model = build_model(mlp_spec(8, 2), [2])
    model.load_state_dict(load_file(tmp_path / "run" / "export" / export.WEIGHTS))
    return tmp_path / "run", sink, model.eval()


def test_artifact_events(trained):
    directory, sink, _ = trained
    artifacts = {a["name"]: a for a in sink.of("artifact")}
    assert set(artifacts) == {"weights", "torchscript", "onnx"}
    for artifact in artifacts.values():
        assert artifact["bytes"] > 0 and str(directory / "export") in artifact["path"]


def test_safetensors_match_the_last_checkpoint(trained):
    directory, _, model = trained
    checkpoint = torch.load(directory / "ckpt" / "epoch-0001.pt", weights_only=True)["model"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, checkpoint[key])


@pytest.mark.filterwarnings("ignore:.*torch.jit.*:FutureWarning")
def test_torchscript_matches(trained):
    directory, _, model = trained
    scripted = torch.jit.load(str(directory / "export" / export.TORCHSCRIPT))
    x = torch.randn(7, 2)
    with torch.no_grad():
        assert torch.allclose(scripted(x), torch.softmax(model(x), dim=1), atol=1e-6)


def test_onnx_is_valid_and_matches(trained):
    directory, _, model = trained
    path = directory / "export" / export.ONNX
    onnx.checker.check_model(onnx.load(str(path)))
    x = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)  # another batch size: dynamic axis
    (out,) = ReferenceEvaluator(str(path)).run(None, {"input": x})
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(x)), dim=1).numpy()
    assert np.allclose(out, expected, atol=1e-5)


def test_failed_export_is_a_warning_not_a_failure(tmp_path, monkeypatch):
    def broken(*_args):
        raise RuntimeError("no exporter today")

    monkeypatch.setitem(export.EXPORTERS, "onnx", broken)
    result, sink = run(tmp_path, mlp_spec(8, 2), subset(dataset("moons", tmp_path), 100), epochs=1)
    assert result.test_accuracy is not None
    assert {a["name"] for a in sink.of("artifact")} == {"weights", "torchscript"}
    assert any("onnx export failed" in log["message"] and log["level"] == "warning" for log in sink.of("log"))


def test_a_plain_install_brings_every_exports_library():
    """`make run` installs `-e .` with no extras, and every run exports all formats: the libraries the
    exports import (and onnxscript, which torch.onnx's exporter needs) are default dependencies, so no run
    logs "No module named 'onnx'" and no ONNX download is greyed out."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    installed = {re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower() for requirement in project["dependencies"]}
    tree = ast.parse((ROOT / "app" / "engine" / "export.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    needed = {name for name in imported if name not in sys.stdlib_module_names and name != "app"} | {"onnxscript"}
    assert needed == {"torch", "safetensors", "onnx", "onnxscript"}  # what the exports use today
    assert needed <= installed, needed - installed
