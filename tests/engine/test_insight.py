"""Per-layer histograms and gradient warnings (app/engine/histograms.py), through the real training loop
on the digits data set with an in-memory sink."""

from __future__ import annotations

import pytest
import torch

from app.engine import histograms as hist
from app.engine.types import DivergedError, ListSink
from tests.engine.engine_testing import dataset, mlp_spec, run, subset

SMALL_CNN = {"layers": [
    {"type": "Conv2D", "filters": 8, "kernel_size": 3, "padding": "same", "activation": "relu"},
    {"type": "MaxPooling2D", "pool_size": 2},
    {"type": "Flatten"},
    {"type": "Dense", "units": 10, "activation": "softmax"}]}

# No ReLU to die: with a huge step the weights and the loss run off to infinity.
LINEAR_STACK = {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 32, "activation": "linear"},
                           {"type": "Dense", "units": 32, "activation": "linear"},
                           {"type": "Dense", "units": 10, "activation": "softmax"}]}


def sigmoid_stack(depth: int) -> dict:
    return {"layers": [{"type": "Flatten"}, *[{"type": "Dense", "units": 32, "activation": "sigmoid"}] * depth,
                       {"type": "Dense", "units": 10, "activation": "softmax"}]}


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return dataset("digits", tmp_path_factory.mktemp("data"))


def warnings(sink: ListSink, kind: str) -> list[str]:
    return [e["message"] for e in sink.of("log") if e["level"] == "warning" and e["message"].startswith(kind)]


