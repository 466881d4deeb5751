"""Run, dataset and learn pages through TestClient: the launch form (and its 422s next to the fields),
the dashboard, and a finished run's results built from rows written directly through the service."""

from __future__ import annotations

import re
from html import unescape

import pytest

from tests.conftest import LOCAL

HTMX = {"HX-Request": "true"}
DIGITS_MLP = {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 32, "activation": "relu"},
                         {"type": "Dense", "units": 10, "activation": "softmax"}]}


@pytest.fixture
def client(data_dir):
    """Pages need no executor: runs stay queued unless a test finishes them itself."""
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(start_executor=False), base_url=LOCAL) as test_client:
        yield test_client


def slot(html: str, slot_id: str) -> str:
    """The text of one message slot (e.g. config-epochs-errors): what a person reads next to that field."""
    match = re.search(rf'id="{slot_id}"[^>]*>(.*?)</div>', html, re.S)
    assert match, f"no #{slot_id} in the page"
    return " ".join(unescape(m) for m in re.findall(r'<p class="error" role="alert">(.*?)</p>', match.group(1), re.S))


def launch_form(**changes: str) -> dict[str, str]:
    form = {"model": "quick:digits-mlp", "dataset": "digits", "config.epochs": "3", "config.batch_size": "32",
            "config.optimizer.name": "adam", "config.optimizer.lr": "0.001"}
    form.update(changes)
    return form


def finished_run(*, status: str = "completed") -> int:
    """A digits run as a trainer leaves it: events, two validation evaluations and a test evaluation."""
    from app.core.db import session_scope
    from app.runs import service as runs_service
    from app.runs.events import append_events
    from app.runs.models import Evaluation
    from app.runs.schemas import RunCreate

    names = [str(i) for i in range(10)]

    def matrix(correct: int) -> list[list[int]]:
        rows = [[0] * 10 for _ in range(10)]
        for i in range(10):
            rows[i][i] = correct
            rows[i][(i + 1) % 10] = 36 - correct
        return rows

    def payload(cm: list[list[int]], with_misclassified: bool) -> dict:
        per_class = [{"class": n, "precision": cm[i][i] / 36, "recall": cm[i][i] / 36, "f1": cm[i][i] / 36,
                      "support": 36} for i, n in enumerate(names)]
        body = {"confusion_matrix": cm, "class_names": names, "per_class": per_class,
                "macro": {"precision": 0.9, "recall": 0.9, "f1": 0.9},
                "weighted": {"precision": 0.91, "recall": 0.9, "f1": 0.905}, "top_k": 5, "top_k_accuracy": 0.99}
        if with_misclassified:
            body["misclassified"] = {"3,4": [7, 19, 23], "8,9": [5]}
        return body

    with session_scope() as db_session:
        run = runs_service.create(db_session=db_session, run_in=RunCreate(
            name="finished digits", spec=DIGITS_MLP, dataset="digits"))
        run_id = run.id
        events = [("status", {"status": "running"})]
        for epoch in (1, 2):
            events.append(("step", {"epoch": epoch, "step": epoch * 40 - 20, "loss": 1.0 / epoch, "accuracy": 0.5,
                                    "samples": epoch * 1000}))
            events.append(("epoch", {"epoch": epoch, "epochs": 2, "step": epoch * 40, "train_loss": 1.0 / epoch,
                                     "train_accuracy": 0.6, "val_loss": 1.1 / epoch, "val_accuracy": 0.55 + epoch / 10,
                                     "lr": 0.001, "epoch_time": 0.5, "samples_per_sec": 2000}))
        events.append(("evaluation", {"split": "test", "epoch": 2, "accuracy": 0.9, "loss": 0.3}))
        events.append(("status", {"status": status}))
        append_events(db_session, run_id, events)
        for epoch, correct in ((1, 20), (2, 30)):
            db_session.add(Evaluation(run_id=run_id, split="val", epoch=epoch, accuracy=correct / 36, loss=0.5,
                                      payload=payload(matrix(correct), False)))
        db_session.add(Evaluation(run_id=run_id, split="test", epoch=2, accuracy=33 / 36, loss=0.3,
                                  payload=payload(matrix(33), True)))
        run.status, run.epoch, run.epochs_total = status, 2, 2
        run.best_val_accuracy, run.test_accuracy, run.test_loss = 0.75, 33 / 36, 0.3
    return run_id


@pytest.mark.parametrize("url", ["/", "/runs/new", "/datasets", "/learn/activations", "/runs/new?preset=mnist-mlp"])
def test_pages_render(client, url):
    response = client.get(url)
    assert response.status_code == 200
    assert "https://" not in response.text  # nothing from a CDN


def test_unknown_run_is_the_html_404_page(client):
    response = client.get("/runs/999")
    assert response.status_code == 404
    assert "Run 999 does not exist" in response.text


