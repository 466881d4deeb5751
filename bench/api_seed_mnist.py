"""The seed's MNIST MLP through the whole product: POST /api/runs → completed, against a plain loop.

Starts `trainboard serve` on a temporary database, imports the real MNIST files, submits the
tutorial's MLP (5 epochs, batch 32, Adam, trained on all 60,000 images as the tutorial's
`model.fit(x_train, y_train, epochs=5)` does: `val_split` 0) through the API and waits for `completed`; then runs
a plain hand-written PyTorch loop in this script. Prints the time from POST to the first metric
row, both accuracies, both times, and their ratio on the last line (target <= 1.3).

    python bench/api_seed_mnist.py [--mnist DIR] [--epochs 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _seed_bench():
    spec = importlib.util.spec_from_file_location("seed_mnist", ROOT / "bench" / "seed_mnist.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _wait_ready(url: str, data_dir: Path, timeout: float = 60) -> None:
    """Healthy, and a warm trainer standing by (as on a server that has been up for a while)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            healthy = httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            healthy = False
        logs = list((data_dir / "logs").glob("standby-*.log")) if (data_dir / "logs").exists() else []
        if healthy and any("ready" in p.read_text() for p in logs):
            return
        time.sleep(0.1)
    raise SystemExit("server did not become ready")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--val-split", type=float, default=0.0, help="the run's validation split (the tutorial: 0)")
    args = parser.parse_args()
    from app.datasets import registry
    from tests.conftest import free_port

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        registry.import_idx("mnist", args.mnist, data_dir)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "TRAINBOARD_DATA_DIR": str(data_dir), "TRAINBOARD_SLOTS": "1"}
        server = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port),
                                   "--log-level", "warning"], cwd=ROOT, env=env)
        try:
            _wait_ready(url, data_dir)
            body = {"preset": "mnist-mlp", "dataset": "mnist",
                    "config": {"epochs": args.epochs, "batch_size": 32,
                               "optimizer": {"name": "adam", "lr": 0.001}, "seed": 0,
                               "val_split": args.val_split}}
            with httpx.Client(base_url=url, timeout=30) as api:
                posted = time.perf_counter()
                run = api.post("/api/runs", json=body).json()
                first_metric, seen = None, 0
                while first_metric is None:  # a tight poll, as a watching browser would see it
                    rows = api.get(f"/api/runs/{run['id']}/metrics", params={"after": seen}).json()
                    seen = rows[-1]["seq"] if rows else seen
                    if any(r["kind"] in ("step", "epoch") for r in rows):
                        first_metric = time.perf_counter() - posted
                    elif any(r["kind"] == "status" and r["payload"]["status"] == "failed" for r in rows):
                        break
                    time.sleep(0.01)
                while True:
                    state = api.get(f"/api/runs/{run['id']}").json()
                    if state["status"] in ("completed", "failed", "cancelled"):
                        break
                    time.sleep(0.05)
                api_time = time.perf_counter() - posted
        finally:
            server.terminate()
            server.wait(timeout=15)
        if state["status"] != "completed":
            raise SystemExit(f"run {state['status']}: {state['failure_reason']}")
        seed = _seed_bench()
        data = registry.load_dataset("mnist", data_dir, val_split=args.val_split)
        plain_acc, plain_time = seed.plain_loop(data, args.epochs)
    print(f"POST to first metric row: {first_metric or float('nan'):.2f} s")
    print(f"through the API : test accuracy {state['test_accuracy']:.4f}, POST to completed {api_time:.2f} s")
    print(f"plain loop      : test accuracy {plain_acc:.4f}, training {plain_time:.2f} s")
    print(f"ratio API/plain: {api_time / plain_time:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
