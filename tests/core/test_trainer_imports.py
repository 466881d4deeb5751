"""A cold trainer imports what its first step needs, not the web stack or the export libraries (issue 18,
item 3): `python -m app.worker` pays for torch, SQLAlchemy and the engine, not FastAPI, httpx or onnx."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_a_trainer_does_not_import_the_web_stack_or_export_libraries():
    code = (
        "import sys, app.worker, app.engine.loop, app.datasets.registry, app.runs.sink;"
        "bad = [m for m in ('fastapi', 'starlette', 'httpx', 'onnx', 'onnxscript', 'safetensors', 'sklearn')"
        " if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
