"""Comparing runs: the service and `GET /api/compare` on runs a trainer would have left behind,
the compare page, and the dashboard's selection column."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import pytest

from app.compare.service import RunSummary, model_kind, pareto_front
from app.runs.figures import from_epochs, training_time_so_far
from tests.conftest import LOCAL
from tests.runs.helpers import DIGITS_MLP

WIDE_MLP = {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 128, "activation": "relu"},
                       {"type": "Dense", "units": 10, "activation": "softmax"}]}
CNN = {"layers": [{"type": "Conv2D", "filters": 16, "kernel_size": 3, "activation": "relu"},
                  {"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "softmax"}]}
SPIRALS_MLP = {"layers": [{"type": "Dense", "units": 16, "activation": "relu"},
                          {"type": "Dense", "units": 3, "activation": "softmax"}]}


@pytest.fixture
def client(data_dir):
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(start_executor=False), base_url=LOCAL) as test_client:
        yield test_client


def finished(spec: dict, *, name: str, accuracy: float, train_time: float, memory: int,
             val_accuracies: list[float], lr: float = 0.001, resumed_at: int | None = None, macro_f1: float = 0.9,
             dataset: str = "digits", confusion: list[list[int]] | None = None, classes: list[str] | None = None) -> int:
    """A completed run (on digits unless told) as its trainer leaves it: epoch rows, a test evaluation, timings.
    With a `confusion` matrix the evaluation is the engine's own (app/engine/metrics.summarize: per-class rows,
    macro and weighted averages); without, it holds macro averages only, as evaluations of older runs may."""
    import numpy as np

    from app.core.db import session_scope
    from app.engine import metrics
    from app.runs import service as runs_service
    from app.runs.events import append_events
    from app.runs.models import Evaluation
    from app.runs.schemas import RunCreate, TrainConfigIn

    with session_scope() as db_session:
        run = runs_service.create(db_session=db_session, run_in=RunCreate(
            name=name, spec=spec, dataset=dataset,
            config=TrainConfigIn(epochs=len(val_accuracies), optimizer={"name": "adam", "lr": lr})))
        epochs = list(enumerate(val_accuracies, start=1))
        if resumed_at is not None:  # a first attempt (abandoned after its checkpoint), then the resumed epochs
            epochs = [(e, v - 0.5) for e, v in epochs] + [(e, v) for e, v in epochs if e > resumed_at]
        events: list[tuple[str, dict[str, Any]]] = [("status", {"status": "running"})]
        for epoch, val in epochs:
            events.append(("epoch", {"epoch": epoch, "epochs": len(val_accuracies), "train_loss": 1.0 / epoch,
                                     "train_accuracy": val + 0.01, "val_loss": 1.1 / epoch, "val_accuracy": val,
                                     "lr": lr, "epoch_time": train_time / len(val_accuracies),
                                     "samples_per_sec": 1000.0}))
        events.append(("status", {"status": "completed"}))
        append_events(db_session, run.id, events)
        payload: dict[str, Any] = {"macro": {"precision": 0.9, "recall": 0.9, "f1": macro_f1}}
        if confusion is not None:
            names = classes or [str(i) for i in range(len(confusion))]
            payload = metrics.summarize(np.array(confusion), names)
        db_session.add(Evaluation(run_id=run.id, split="test", epoch=len(val_accuracies), accuracy=accuracy, loss=0.3,
                                  payload=payload))
        run.status, run.epoch = "completed", len(val_accuracies)
        run.test_accuracy, run.test_loss, run.best_val_accuracy = accuracy, 0.3, max(val_accuracies)
        run.train_time_s, run.training_memory_bytes = train_time + 1.5, memory  # + setup, test, exports
        run.peak_memory_bytes = memory + (350 << 20)
        return run.id


@pytest.fixture
def three_runs(client) -> tuple[int, int, int]:
    small = finished(DIGITS_MLP, name="small", accuracy=0.90, train_time=10, memory=300 << 20,
                     val_accuracies=[0.8, 0.88])
    cnn = finished(CNN, name="cnn", accuracy=0.95, train_time=5, memory=500 << 20,
                   val_accuracies=[0.85, 0.9, 0.94], lr=0.01, resumed_at=1)
    wide = finished(WIDE_MLP, name="wide", accuracy=0.93, train_time=20, memory=400 << 20,
                    val_accuracies=[0.86, 0.92], macro_f1=0.95)
    return small, cnn, wide


def test_api_compares_headlines_curves_settings_and_pareto_fronts(client, three_runs):
    small, cnn, wide = three_runs
    response = client.get(f"/api/compare?runs={cnn},{small}&runs={wide}")  # both ways of listing ids
    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["id"] for r in body["runs"]] == [cnn, small, wide]  # the order asked for
    by_id = {r["id"]: r for r in body["runs"]}
    assert by_id[cnn]["flops"] > by_id[small]["flops"]
    assert by_id[cnn]["layers"].startswith("Conv2D") and "→" in by_id[cnn]["layers"]
    assert (by_id[cnn]["kind"], by_id[small]["kind"], by_id[small]["model"]) == ("CNN", "MLP", "custom")
    assert by_id[wide]["macro_f1"] == 0.95 and by_id[small]["time_per_epoch_s"] == 5.0
    # The resumed run's curve keeps the last row of each epoch: no repeated epoch, no abandoned values.
    assert by_id[cnn]["curves"]["epoch"] == [1.0, 2.0, 3.0]
    assert by_id[cnn]["curves"]["val_accuracy"] == [0.35, 0.9, 0.94]
    assert by_id[small]["curves"]["val_accuracy"] == [0.8, 0.88]
    # What differs is listed per run; what is the same, once.
    differences = {d["setting"]: d["values"] for d in body["differences"]}
    assert differences["optimizer.lr"] == [0.01, 0.001, 0.001]
    assert differences["epochs"] == [3, 2, 2] and "layers" in differences
    same = {s["setting"]: s["value"] for s in body["same"]}
    assert same["batch_size"] == 32 and same["dataset"] == "digits"
    # Best per column, and the accuracy-vs-cost fronts (cheapest first).
    assert by_id[cnn]["train_loop_s"] == pytest.approx(5.0) and by_id[cnn]["train_time_s"] == 6.5
    assert body["best"]["test_accuracy"] == [cnn] and body["best"]["train_loop_s"] == [cnn]
    assert body["best"]["macro_f1"] == [wide] and body["best"]["total_params"] == [small]
    assert body["pareto"]["train_loop_s"] == [cnn]  # fastest and most accurate: dominates both
    assert body["pareto"]["training_memory_bytes"] == [small, wide, cnn]
    assert [by_id[i]["total_params"] for i in (small, cnn, wide)] == [2410, 5930, 9610]
    assert body["pareto"]["total_params"] == [small, cnn]  # wide: more parameters than cnn, less accurate


@pytest.mark.parametrize("query, status, needle", [
    ("", 422, "choose at least one run"),
    ("runs=999", 404, "run 999 does not exist"),
    ("runs=abc", 422, "'abc' is not a run id"),
    ("runs=" + ",".join(str(i) for i in range(1, 14)), 422, "at most 12"),
])
def test_api_compare_rejects_bad_selections_clearly(client, three_runs, query, status, needle):
    response = client.get(f"/api/compare?{query}")
    assert response.status_code == status
    assert needle in response.text


@pytest.mark.parametrize("types, kind", [
    (["Flatten", "Dense"], "MLP"), (["Conv2D", "Flatten", "Dense"], "CNN"), (["Embedding", "LSTM", "Dense"], "RNN"),
    (["Conv2D", "Reshape", "GRU", "Dense"], "CNN + RNN"), (["Pretrained", "Dense"], "transfer"),
])
def test_model_kind_names_the_family_the_tutorial_compares(types, kind):
    assert model_kind({"layers": [{"type": t} for t in types]}) == kind


def test_pareto_front_keeps_only_undominated_runs_and_ignores_unfinished():
    def run(run_id: int, accuracy: float | None, params: int) -> RunSummary:
        return RunSummary(id=run_id, name="", status="completed", dataset="d", model="m", kind="MLP", layers="", epochs=1,
                          epochs_total=1, total_params=params, flops=None, test_accuracy=accuracy, test_loss=None,
                          macro_f1=None, best_val_accuracy=None, train_loop_s=None, train_time_s=None,
                          time_per_epoch_s=None, samples_per_sec=None, training_memory_bytes=None,
                          peak_memory_bytes=None, config={})

    runs = [run(1, 0.9, 100), run(2, 0.95, 1000), run(3, 0.92, 5000), run(4, 0.96, 5000), run(5, None, 10),
            run(6, 0.9, 100)]
    assert pareto_front(runs, "total_params") == [1, 2, 4]  # 3 is beaten by 2; 6 ties 1 (lower id first)
    assert pareto_front(runs, "train_loop_s") == []


def test_compare_page_shows_table_best_marks_scatters_and_differences(client, three_runs):
    small, cnn, wide = three_runs
    page = client.get(f"/compare?runs={small},{cnn},{wide}")
    assert page.status_code == 200
    html = page.text
    assert [int(i) for i in re.findall(r'<tr data-run-id="(\d+)"', html)] == [small, cnn, wide]
    best_test = re.search(rf'<tr data-run-id="{cnn}".*?</tr>', html, re.S).group(0)
    assert re.search(r'class="num best"[^>]*data-col="test_accuracy">95.0%<span class="best-mark"', best_test)
    for cost in ("total_params", "train_loop_s", "training_memory_bytes"):
        svg = re.search(rf'<svg class="scatter" id="scatter-{cost}".*?</svg>', html, re.S).group(0)
        assert svg.count("<circle") == 3, cost
    front = re.search(r'data-cost="train_loop_s".*?</figure>', html, re.S).group(0)
    assert f"sc-point sc-on-front\" data-label=\"#{cnn}\"" in front and front.count("sc-on-front") == 1
    differences = re.search(r'<table class="table compact" id="differences">.*?</table>', html, re.S).group(0)
    assert "optimizer.lr" in differences and "batch_size" not in differences
    assert '<script type="application/json" id="compare-data">' in html
    assert re.search(rf'id="pick-{small}" aria-label="compare run #{small}"\s+checked>', html)  # picker pre-ticks


def test_compare_page_without_runs_is_a_picker_and_bad_ids_say_why(client, three_runs):
    small, cnn, wide = three_runs
    picker = client.get("/compare")
    assert picker.status_code == 200
    assert all(f'name="runs" value="{i}"' in picker.text for i in three_runs)
    assert 'id="compare-table"' not in picker.text and '<details class="panel" id="picker" open>' in picker.text
    one = client.get(f"/compare?runs={small}").text  # from a run page's "Compare…": add others
    assert '<details class="panel" id="picker" open>' in one and "Add runs to compare" in one
    assert 'id="compare-table"' in one  # one run is a comparison of one: its table shows
    missing = client.get(f"/compare?runs={small},999")
    assert missing.status_code == 404
    assert "run 999 does not exist" in missing.text and 'id="picker-form"' in missing.text


def test_dashboard_rows_can_be_ticked_for_comparison(client, three_runs):
    html = client.get("/").text
    for run_id in three_runs:
        assert f'<input type="checkbox" form="compare-form" name="runs" value="{run_id}" id="compare-{run_id}"' in html
    assert '<form id="compare-form" method="get" action="/compare">' in html
    assert 'form="compare-form" id="compare-button"' in html
    assert 'href="/compare"' in html  # in the navigation


@pytest.fixture
def two_data_sets(three_runs) -> dict[str, list[int]]:
    """The three digits runs and two spirals runs: the spirals ones score higher and cost less."""
    small, cnn, wide = three_runs
    tiny = finished(SPIRALS_MLP, name="tiny", accuracy=0.99, train_time=2, memory=50 << 20, val_accuracies=[0.9, 0.97],
                    dataset="spirals", macro_f1=0.99)
    wider = finished(SPIRALS_MLP, name="wider", accuracy=0.97, train_time=3, memory=60 << 20,
                     val_accuracies=[0.9, 0.96], dataset="spirals", macro_f1=0.97)
    return {"digits": [small, cnn, wide], "spirals": [tiny, wider]}


def test_best_and_pareto_fronts_are_taken_within_each_data_set(client, two_data_sets):
    small, cnn, wide = two_data_sets["digits"]
    tiny, wider = two_data_sets["spirals"]
    body = client.get(f"/api/compare?runs={tiny},{small},{cnn},{wider},{wide}").json()
    assert body["groups"] == [{"dataset": "spirals", "runs": [tiny, wider]}, {"dataset": "digits", "runs": [small, cnn, wide]}]
    # Each data set has its own best: the spirals runs' 99% does not take digits' star away.
    assert body["best"]["test_accuracy"] == [tiny, cnn]
    assert body["best"]["train_loop_s"] == [tiny, cnn] and body["best"]["macro_f1"] == [tiny, wide]
    assert body["pareto"]["train_loop_s"] == [tiny, cnn]
    assert body["pareto"]["total_params"] == [tiny, small, cnn]  # spirals: same size, tiny more accurate
    # One run of a data set has nothing to be best against.
    alone = client.get(f"/api/compare?runs={tiny},{small},{cnn}").json()
    assert alone["best"]["test_accuracy"] == [cnn] and tiny not in sum(alone["best"].values(), [])


def test_compare_page_groups_runs_by_data_set_and_says_why(client, two_data_sets):
    small, cnn, wide = two_data_sets["digits"]
    tiny, wider = two_data_sets["spirals"]
    html = client.get(f"/compare?runs={small},{tiny},{cnn},{wider},{wide}").text
    warning = " ".join(re.search(r'<p class="warning" id="mixed-datasets".*?</p>', html, re.S).group(0).split())
    assert "trained on digits and spirals" in warning and "best within each data set" in warning
    bodies = re.findall(r'<tbody data-dataset="(\w+)">(.*?)</tbody>', html, re.S)
    assert [name for name, _ in bodies] == ["digits", "spirals"]
    assert [int(i) for i in re.findall(r'<tr data-run-id="(\d+)"', bodies[0][1])] == [small, cnn, wide]
    assert [int(i) for i in re.findall(r'<tr data-run-id="(\d+)"', bodies[1][1])] == [tiny, wider]
    assert "spirals · 2 runs" in bodies[1][1]
    starred = {int(run_id): re.findall(r'data-col="(\w+)"[^>]*>[^<]*<span class="best-mark"', row)
               for run_id, row in re.findall(r'<tr data-run-id="(\d+)">(.*?)</tr>', html, re.S)}
    assert "test_accuracy" in starred[cnn] and "test_accuracy" in starred[tiny]
    assert "test_accuracy" not in starred[small] and "test_accuracy" not in starred[wider]
    front = re.search(r'data-cost="train_loop_s".*?</figure>', html, re.S).group(0)
    assert front.count('class="sc-front"') == 0  # one run per data set on each front: no line to draw
    assert f'spirals <a href="/runs/{tiny}">#{tiny}</a>' in front and f'digits <a href="/runs/{cnn}">#{cnn}</a>' in front
    # One data set: no warning, no group rows.
    one = client.get(f"/compare?runs={small},{cnn}").text
    assert 'id="mixed-datasets"' not in one and 'class="group-row"' not in one


def test_compare_table_shows_a_few_columns_and_offers_the_rest(client, three_runs):
    html = client.get("/compare?runs=" + ",".join(map(str, three_runs))).text
    head = re.search(r"<thead>(.*?)</thead>", html, re.S).group(1)
    shown = re.findall(r'<th scope="col" class="num" data-col="(\w+)"(?![^>]*hidden)', head)
    hidden = re.findall(r'<th scope="col" class="num" data-col="(\w+)"[^>]*hidden', head)
    assert shown == ["total_params", "test_accuracy", "macro_f1", "train_loop_s", "training_memory_bytes"]
    assert hidden == ["flops", "best_val_accuracy", "test_loss", "time_per_epoch_s", "samples_per_sec", "epochs"]
    chooser = re.search(r'<details class="column-chooser" id="column-chooser">.*?</details>', html, re.S).group(0)
    boxes = re.findall(r'value="(\w+)" id="show-\w+"( checked)?>', chooser)
    assert sorted(boxes) == sorted([(key, " checked") for key in shown] + [(key, "") for key in hidden])
    row = re.search(rf'<tr data-run-id="{three_runs[0]}">(.*?)</tr>', html, re.S).group(1)
    assert re.search(r'data-col="flops" hidden>', row) and re.search(r'data-col="test_accuracy">', row)


def test_the_pareto_front_on_the_page_runs_cheapest_first_whatever_order_runs_were_picked(client, three_runs):
    """The staircase is drawn along the front: in the order the runs were ticked it would run backwards."""
    small, cnn, wide = three_runs
    page = client.get(f"/compare?runs={cnn},{wide},{small}").text
    figure = page[page.index('data-cost="training_memory_bytes"'):]
    caption = figure[figure.index("<figcaption"):figure.index("</figcaption>")]
    assert re.findall(r'href="/runs/(\d+)"', caption) == [str(small), str(wide), str(cnn)]  # 300, 400, 500 MiB


def test_curves_have_the_training_time_at_each_epoch_end(client, three_runs):
    """The time axis is the running sum of the kept epochs' epoch_time: it ends at the table's training time."""
    small, cnn, wide = three_runs
    body = client.get(f"/api/compare?runs={small},{cnn},{wide}").json()
    by_id = {r["id"]: r for r in body["runs"]}
    assert by_id[small]["curves"]["time_s"] == pytest.approx([5.0, 10.0])
    assert by_id[wide]["curves"]["time_s"] == pytest.approx([10.0, 20.0])
    # The resumed run: the abandoned attempt's epochs 2 and 3 count for nothing, as in its training time.
    assert by_id[cnn]["curves"]["time_s"] == pytest.approx([5 / 3, 10 / 3, 5.0])
    for run in body["runs"]:
        assert len(run["curves"]["time_s"]) == len(run["curves"]["epoch"])
        assert run["curves"]["time_s"][-1] == pytest.approx(run["train_loop_s"])


def test_training_time_so_far_skips_epochs_without_a_time_and_keeps_the_last_row_of_each():
    payloads = [{"epoch": 1, "epoch_time": 2.0}, {"epoch": 2, "epoch_time": 9.0},  # epoch 2 is run again
                {"epoch": 2, "epoch_time": 1.5}, {"epoch": 3}, {"epoch": 4, "epoch_time": 0.5},
                {"epoch": 5, "epoch_time": float("nan")}]
    assert training_time_so_far(payloads) == [2.0, 3.5, None, 4.0, None]
    assert from_epochs(payloads).training_time_s == 4.0  # the same definition as the table's training time


# Two spirals runs' test confusion matrices (rows: true class): 'a' is best recalled by `sharp`, 'b' by `blunt`.
SHARP = [[10, 0, 0], [3, 7, 0], [0, 0, 10]]
BLUNT = [[9, 1, 0], [0, 10, 0], [2, 0, 8]]


@pytest.fixture
def per_class_runs(three_runs) -> dict[str, int]:
    """Two spirals runs with per-class test metrics, beside the digits runs (whose evaluations have none)."""
    sharp = finished(SPIRALS_MLP, name="sharp", accuracy=0.9, train_time=2, memory=50 << 20, val_accuracies=[0.9],
                     dataset="spirals", confusion=SHARP, classes=["a", "b", "c"])
    blunt = finished(SPIRALS_MLP, name="blunt", accuracy=0.9, train_time=3, memory=60 << 20, val_accuracies=[0.9],
                     dataset="spirals", confusion=BLUNT, classes=["a", "b", "c"])
    return {"sharp": sharp, "blunt": blunt, "small": three_runs[0]}


def test_api_compares_per_class_f1_and_recall_within_a_data_set(client, per_class_runs):
    sharp, blunt, small = per_class_runs["sharp"], per_class_runs["blunt"], per_class_runs["small"]
    body = client.get(f"/api/compare?runs={small},{sharp},{blunt}").json()
    assert len(body["per_class"]) == 1  # the digits run's evaluation has no per-class rows: no digits table
    table = body["per_class"][0]
    assert (table["dataset"], table["classes"], table["runs"]) == ("spirals", ["a", "b", "c"], [sharp, blunt])
    # Recall (per-class accuracy) = right / samples of the class; F1 = 2·right / (predicted + samples).
    assert [pytest.approx(row) for row in [[1.0, 0.9], [0.7, 1.0], [1.0, 0.8]]] == table["recall"]
    assert [pytest.approx(row) for row in [[20 / 23, 18 / 21], [14 / 17, 20 / 21], [1.0, 16 / 18]]] == table["f1"]
    assert table["best_f1"] == [[sharp], [blunt], [sharp]]
    assert table["best_recall"] == [[sharp], [blunt], [sharp]]
    # The macro F1 in the headline comes from the same evaluation.
    by_id = {r["id"]: r for r in body["runs"]}
    assert by_id[sharp]["macro_f1"] == pytest.approx((20 / 23 + 14 / 17 + 1.0) / 3)
    # One run of a data set: its rows, nothing to be best against.
    alone = client.get(f"/api/compare?runs={sharp}").json()["per_class"]
    assert alone[0]["runs"] == [sharp] and alone[0]["best_f1"] == [[], [], []]
    assert client.get(f"/api/compare?runs={small}").json()["per_class"] == []


def test_compare_page_shows_per_class_table_with_best_per_row(client, per_class_runs):
    sharp, blunt, small = per_class_runs["sharp"], per_class_runs["blunt"], per_class_runs["small"]
    html = client.get(f"/compare?runs={small},{sharp},{blunt}").text
    table = re.search(r'<table class="table compact per-class-compare" id="per-class-spirals".*?</table>', html, re.S)
    assert table and 'id="per-class-digits"' not in html
    head = re.findall(r'<th scope="col" class="num" data-run-id="(\d+)"', table.group(0))
    assert [int(i) for i in head] == [sharp, blunt, sharp, blunt]  # F1 of each run, then recall of each
    rows = dict(re.findall(r'<tr data-class="(\w)">(.*?)</tr>', table.group(0), re.S))
    assert list(rows) == ["a", "b", "c"]
    cells = re.findall(r'<td class="num( best)?">([^<]*)', rows["b"])
    assert cells == [("", "82.4%"), (" best", "95.2%"), ("", "70.0%"), (" best", "100.0%")]


def test_api_compare_csv_has_a_row_per_run_with_headlines_and_differing_settings(client, three_runs):
    small, cnn, wide = three_runs
    odd = finished(DIGITS_MLP, name="=SUM(1,2)", accuracy=0.5, train_time=4, memory=1 << 20, val_accuracies=[0.5])
    response = client.get(f"/api/compare.csv?runs={cnn},{small}&runs={odd}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == f'attachment; filename="compare-{cnn}-{small}-{odd}.csv"'
    reader = csv.DictReader(io.StringIO(response.text))
    assert reader.fieldnames[:8] == ["id", "name", "dataset", "model", "kind", "status", "test_accuracy", "macro_f1"]
    assert {"total_params", "train_loop_s", "training_memory_bytes", "epochs", "epochs_total"} <= set(reader.fieldnames)
    # The settings that differ follow; the config's epochs (asked for) stays apart from the epochs done.
    assert {"layers", "optimizer.lr", "setting.epochs"} <= set(reader.fieldnames)
    assert "batch_size" not in reader.fieldnames  # the same for all
    rows = {int(row["id"]): row for row in reader}
    assert list(rows) == [cnn, small, odd]
    assert (rows[cnn]["name"], rows[cnn]["dataset"], rows[cnn]["kind"], rows[cnn]["status"]) == \
        ("cnn", "digits", "CNN", "completed")
    assert float(rows[cnn]["test_accuracy"]) == 0.95 and float(rows[cnn]["train_loop_s"]) == pytest.approx(5.0)
    assert int(rows[small]["total_params"]) == 2410 and int(rows[small]["training_memory_bytes"]) == 300 << 20
    assert (rows[cnn]["epochs"], rows[cnn]["setting.epochs"], rows[cnn]["optimizer.lr"]) == ("3", "3", "0.01")
    assert rows[small]["optimizer.lr"] == "0.001" and rows[small]["flops"] != ""
    # A name a spreadsheet would run as a formula is written as text.
    assert rows[odd]["name"] == "'=SUM(1,2)"


@pytest.mark.parametrize("query, status, needle", [
    ("", 422, "choose at least one run"),
    ("runs=999", 404, "run 999 does not exist"),
    ("runs=abc", 422, "'abc' is not a run id"),
    ("runs=99999999999999999999", 404, "there is no run"),
])
def test_api_compare_csv_rejects_bad_selections_as_the_json_does(client, three_runs, query, status, needle):
    response = client.get(f"/api/compare.csv?{query}")
    assert response.status_code == status
    assert needle in response.json()["detail"]


def test_compare_page_links_the_csvs_and_offers_the_time_axis(client, three_runs):
    small, cnn, wide = three_runs
    html = client.get(f"/compare?runs={small},{cnn}").text
    assert f'href="/api/compare.csv?runs={small},{cnn}" download' in html
    for run_id in (small, cnn):
        assert f'href="/api/runs/{run_id}/metrics.csv" download' in html
    select = re.search(r'<select id="compare-x".*?</select>', html, re.S).group(0)
    assert re.findall(r'<option value="(\w+)">', select) == ["epoch", "time"]
    data = re.search(r'<script type="application/json" id="compare-data">(.*?)</script>', html, re.S).group(1)
    assert '"time_s": [5.0, 10.0]' in data
