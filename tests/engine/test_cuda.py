"""The engine on a CUDA device: mixed precision, channels-last and the per-step schedules. Marked `cuda`:
on a machine without one they are deselected at collection (tests/conftest.py), so a CPU run reports them
as deselected, never as skipped or passed; on a GPU machine every run includes them (bench/gpu.py runs
`pytest -m cuda`)."""

from __future__ import annotations

import pytest
import torch

from tests.engine.engine_testing import CNN_SPEC, cifar_like, dataset, mlp_spec, run, subset

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return subset(dataset("digits", tmp_path_factory.mktemp("data")), 1000, 300)


def test_mixed_precision_on_cuda_trains_and_measures_the_gpu(tmp_path, digits):
    result, sink = run(tmp_path, mlp_spec(64), digits, epochs=3, batch_size=32, device="cuda",
                       precision="auto", schedule={"name": "warmup_cosine", "warmup_steps": 20})
    expected = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    assert result.extra["device"].startswith("cuda") and result.extra["precision"] == expected
    assert result.test_accuracy > 0.8
    memory = sink.of("memory")[-1]
    assert memory["kind"] == "cuda" and memory["peak_bytes"] > 0


def test_the_cnn_in_channels_last_on_cuda_matches_the_classes(tmp_path):
    data = cifar_like(256)
    result, sink = run(tmp_path, CNN_SPEC, data, epochs=2, batch_size=64, device="cuda", channels_last=True,
                       optimizer={"name": "adam", "lr": 0.002})
    assert result.test_accuracy > 0.3  # the class sets the mean colour: learnable in two epochs
    assert {a["name"] for a in sink.of("artifact")} >= {"weights"}


def test_fp32_on_cuda_when_asked(tmp_path, digits):
    result, _ = run(tmp_path, mlp_spec(32), digits, epochs=1, device="cuda", precision="fp32")
    assert result.extra["precision"] == "fp32"