def test_launch_form_offers_every_setting_and_available_data_sets(client):
    html = client.get("/runs/new?preset=mnist-mlp").text
    for name in ("config.epochs", "config.batch_size", "config.optimizer.name", "config.optimizer.lr",
                 "config.optimizer.momentum", "config.optimizer.nesterov", "config.optimizer.betas.0",
                 "config.optimizer.betas.1", "config.optimizer.weight_decay", "config.loss", "config.l2",
                 "config.schedule.name", "config.schedule.step_size", "config.schedule.gamma",
                 "config.early_stopping.enabled", "config.early_stopping.patience", "config.grad_clip",
                 "config.seed", "config.device", "config.val_split", "config.normalize", "config.keep_checkpoints",
                 "config.precision"):
        assert f'name="{name}"' in html, name
    assert re.search(r'<option value="preset:mnist-mlp" selected>', html)
    assert re.search(r'<option value="digits"\s*>', html)
    assert re.search(r'<option value="mnist"[^>]*disabled', html)  # not on this machine


def test_a_data_sets_train_link_offers_its_default_model_and_the_form_queues_it(client):
    form = client.get("/runs/new?dataset=spirals").text
    assert re.search(r'<option value="default" selected>Default model for the data set', form)
    assert re.search(r'<option value="spirals"\s+selected>', form)
    assert 'value="default" selected' not in client.get("/runs/new").text  # a bare form chooses nothing
    response = client.post("/runs", data=launch_form(model="default", dataset="spirals"), follow_redirects=False)
    assert response.status_code == 303, response.text
    [run] = client.get("/api/runs").json()["items"]
    assert run["name"] == "default model on spirals" and run["preset"] is None
    assert run["spec"]["layers"][-1] == {"type": "Dense", "units": 3, "activation": "softmax"}
    # A preset takes the data set too when only its input and output layers change.
    response = client.post("/runs", data=launch_form(model="preset:mnist-mlp", dataset="spirals"), follow_redirects=False)
    assert response.status_code == 303, response.text
    assert client.get("/api/runs").json()["items"][0]["spec"]["input_shape"] == [2]


def test_what_the_form_switches_off_stays_off_over_an_architectures_saved_settings(client):
    saved = client.post("/api/architectures", json={"name": "digits", "spec": {"input_shape": [1, 8, 8], **DIGITS_MLP},
                                                    "training": {"epochs": 4, "grad_clip": 1.0,
                                                                 "early_stopping": {"patience": 2}}}).json()
    form = client.get(f"/runs/new?architecture_id={saved['id']}").text
    assert re.search(r'name="config.early_stopping.enabled"[^>]*checked', form)
    # The person unticks early stopping and clears the clip: the launch form posts them off.
    response = client.post("/runs", data=launch_form(model=f"architecture:{saved['id']}"), follow_redirects=False)
    assert response.status_code == 303, response.text
    config = client.get("/api/runs").json()["items"][0]["config"]
    assert (config["epochs"], config["early_stopping"], config["grad_clip"]) == (3, None, None)


def test_form_422_shows_each_message_next_to_its_field(client):
    response = client.post("/runs", data=launch_form(**{"config.epochs": "0", "config.batch_size": "many",
                                                        "config.optimizer.lr": "-1"}), headers=HTMX)
    assert response.status_code == 422
    html = response.text
    assert "greater than or equal to 1" in slot(html, "config-epochs-errors")
    assert "not a whole number" in slot(html, "config-batch_size-errors")
    assert "greater than 0" in slot(html, "config-optimizer-lr-errors")
    assert slot(html, "dataset-errors") == ""
    assert 'value="many"' in html  # what was typed stays in the field
    assert client.get("/api/runs").json()["total"] == 0


def test_service_422_details_map_to_fields(client):
    mnist_mlp = {"input_shape": [1, 28, 28], **DIGITS_MLP}
    saved = client.post("/api/architectures", json={"name": "28x28", "spec": mnist_mlp}).json()["id"]
    html = client.post("/runs", data=launch_form(model=f"architecture:{saved}")).text
    assert "expects input (1, 28, 28)" in slot(html, "dataset-errors")
    html = client.post("/runs", data=launch_form(model="preset:cifar10-cnn")).text
    assert "preset 'cifar10-cnn' is made for cifar10 (3x32x32)" in slot(html, "model-errors")
    html = client.post("/runs", data=launch_form(**{"config.epochs": "5000"})).text
    assert "over the limit" in slot(html, "config-epochs-errors")
    html = client.post("/runs", data=launch_form(model="")).text
    assert "the data set's default model, a saved architecture or a preset" in slot(html, "model-errors")
    html = client.post("/runs", data=launch_form(**{"config.optimizer.name": "sgd", "config.optimizer.momentum": "0",
                                                    "config.optimizer.nesterov": "1"})).text
    assert "nesterov needs momentum" in slot(html, "config-optimizer-name-errors")


