"""The architecture core and the layer registry must not pull torch into the web process, not even indirectly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_architecture_modules_do_not_import_torch():
    code = (
        "import sys\n"
        "import app.architectures.spec, app.architectures.summary, app.architectures.keras_import\n"
        "import app.architectures.codegen, app.architectures.presets, app.layers.registry\n"
        "import importlib, pkgutil, app.layers\n"
        "layers = [m.name for m in pkgutil.iter_modules(app.layers.__path__) if m.name != 'torch_modules']\n"
        "assert len(layers) > 5, layers\n"
        "for name in layers:\n"
        "    importlib.import_module('app.layers.' + name)\n"
        "from app.architectures.presets import list_presets\n"
        "from app.architectures.summary import summarize\n"
        "from app.architectures.codegen import to_pytorch_source\n"
        "for preset in list_presets():\n"
        "    summarize(preset.spec); to_pytorch_source(preset.spec)\n"
        "bad = [m for m in ('torch', 'torchvision', 'numpy') if m in sys.modules]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
