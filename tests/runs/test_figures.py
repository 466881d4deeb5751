"""A run's speed figures are defined once (app/runs/figures.py): the compare API, the compare page
and the run page show the same numbers, and those numbers follow from the run's own records."""

from __future__ import annotations

import re

import pytest

from app.runs.figures import from_epochs, kept_epochs
from tests.runs.helpers import DIGITS_MLP, run_body, wait_status


def epoch(number: int, seconds: float, samples: int, **extra) -> dict:
    return {"epoch": number, "epoch_time": seconds, "samples_per_sec": samples / seconds, **extra}


def test_samples_per_second_is_all_samples_over_all_training_time_not_a_mean_of_epoch_speeds():
    # 1,000 samples in 1 s, then 1,000 samples in 4 s: 2,000 samples in 5 s is 400/s (the mean of
    # the two epochs' speeds would say 625/s, the last epoch alone 250/s).
    figures = from_epochs([epoch(1, 1.0, 1000), epoch(2, 4.0, 1000)], whole_run_s=7.5)
    assert figures.epochs == 2
    assert figures.training_time_s == pytest.approx(5.0)
    assert figures.training_samples == 2000
    assert figures.samples_per_sec == pytest.approx(400.0)
    assert figures.time_per_epoch_s == pytest.approx(2.5)
    assert figures.whole_run_s == 7.5


def test_a_resumed_run_counts_each_epoch_once_with_its_last_row():
    abandoned = [epoch(1, 2.0, 500), epoch(2, 9.0, 500)]
    resumed = [epoch(2, 3.0, 500), epoch(3, 3.0, 500)]
    assert [p["epoch_time"] for p in kept_epochs(abandoned + resumed)] == [2.0, 3.0, 3.0]
    figures = from_epochs(abandoned + resumed)
    assert (figures.epochs, figures.training_time_s, figures.training_samples) == (3, pytest.approx(8.0), 1500)
    assert figures.time_per_epoch_s == pytest.approx(8.0 / 3)


def test_no_timed_epochs_means_no_figures_rather_than_zeros():
    figures = from_epochs([{"epoch": 1, "train_loss": 0.5}, {"epoch": 2, "epoch_time": 0}], whole_run_s=None)
    assert figures.epochs == 0
    assert figures.training_time_s is figures.samples_per_sec is figures.time_per_epoch_s is None
    speedless = from_epochs([{"epoch": 1, "epoch_time": 2.0}])
    assert speedless.training_time_s == 2.0 and speedless.samples_per_sec is None


def _cell(html: str, pattern: str) -> str:
    match = re.search(pattern, html, re.S)
    assert match, pattern
    return match.group(1).strip()


def test_a_real_run_shows_the_same_figures_on_the_run_page_compare_page_and_compare_api(live_server):
    api = live_server.api()
    response = api.post("/api/runs", json=run_body(DIGITS_MLP, epochs=3, batch_size=16))
    assert response.status_code == 201, response.text
    run_id = response.json()["id"]
    state = wait_status(api, run_id, "completed", "failed", "cancelled", timeout=180)
    assert state["status"] == "completed", state
    client = api

    # The run's own records: its epoch events, the training-set size it logged, its train_time_s.
    events = client.get(f"/api/runs/{run_id}/metrics").json()
    epochs = [e["payload"] for e in events if e["kind"] == "epoch"]
    assert [p["epoch"] for p in epochs] == [1, 2, 3]
    logged = next(e["payload"]["message"] for e in events if e["kind"] == "log"
                  and e["payload"]["message"].startswith("training on"))
    train_size = int(re.search(r"(\d+) samples", logged).group(1))
    training_time = sum(p["epoch_time"] for p in epochs)

    summary = client.get(f"/api/compare?runs={run_id}").json()["runs"][0]
    assert summary["train_loop_s"] == pytest.approx(training_time)
    assert summary["time_per_epoch_s"] == pytest.approx(training_time / 3)
    assert summary["samples_per_sec"] == pytest.approx(3 * train_size / training_time)
    assert summary["train_time_s"] == state["train_time_s"]
    assert state["train_time_s"] > training_time  # the whole run: setup, validation, test, exports too

    # The run page (and its results fragment) and the compare page print those same numbers.
    run_page = client.get(f"/runs/{run_id}").text
    fragment = client.get(f"/runs/{run_id}/results").text
    compare_page = client.get(f"/compare?runs={run_id}").text
    for key in ("train_loop_s", "time_per_epoch_s", "samples_per_sec"):
        on_run_page = _cell(run_page, rf'id="figure-{key}"[^>]*>(.*?)</dd>')
        assert on_run_page == _cell(fragment, rf'id="figure-{key}"[^>]*>(.*?)</dd>')
        assert on_run_page == _cell(compare_page, rf'<td[^>]*data-col="{key}"[^>]*>(.*?)<')
        assert on_run_page not in ("", "–")
    assert _cell(run_page, r'id="figure-samples_per_sec"[^>]*>(.*?)</dd>') == f"{3 * train_size / training_time:,.0f}"
    assert _cell(run_page, r'id="figure-time_per_epoch_s"[^>]*>(.*?)</dd>') == f"{training_time / 3:.2f} s"