def test_valid_form_queues_the_run_and_opens_its_page(client):
    form = launch_form(name="form run", **{
        "config.optimizer.name": "sgd", "config.optimizer.momentum": "0.9", "config.optimizer.nesterov": "1",
        "config.optimizer.betas.0": "0.5",  # an Adam setting left in a hidden field is ignored
        "config.schedule.name": "step", "config.schedule.step_size": "2", "config.schedule.gamma": "0.5",
        "config.early_stopping.enabled": "1", "config.early_stopping.patience": "2", "config.grad_clip": "1.5",
        "config.normalize": "standardize"})
    response = client.post("/runs", data=form, headers=HTMX)
    assert response.status_code == 200
    assert response.headers["HX-Redirect"] == "/runs/1"
    config = client.get("/api/runs/1").json()["config"]
    assert config["optimizer"] == {"name": "sgd", "lr": 0.001, "momentum": 0.9, "nesterov": True}
    assert config["schedule"] == {"name": "step", "step_size": 2, "gamma": 0.5}
    assert config["early_stopping"]["patience"] == 2 and config["grad_clip"] == 1.5
    assert config["normalize"] == "standardize"
    page = client.get("/runs/1")
    assert page.status_code == 200 and 'data-status="queued"' in page.text
    assert "Dense 10, softmax" in page.text  # the architecture table and diagram


