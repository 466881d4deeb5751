"""The `precision` run setting: what `auto` chooses (bf16 only where the CPU has bf16 hardware, and only
for convolutional models), a real bf16 run on CPU, the run page and the API's checks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from app.engine import runtime
from app.engine.build import build_model
from app.engine.loop import train
from app.engine.runtime import choose_precision, cpu_bf16_hardware
from app.engine.types import EngineError, ListSink, TrainConfig, TrainJob
from tests.engine.engine_testing import dataset, mlp_spec

TINY_CNN = {"input_shape": [1, 8, 8], "layers": [
    {"type": "Conv2D", "filters": 8, "kernel_size": 3, "padding": "same", "activation": "relu"},
    {"type": "MaxPooling2D", "pool_size": 2},
    {"type": "Flatten"},
    {"type": "Dense", "units": 10, "activation": "softmax"}]}
CPU = torch.device("cpu")


def _hardware(monkeypatch, label: str | None) -> None:
    monkeypatch.setattr(runtime, "cpu_bf16_hardware", lambda: label)


@pytest.mark.parametrize("hardware, expected", [("AMX-bf16", "bf16"), ("AVX512-bf16", "bf16"), (None, "fp32")])
def test_auto_picks_bf16_for_a_cnn_only_where_the_cpu_has_bf16_hardware(monkeypatch, hardware, expected):
    _hardware(monkeypatch, hardware)
    chosen = choose_precision("auto", CPU, build_model(TINY_CNN), image_input=True)
    assert chosen.name == expected
    if hardware:
        assert chosen.channels_last and chosen.scaler is None
        assert chosen.reason == f"bf16 autocast + channels-last: convolutional model on a CPU with {hardware}"
        with chosen.autocast():
            assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
    else:
        assert not chosen.channels_last and "no bf16 hardware" in chosen.reason
        with chosen.autocast():
            assert not torch.is_autocast_enabled("cpu")


def test_auto_keeps_an_mlp_in_fp32_even_with_bf16_hardware(monkeypatch):
    _hardware(monkeypatch, "AMX-bf16")
    chosen = choose_precision("auto", CPU, build_model(mlp_spec(), [1, 8, 8]), image_input=True)
    assert (chosen.name, chosen.channels_last) == ("fp32", False)
    assert "not a convolutional model" in chosen.reason


def test_explicit_choices_and_what_the_cpu_cannot_do(monkeypatch):
    _hardware(monkeypatch, None)
    cnn = build_model(TINY_CNN)
    assert choose_precision("fp32", CPU, cnn, image_input=True).name == "fp32"
    forced = choose_precision("bf16", CPU, cnn, image_input=True)
    assert forced.name == "bf16" and "without bf16 hardware" in forced.reason
    assert not choose_precision("bf16", CPU, cnn, image_input=True, channels_last=False).channels_last
    with pytest.raises(EngineError, match="fp16 needs a CUDA device and this run trains on cpu"):
        choose_precision("fp16", CPU, cnn, image_input=True)
    with pytest.raises(EngineError, match="precision must be one of"):
        choose_precision("fp8", CPU, cnn, image_input=True)


def test_detection_reads_the_cpu_flags_and_torchs_probes(monkeypatch):
    monkeypatch.setattr(runtime, "_torch_probe", lambda name: False)
    for flags, expected in [({"avx512f", "amx_bf16", "amx_tile"}, "AMX-bf16"), ({"avx512f", "avx512_bf16"}, "AVX512-bf16"),
                            ({"avx512f", "avx2"}, None), (set(), None)]:
        monkeypatch.setattr(runtime, "_cpu_flags", lambda flags=flags: flags)
        assert cpu_bf16_hardware() == expected
    monkeypatch.setattr(runtime, "_torch_probe", lambda name: name == "_is_avx512_bf16_supported")
    assert cpu_bf16_hardware() == "AVX512-bf16"


def test_an_old_config_with_mixed_precision_off_reads_as_fp32():
    assert TrainConfig.from_dict({"mixed_precision": False}).precision == "fp32"
    assert TrainConfig.from_dict({"mixed_precision": True}).precision == "auto"
    assert TrainConfig.from_dict({}).precision == "auto"
    assert TrainConfig.from_dict({"mixed_precision": False, "precision": "bf16"}).precision == "bf16"


def test_a_tiny_cnn_trains_on_digits_in_bf16_autocast_and_records_why(monkeypatch, tmp_path):
    _hardware(monkeypatch, "AMX-bf16")
    data = dataset("digits", tmp_path)
    model = build_model(TINY_CNN, data.input_shape)
    seen: list[tuple[bool, torch.dtype, bool]] = []
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    conv.register_forward_hook(lambda m, args, out: seen.append(
        (m.training, out.dtype, args[0].is_contiguous(memory_format=torch.channels_last))))
    job = TrainJob(spec=TINY_CNN, config=TrainConfig(epochs=2, batch_size=32, device="cpu",
                                                      optimizer={"name": "adam", "lr": 0.01}),
                   checkpoint_dir=tmp_path / "ckpt", artifacts_dir=tmp_path / "export")
    sink = ListSink()
    result = train(job, data, sink, model=model)

    training = [s for s in seen if s[0]]
    assert training and all(dtype == torch.bfloat16 and nhwc for _, dtype, nhwc in training)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay float32
    history = result.extra["history"]
    assert len(history) == 2 and all(math.isfinite(h["train_loss"]) for h in history)
    assert history[-1]["train_loss"] < history[0]["train_loss"] and result.test_accuracy > 0.8
    assert result.extra["precision"] == "bf16"
    why = "bf16 autocast + channels-last: convolutional model on a CPU with AMX-bf16"
    assert result.extra["precision_reason"] == why
    assert [p for k, p in sink.events if k == "precision"] == [{"precision": "bf16", "reason": why,
                                                                "channels_last": True}]
    assert any(k == "log" and why in p["message"] for k, p in sink.events)
    # The exports are float32 and work without autocast.
    assert {p["name"] for k, p in sink.events if k == "artifact"} >= {"torchscript"}


def test_an_mlp_run_stays_fp32_with_bf16_hardware(monkeypatch, tmp_path):
    _hardware(monkeypatch, "AMX-bf16")
    job = TrainJob(spec=mlp_spec(16), config=TrainConfig(epochs=1, device="cpu"),
                   checkpoint_dir=tmp_path / "ckpt", artifacts_dir=tmp_path / "export")
    sink = ListSink()
    result = train(job, dataset("digits", tmp_path), sink)
    assert result.extra["precision"] == "fp32"
    assert [p["precision"] for k, p in sink.events if k == "precision"] == ["fp32"]


def test_a_run_the_device_cannot_do_fails_at_start_with_the_reason(tmp_path):
    # The web process cannot know where device auto lands (a Ray node's CPU, say): the trainer says.
    job = TrainJob(spec=mlp_spec(16), config=TrainConfig(epochs=1, device="cpu", precision="fp16"),
                   checkpoint_dir=tmp_path / "ckpt", artifacts_dir=tmp_path / "export")
    sink = ListSink()
    with pytest.raises(EngineError, match="precision fp16 needs a CUDA device and this run trains on cpu: choose auto"):
        train(job, dataset("digits", tmp_path), sink)
    assert not [k for k, _ in sink.events if k in ("step", "epoch")]


# -- the web process: the API's checks, the launch form and the run page --------------------------

def _body(**config) -> dict:
    return {"dataset": "digits", "spec": TINY_CNN, "config": {"epochs": 1, **config}}


def test_the_api_refuses_fp16_on_the_cpu_and_keeps_old_bodies_working(client):
    refused = client.post("/api/runs", json=_body(precision="fp16", device="cpu"))
    assert refused.status_code == 422, refused.text
    assert "fp16 needs a CUDA device" in refused.text and "precision" in refused.text
    on_mps = client.post("/api/runs", json=_body(precision="bf16", device="mps"))
    assert on_mps.status_code == 422 and "not available on MPS" in on_mps.text
    unknown = client.post("/api/runs", json=_body(precision="fp8"))
    assert unknown.status_code == 422 and "precision" in unknown.text
    assert client.post("/api/runs", json=_body()).json()["config"]["precision"] == "auto"
    assert client.post("/api/runs", json=_body(mixed_precision=False)).json()["config"]["precision"] == "fp32"
    assert client.post("/api/runs", json=_body(precision="bf16", device="cpu")).json()["config"]["precision"] == "bf16"


def test_fp16_with_device_auto_is_refused_when_the_server_has_no_gpu(client, monkeypatch):
    from app.runs import schemas

    monkeypatch.setattr(schemas, "visible_gpus", lambda: ())
    refused = client.post("/api/runs", json=_body(precision="fp16"))
    assert refused.status_code == 422 and "this server has no GPU" in refused.text
    monkeypatch.setattr(schemas, "visible_gpus", lambda: ("0",))
    assert client.post("/api/runs", json=_body(precision="fp16")).status_code == 201


def test_the_launch_form_offers_the_setting_and_says_what_to_fix(client):
    html = client.get("/runs/new").text
    assert 'name="config.precision"' in html
    for option in ("auto", "fp32", "bf16", "fp16"):
        assert f'<option value="{option}"' in html
    assert '<option value="auto" selected>' in html
    posted = client.post("/runs", data={"model": "quick:digits-mlp", "dataset": "digits", "config.epochs": "1",
                                            "config.device": "cpu", "config.precision": "fp16"})
    assert posted.status_code == 422 and "fp16 needs a CUDA device" in posted.text


def test_the_run_page_shows_the_precision_the_trainer_chose(client):
    from app.core.db import session_scope
    from app.runs.sink import persist_batch

    run_id = client.post("/api/runs", json=_body()).json()["id"]
    assert 'id="stat-precision" title="chosen when training starts">–' in client.get(f"/runs/{run_id}").text
    why = "bf16 autocast + channels-last: convolutional model on a CPU with AMX-bf16"
    with session_scope() as db_session:
        persist_batch(db_session, run_id, [("precision", {"precision": "bf16", "reason": why, "channels_last": True})])
    page = client.get(f"/runs/{run_id}").text
    assert f'<dd id="stat-precision" title="{why}">bf16 <span class="muted small" id="stat-precision-reason">({why})' in page



def test_the_api_and_compare_say_which_precision_each_run_trained_in(client):
    from app.core.db import session_scope
    from app.runs.sink import persist_batch

    cnn, mlp = (client.post("/api/runs", json=_body()).json()["id"] for _ in range(2))
    assert client.get(f"/api/runs/{cnn}").json()["precision"] is None, "queued: nothing chosen yet"
    why = "bf16 autocast + channels-last: convolutional model on a CPU with AVX512-bf16"
    with session_scope() as db_session:
        persist_batch(db_session, cnn, [("precision", {"precision": "fp32", "reason": "first start",
                                                       "channels_last": False})])
        # A resumed run chooses again: the latest choice is the one that holds.
        persist_batch(db_session, cnn, [("precision", {"precision": "bf16", "reason": why, "channels_last": True})])
        persist_batch(db_session, mlp, [("precision", {"precision": "fp32", "reason": "not convolutional",
                                                       "channels_last": False})])
    assert client.get(f"/api/runs/{cnn}").json()["precision"] == {"precision": "bf16", "reason": why,
                                                                   "channels_last": True}
    compared = client.get("/api/compare", params={"runs": f"{cnn},{mlp}"}).json()
    assert [r["precision"] for r in compared["runs"]] == ["bf16", "fp32"]
    assert {"setting": "precision used", "values": ["bf16", "fp32"]} in compared["differences"]
    table = client.get("/api/compare.csv", params={"runs": f"{cnn},{mlp}"})
    assert table.status_code == 200, table.text  # the CSV lists the settings that differ, this one included
    header, first, second = table.text.splitlines()[:3]
    assert "precision used" in header and "bf16" in first and "fp32" in second
