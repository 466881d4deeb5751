"""bench/gpu.py on this CPU: without CUDA it says that nothing was measured; `--cpu-smoke` runs its code paths
(every variant, the guard around a failing one, the API part) end to end with tiny sizes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
VARIANTS = ["fp32 eager", "AMP {amp} eager", "fp32 whole step as one CUDA graph", "fp32 torch.compile",
            "AMP {amp} torch.compile", "AMP {amp} torch.compile reduce-overhead (CUDA graphs)"]


def gpu_py(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "bench/gpu.py", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def lines(out: str, label: str) -> list[str]:
    """The rows of one variant (each row is three spaces, the label padded to 58, then the figures)."""
    return [line for line in out.splitlines() if line.startswith("   ") and line[3:61].rstrip() == label]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the script measures there")
def test_without_cuda_it_says_nothing_was_measured():
    done = gpu_py("--skip-api", "--skip-tests", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "no CUDA device: nothing measured" in done.stdout
    assert "samples/s" not in done.stdout and "torch CPU threads" in done.stdout


def test_cpu_smoke_fp16_runs_every_variant_and_goes_on_past_one_that_fails():
    done = gpu_py("--cpu-smoke", "--skip-api", "--amp", "fp16", "--threads", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "fp16 autocast + GradScaler" in out
    for model in ("mlp", "cnn"):
        assert f"-- {model}:" in out
    for label in VARIANTS:
        found = lines(out, label.format(amp="fp16"))
        assert len(found) == 2 and all("samples/s" in line for line in found), (label, out)
    # fp16's GradScaler cannot be captured: the variant says why, and the script goes on after it
    failed = lines(out, "AMP fp16 whole step as one CUDA graph")
    assert len(failed) == 2 and all("FAILED" in line and "not capturable" in line for line in failed)
    assert "skipped: channels-last is a layout for 4-D" in out  # the MLP
    assert "samples/s" in lines(out, "AMP fp16 + channels-last eager")[1]  # the CNN
    assert out.rstrip().splitlines()[-1].lstrip().startswith("total")


def test_cpu_smoke_end_to_end_through_the_api():
    done = gpu_py("--cpu-smoke", "--threads", "1")
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "FAILED" not in out, out
    for label in VARIANTS + ["AMP {amp} whole step as one CUDA graph"]:
        assert len(lines(out, label.format(amp="bf16"))) == 2, (label, out)
    assert "-- API: POST /api/runs → completed" in out
    runs = [line for line in out.splitlines() if line.strip().startswith("run ")]
    assert len(runs) == 2 and all("completed in" in line and "(POST → completed)" in line for line in runs), out