def test_quick_start_launches_digits_and_presets_without_their_data_offer_the_download(client):
    html = client.get("/").text
    quick = re.search(r'<button[^>]*data-launch="quick:digits-mlp"[^>]*>', html, re.S)
    assert quick and "disabled" not in quick.group(0)  # digits is built in: always launchable
    mnist = re.search(r'<form[^>]*>\s*<button[^>]*data-launch="preset:mnist-mlp"[^>]*>', html, re.S).group(0)
    assert 'hx-post="/datasets/mnist/download?buttons=0"' in mnist and 'data-download="mnist"' in mnist
    assert "disabled" not in mnist
    assert "trainboard data import mnist" in html
    response = client.post("/runs/quick", data={"launch": "quick:digits-mlp"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/runs/1"
    assert client.get("/api/runs/1").json()["dataset"] == "digits"
    response = client.post("/runs/quick", data={"launch": "preset:mnist-mlp"}, headers=HTMX)
    assert response.status_code == 422 and "mnist is not here yet" in response.text


def test_dashboard_lists_runs_with_progress_and_filters(client):
    run_id = finished_run()
    client.post("/runs/quick", data={"launch": "quick:digits-mlp"})
    html = client.get("/").text
    row = re.search(rf'<tr id="run-row-{run_id}".*?</tr>', html, re.S).group(0)
    assert "completed" in row and "epoch 2 of 2" in row and "91.7%" in row and "2,410" in row
    queued = re.search(r'<tr id="run-row-2".*?>', html, re.S).group(0)
    assert 'sse-swap="row-2"' in queued and "hx-get" not in queued  # rows are swapped from /stream/runs
    table = client.get("/?status=completed", headers=HTMX).text
    assert table.lstrip().startswith('<div id="runs-table"') and "run-row-1" in table and "run-row-2" not in table
    assert 'hx-get="/?status=completed" hx-trigger="sse:run-new' in table  # a new run refreshes it, filtered
    assert "No runs match" in client.get("/?dataset=moons").text


def test_finished_run_shows_confusion_matrix_per_class_table_and_gallery_links(client):
    run_id = finished_run()
    html = client.get(f"/runs/{run_id}").text
    assert 'id="confusion-matrix"' in html and "Test set · after training" in html
    cells = re.findall(r'<td class="cell[^"]*"[^>]*data-true="(\d)" data-pred="(\d)" data-count="(\d+)"', html)
    assert len(cells) == 100 and ("3", "3", "33") in cells and ("3", "4", "3") in cells
    assert f'hx-get="/runs/{run_id}/gallery?true=3&amp;pred=4"' in html
    assert 'id="per-class"' in html and "macro avg" in html and "weighted avg" in html
    assert 'id="test-accuracy">91.7%' in html and 'id="test-top-k">99.0%' in html
    assert 'min="1" max="2"' in html  # the epoch slider spans the validation evaluations
    assert f"/api/runs/{run_id}/artifacts/pytorch" in html
    assert f'href="/compare?runs={run_id}" id="compare-link"' in html

    gallery = client.get(f"/runs/{run_id}/gallery?true=3&pred=4").text
    images = re.findall(r'<img src="([^"]+)"', gallery)
    assert images == [f"/api/datasets/digits/samples/{i}.png?split=test" for i in (7, 19, 23)]
    assert "correct predictions" in client.get(f"/runs/{run_id}/gallery?true=2&pred=2").text

    val = client.get(f"/runs/{run_id}/confusion?split=val&epoch=1").text
    assert "Validation · epoch 1 of 2" in val and 'data-count="20"' in val and "<button" not in val
    normalized = client.get(f"/runs/{run_id}/confusion?split=test&normalized=true").text
    assert 'data-normalized="true"' in normalized and ">92%<" in normalized


def test_run_actions_cancel_resume_and_fork_errors(client):
    client.post("/runs/quick", data={"launch": "quick:digits-mlp"})
    response = client.post("/runs/1/cancel", headers=HTMX)
    assert response.status_code == 200 and "Cancelling" in response.text
    assert client.get("/api/runs/1").json()["status"] == "cancelled"
    response = client.post("/runs/1/resume", headers=HTMX)
    assert response.headers["HX-Redirect"] == "/runs/1"
    assert client.get("/api/runs/1").json()["status"] == "queued"
    response = client.post("/runs/1/fork", data={"epoch": "3", "config.optimizer.lr": "0.01"}, headers=HTMX)
    assert response.status_code == 422 and "no checkpoint" in response.text
    finished = finished_run()
    response = client.post(f"/runs/{finished}/resume", headers=HTMX)
    assert response.status_code == 422 and "only failed, cancelled or interrupted runs" in response.text

    from app.runs import service as runs_service

    checkpoint = runs_service.checkpoint_path(finished, 2)
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"")  # fork only needs the checkpoint to exist; the trainer reads it
    for bad, needle in (({"config.optimizer.lr": "fast"}, "config.optimizer.lr: “fast” is not a number"),
                        ({"epoch": "two"}, "epoch: “two” is not a whole number"),
                        ({"config.epochs": "0"}, "config.epochs: Input should be greater than or equal to 1")):
        response = client.post(f"/runs/{finished}/fork", data=bad, headers=HTMX)
        assert response.status_code == 422 and needle in unescape(response.text), response.text
    response = client.post(f"/runs/{finished}/fork", data={"epoch": "2", "config.optimizer.lr": "0.01",
                                                            "config.epochs": "4"}, headers=HTMX)
    child = client.get("/api/runs").json()["items"][0]
    assert response.headers["HX-Redirect"] == f"/runs/{child['id']}"
    assert child["parent_run_id"] == finished and child["fork_epoch"] == 2
    assert child["config"]["optimizer"]["lr"] == 0.01 and child["epochs_total"] == 4
    assert f"fork of <a href=\"/runs/{finished}\">#{finished}</a>" in client.get(f"/runs/{child['id']}").text


def test_datasets_page_shows_samples_class_counts_and_how_to_import(client):
    html = client.get("/datasets").text
    digits = re.search(r'<article[^>]*id="dataset-digits".*?</article>', html, re.S).group(0)
    assert len(re.findall(r'src="/api/datasets/digits/samples/\d+\.png\?split=test"', digits)) == 16
    assert len(re.findall(r'class="bar-fill"', digits)) == 10
    mnist = re.search(r'<article[^>]*id="dataset-mnist".*?</article>', html, re.S).group(0)
    assert "trainboard data import mnist" in mnist and "<img" not in mnist


def test_upload_errors_appear_next_to_their_fields(client):
    response = client.post("/datasets", data={"name": "Bad Name!", "label_column": "label"},
                           files={"file": ("notes.txt", b"hello", "text/plain")}, headers=HTMX)
    assert response.status_code == 422
    assert "invalid data set name" in slot(response.text, "name-errors")
    assert "neither .csv nor .zip" in slot(response.text, "file-errors")
    csv = b"a,b,kind\n" + b"".join(f"{i},{i % 3},{i % 2}\n".encode() for i in range(40))
    response = client.post("/datasets", data={"name": "tiny", "label_column": "label"},
                           files={"file": ("tiny.csv", csv, "text/csv")}, headers=HTMX)
    assert response.status_code == 422 and "no 'label' column" in slot(response.text, "label_column-errors")
    response = client.post("/datasets", data={"name": "tiny", "label_column": "kind"},
                           files={"file": ("tiny.csv", csv, "text/csv")}, headers=HTMX)
    assert response.status_code == 200 and response.headers["HX-Redirect"].startswith("/datasets?uploaded=tiny")
    assert 'id="dataset-tiny"' in client.get("/datasets").text


def test_activations_page_explains_each_activation_and_the_builder_links_to_it(client):
    html = client.get("/learn/activations").text
    for name in ("relu", "sigmoid", "tanh", "softmax", "gelu", "leaky_relu", "elu", "linear"):
        assert f'id="{name}"' in html and f'aria-label="plot of {name}"' in html
    builder = client.get("/architectures/new?preset=mnist-mlp").text
    assert 'href="/learn/activations#relu"' in builder
