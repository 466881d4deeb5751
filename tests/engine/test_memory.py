"""The training-memory figure: what a model's training adds, not the ~350 MB of torch around it."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT

# Train on digits in a fresh process (as a trainer does: memory freed by earlier tests in this
# process would be reused without raising the resident size) and print the result's memory figures.
SCRIPT = """
import json, sys, tempfile
from pathlib import Path
import torch
torch.set_num_threads(1)
from app.datasets import registry
from app.engine.loop import train
from app.engine.types import ListSink, TrainConfig, TrainJob
units = int(sys.argv[1])
spec = {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": units, "activation": "relu"},
                   {"type": "Dense", "units": 10, "activation": "softmax"}]}
with tempfile.TemporaryDirectory() as tmp:
    data = registry.load_dataset("digits", tmp)
    sink = ListSink()
    result = train(TrainJob(spec=spec, config=TrainConfig(epochs=1, device="cpu"), checkpoint_dir=Path(tmp) / "c",
                            artifacts_dir=Path(tmp) / "e"), data, sink)
    print(json.dumps({"training": result.training_memory_bytes, "peak": result.peak_memory_bytes,
                      "events": [e for e in sink.of("memory")]}))
"""


def _memory(units: int) -> dict:
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(units)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_training_memory_grows_with_the_model_and_leaves_out_the_process():
    small, large = _memory(16), _memory(16384)  # ~1.2 K against ~1.2 M parameters (x4: weights, grads, Adam)
    assert small["training"] is not None and large["training"] is not None
    assert small["training"] < 30 << 20 < small["peak"]  # torch alone is far more than a tiny model needs
    assert large["training"] - small["training"] > 12 << 20  # 1.2 M params * 4 bytes * 4 copies = 19 MB
    assert large["events"], "the run reported no memory events"
    assert all(e["training_bytes"] is not None and e["kind"] == "rss" for e in large["events"])
