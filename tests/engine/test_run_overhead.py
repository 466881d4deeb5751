"""What is not training stays off the training loop's path (issue 18, item 2): checkpoints are written by a
background thread and are all on disk when `train` returns or raises; TorchScript and ONNX can be left for
after the run is reported complete."""

from __future__ import annotations

import threading

import pytest
import torch

from app.engine import checkpoint as ckpt
from app.engine.export import DEFERRABLE, Exports
from app.engine.loop import train
from app.engine.types import ListSink, StoppedError, TrainConfig, TrainJob
from tests.engine.engine_testing import dataset, mlp_spec, run, subset


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return subset(dataset("digits", tmp_path_factory.mktemp("data")), 200, 60)


def _recording_save(monkeypatch) -> list[tuple[str, str]]:
    """ckpt.save, recording which thread wrote which file."""
    calls: list[tuple[str, str]] = []
    real = ckpt.save

    def save(path, payload):
        calls.append((threading.current_thread().name, path.name))
        return real(path, payload)

    monkeypatch.setattr(ckpt, "save", save)
    return calls


def test_checkpoints_are_written_off_the_training_thread_and_on_disk_before_their_events(tmp_path, digits,
                                                                                          monkeypatch):
    calls = _recording_save(monkeypatch)
    on_disk_when_reported = []

    class Sink(ListSink):
        def emit(self, kind, payload):
            if kind == "checkpoint":
                on_disk_when_reported.append((payload["epoch"], (tmp_path / "run" / "ckpt" / f"epoch-{payload['epoch']:04d}.pt").is_file()))
            super().emit(kind, payload)

    trainer = threading.current_thread().name
    result, sink = run(tmp_path, mlp_spec(16), digits, sink=Sink(), epochs=3, batch_size=32, keep_checkpoints=2)
    assert [name for _, name in calls] == ["epoch-0001.pt", "epoch-0002.pt", "epoch-0003.pt"]
    assert all(thread == "checkpoint-writer" and thread != trainer for thread, _ in calls)
    assert on_disk_when_reported == [(1, True), (2, True), (3, True)]
    assert [e["pruned"] for e in sink.of("checkpoint")] == [[], [], [1]]  # pruned by the writer, after saving
    assert sorted(p.name for p in (tmp_path / "run" / "ckpt").iterdir()) == ["epoch-0002.pt", "epoch-0003.pt"]
    # The payload was copied when the epoch ended: the file holds epoch 3's weights, not later ones.
    saved = ckpt.load(tmp_path / "run" / "ckpt" / "epoch-0003.pt")
    assert saved["epoch"] == 3 and [h["epoch"] for h in saved["history"]] == [1, 2, 3]
    assert result.epochs_completed == 3


def test_a_stopped_run_has_its_last_checkpoint_on_disk_and_resumes_from_it(tmp_path, digits, monkeypatch):
    calls = _recording_save(monkeypatch)
    sink = ListSink()
    with pytest.raises(StoppedError):
        run(tmp_path, mlp_spec(16), digits, name="cut", sink=sink, epochs=3, batch_size=32,
            should_stop=lambda: len(sink.of("epoch")) >= 2)
    last = tmp_path / "cut" / "ckpt" / "epoch-0002.pt"
    assert last.is_file() and [name for _, name in calls] == ["epoch-0001.pt", "epoch-0002.pt"]
    assert [e["epoch"] for e in sink.of("checkpoint")] == [1, 2]  # both reported before train raised
    result, resumed = run(tmp_path, mlp_spec(16), digits, name="resumed", resume_from=last, epochs=3, batch_size=32)
    full, whole = run(tmp_path, mlp_spec(16), digits, name="full", epochs=3, batch_size=32)
    assert [e["epoch"] for e in resumed.of("epoch")] == [3]
    assert resumed.of("epoch")[-1]["train_loss"] == whole.of("epoch")[-1]["train_loss"]
    assert result.test_accuracy == full.test_accuracy


def test_a_checkpoint_that_cannot_be_written_fails_the_run(tmp_path, digits, monkeypatch):
    def broken(path, payload):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt, "save", broken)
    with pytest.raises(OSError, match="No space left"):
        run(tmp_path, mlp_spec(16), digits, name="full-disk", epochs=2, batch_size=32)


@pytest.mark.filterwarnings("ignore:.*torch.jit.*:FutureWarning")
def test_deferred_exports_wait_for_the_caller(tmp_path, digits):
    sink = ListSink()
    job = TrainJob(spec=mlp_spec(16), config=TrainConfig(epochs=1, batch_size=32, device="cpu"),
                   checkpoint_dir=tmp_path / "ckpt", artifacts_dir=tmp_path / "export", defer_exports=True)
    result = train(job, digits, sink)
    # The weights are written at once (predict and explain read them); TorchScript and ONNX are not.
    assert [a["name"] for a in sink.of("artifact")] == ["weights"]
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["model.safetensors"]
    assert isinstance(result.pending_exports, Exports)
    later = ListSink()
    result.pending_exports.run(later)
    assert [a["name"] for a in later.of("artifact")] == list(DEFERRABLE)
    scripted = torch.jit.load(str(tmp_path / "export" / "model.torchscript.pt"))
    assert scripted(torch.rand(3, 1, 8, 8)).shape == (3, 10)
    assert (tmp_path / "export" / "model.onnx").stat().st_size > 1000


def test_without_defer_every_export_is_written_by_train(tmp_path, digits):
    result, sink = run(tmp_path, mlp_spec(16), digits, epochs=1, batch_size=32)
    assert result.pending_exports is None
    assert [a["name"] for a in sink.of("artifact")] == ["weights", "torchscript", "onnx"]
