"""Generated PyTorch source is valid, tidy Python (running it is tested in tests/engine/test_build.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.architectures.codegen import to_pytorch_source
from app.architectures.presets import get_preset, list_presets


@pytest.mark.parametrize("name", [preset.name for preset in list_presets()])
def test_presets_generate_code_that_compiles_and_passes_ruff(name, tmp_path):
    source = to_pytorch_source(get_preset(name).spec, class_name="Net")
    compile(source, f"{name}.py", "exec")
    assert "class Net(nn.Module):" in source and 'if __name__ == "__main__":' in source
    assert ("import torchvision" in source) == (name == "transfer-resnet18")
    beside_python = Path(sys.executable).parent / "ruff"
    ruff = str(beside_python) if beside_python.exists() else shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed")
    path = tmp_path / f"{name.replace('-', '_')}.py"
    path.write_text(source)
    result = subprocess.run([ruff, "check", "--isolated", "--select", "E,F,W,I,B,UP", "--line-length", "110",
                             str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_final_softmax_is_a_comment_not_code():
    source = to_pytorch_source(get_preset("mnist-mlp").spec)
    assert "softmax is left to the loss" in source and "torch.softmax" not in source
    assert "x = torch.relu(self.dense1(x))" in source and "self.dense2 = nn.Linear(128, 10)" in source


def test_recurrent_and_keras_padding_read_naturally():
    source = to_pytorch_source({"input_shape": [1, 6, 6], "layers": [
        {"type": "Conv2D", "filters": 2, "kernel_size": 2, "padding": "same"},
        {"type": "Reshape", "target_shape": [12, 6]},
        {"type": "LSTM", "units": 4, "bidirectional": True}]})
    assert "nn.functional.pad(x, (0, 1, 0, 1))" in source
    assert "_, (h_n, _) = self.lstm1(x)" in source and "torch.cat([h_n[-2], h_n[-1]], dim=1)" in source