def test_a_normal_run_records_histograms_per_layer_and_no_warning(tmp_path, digits):
    _, sink = run(tmp_path, mlp_spec(32), digits, epochs=2, batch_size=32)
    events = sink.of("histograms")
    assert [e["epoch"] for e in events] == [1, 2]
    val_batch = max(32, len(digits.y_train) // 64)  # 1/64 of the training samples, at least 32
    for event in events:
        assert event["bins"] == hist.BINS and event["warnings"] == [] and event["batch"] == val_batch
        # Flatten has no parameters: the two Dense layers, numbered as the spec's layers.
        assert [(layer["name"], layer["type"]) for layer in event["layers"]] == [("#2 Dense", "Dense"), ("#3 Dense", "Dense")]
        first, last = event["layers"]
        assert first["description"] == "Dense 32, relu"
        for layer, (fan_in, units) in zip(event["layers"], [(64, 32), (32, 10)], strict=True):
            assert layer["params"] == fan_in * units  # the kernel; biases are left out
            assert sum(layer["weights"]["counts"]) == fan_in * units
            assert sum(layer["gradients"]["counts"]) == fan_in * units
            assert sum(layer["activations"]["counts"]) == val_batch * units
            for h in (layer["weights"], layer["gradients"], layer["activations"]):
                assert len(h["counts"]) == hist.BINS and all(isinstance(c, int) for c in h["counts"])
                assert h["lo"] < h["hi"] and h["nonfinite"] == 0
            assert 0 < layer["grad_norm"] <= layer["grad_norm_max"] < hist.EXPLODING_NORM
            assert layer["flags"] == []
        assert 0 <= first["dead_fraction"] <= 1
        assert last["dead_fraction"] is None  # the output layer is not a ReLU layer
        # Its activations are ReLU outputs: nothing below zero.
        assert first["activations"]["lo"] == 0
    assert not warnings(sink, "exploding") and not warnings(sink, "vanishing")


def test_the_weights_histogram_is_that_of_the_layers_kernel(tmp_path, digits):
    """The last epoch's weights histogram equals one taken of the exported model's kernel."""
    _, sink = run(tmp_path, mlp_spec(16), digits, epochs=1)
    from safetensors.torch import load_file

    weights = load_file(str(tmp_path / "run" / "export" / "model.safetensors"))
    kernel = next(v for k, v in weights.items() if v.ndim == 2 and v.shape == (16, 64))
    expected = hist.histogram(kernel)
    got = sink.of("histograms")[-1]["layers"][0]["weights"]
    assert got["counts"] == expected["counts"] and got["lo"] == expected["lo"] and got["hi"] == expected["hi"]


def test_a_cnn_records_its_convolution_and_dense_layers(tmp_path, digits):
    _, sink = run(tmp_path, SMALL_CNN, digits, epochs=1, batch_size=64)
    (event,) = sink.of("histograms")
    conv, dense = event["layers"]
    assert (conv["name"], dense["name"]) == ("#1 Conv2D", "#4 Dense")
    assert sum(conv["weights"]["counts"]) == 8 * 1 * 3 * 3
    assert sum(conv["activations"]["counts"]) == event["batch"] * 8 * 8 * 8
    assert sum(dense["weights"]["counts"]) == 8 * 4 * 4 * 10
    assert 0 <= conv["dead_fraction"] <= 1  # of its 8 channels
    assert conv["dead_fraction"] * 8 == pytest.approx(round(conv["dead_fraction"] * 8), abs=1e-3)
    assert event["warnings"] == []


def test_a_huge_learning_rate_records_exploding_gradients(tmp_path, digits):
    sink = ListSink()
    try:
        run(tmp_path, mlp_spec(32), digits, epochs=2, sink=sink, optimizer={"name": "sgd", "lr": 1e3})
    except DivergedError:
        pass  # if the loss goes NaN the run stops, but only after the warning is stored
    found = warnings(sink, "exploding")
    assert found and "layer #2 Dense" in " ".join(found)
    first = sink.of("histograms")[0]
    assert "exploding" in first["layers"][0]["flags"]
    assert any(w["kind"] == "exploding" for w in first["warnings"])
    log_at = next(i for i, (k, e) in enumerate(sink.events) if k == "log" and e["message"].startswith("exploding"))
    hist_at = next(i for i, (k, _) in enumerate(sink.events) if k == "histograms")
    assert log_at < hist_at


def test_the_warning_is_stored_before_a_divergence_stops_the_run(tmp_path, digits, monkeypatch):
    """A loss that goes NaN stops the run; the exploding warning and the layers' last state come first."""
    from app.engine import loop

    monkeypatch.setattr(loop, "FLUSH_INTERVAL_S", 0.0)  # check at every step
    sink = ListSink()
    with pytest.raises(DivergedError):
        run(tmp_path, LINEAR_STACK, digits, epochs=3, sink=sink, optimizer={"name": "sgd", "lr": 1e4})
    assert warnings(sink, "exploding")
    assert sink.of("histograms")[-1]["diverged"] is True


def test_a_deep_sigmoid_stack_records_vanishing_gradients(tmp_path, digits):
    _, sink = run(tmp_path, sigmoid_stack(10), digits, epochs=1)
    (event,) = sink.of("histograms")
    assert len(event["layers"]) == 11
    first, last = event["layers"][0], event["layers"][-1]
    assert "vanishing" in first["flags"] and last["flags"] == []
    assert first["grad_norm"] < hist.VANISHING_RATIO * last["grad_norm"]
    found = warnings(sink, "vanishing")
    assert any("layer #2 Dense" in m for m in found)
    assert not warnings(sink, "exploding")
    assert all(layer["dead_fraction"] is None for layer in event["layers"])  # no ReLU here


def test_off_and_auto_decide_whether_to_record(tmp_path, digits, monkeypatch):
    _, off = run(tmp_path, mlp_spec(16), digits, epochs=1, histograms="off", name="off")
    assert off.of("histograms") == []
    monkeypatch.setattr(hist, "AUTO_MAX_PARAMS", 100)  # the MLP is larger: auto leaves it out
    _, auto = run(tmp_path, mlp_spec(16), digits, epochs=1, name="auto")
    assert auto.of("histograms") == []
    _, on = run(tmp_path, mlp_spec(16), digits, epochs=1, histograms="on", name="on")
    assert len(on.of("histograms")) == 1


def test_histogram_counts_finite_values_and_reports_the_rest():
    h = hist.histogram(torch.tensor([0.0, 1.0, 2.0, float("nan"), float("inf")]), bins=4)
    assert h == {"lo": 0.0, "hi": 2.0, "counts": [1, 0, 1, 1], "nonfinite": 2, "stride": 1}
    same = hist.histogram(torch.full((5,), 3.0), bins=4)
    assert same["counts"] == [5, 0, 0, 0] and same["lo"] == same["hi"] == 3.0
    assert hist.histogram(torch.tensor([float("nan")]), bins=3) == {"lo": None, "hi": None, "counts": [0, 0, 0],
                                                                   "nonfinite": 1, "stride": 1}
    # A large tensor: every stride-th value, with its exact min and max.
    big = hist.histogram(torch.arange(10.0), bins=2, max_values=4)
    assert big == {"lo": 0.0, "hi": 9.0, "counts": [2, 2], "nonfinite": 0, "stride": 3}  # 0, 3, 6, 9


def test_recurrent_and_norm_layers_are_recorded(tmp_path):
    data = subset(dataset("sequence", tmp_path / "data"), 256, 64)
    spec = {"layers": [{"type": "LSTM", "units": 12, "return_sequences": True},
                       {"type": "LayerNormalization"}, {"type": "LSTM", "units": 8},
                       {"type": "Dense", "units": 2, "activation": "softmax"}]}
    _, sink = run(tmp_path, spec, data, epochs=1)
    assert not [e for e in sink.of("log") if e["level"] == "warning"]
    (event,) = sink.of("histograms")
    assert [layer["name"] for layer in event["layers"]] == ["#1 LSTM", "#2 LayerNormalization", "#3 LSTM", "#4 Dense"]
    norm = event["layers"][1]
    assert norm["params"] == 2 * 12  # scale and shift: a norm layer's only parameters
    for layer in event["layers"]:
        assert layer["activations"] is not None and sum(layer["activations"]["counts"]) > 0
        assert layer["gradients"] is not None and layer["grad_norm"] > 0
