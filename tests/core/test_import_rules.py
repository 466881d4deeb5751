"""The layering in docs/DESIGN.md §2, checked on the source: who may import what."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"
STDLIB = set(sys.stdlib_module_names)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_engine_imports_only_torch_numpy_and_the_standard_library():
    # safetensors and onnx are the export formats' own libraries (no web, no database).
    allowed_roots = {"torch", "torchvision", "numpy", "safetensors", "onnx", "onnxscript"} | STDLIB
    for path in (APP / "engine").glob("*.py"):
        for name in _imports(path):
            root = name.split(".")[0]
            if root == "app":
                assert name.startswith("app.engine"), f"{path.name} imports {name}"
            else:
                assert root in allowed_roots, f"{path.name} imports {name}"


def test_workers_and_executors_never_import_api_or_web():
    paths = [APP / "worker.py", *(APP / "executors").glob("*.py")]
    for path in paths:
        for name in _imports(path):
            assert not name.startswith(("app.api", "app.web")), f"{path} imports {name}"


def test_services_do_not_know_http():
    for domain in ("architectures", "runs", "datasets", "compare"):
        for path in (APP / domain).glob("*.py"):
            for name in _imports(path):
                assert not name.startswith(("fastapi", "starlette", "app.api", "app.web")), f"{path} imports {name}"
