"""The launch form's learning-rate finder routes and the run's projection page and API (in-process client)."""

from __future__ import annotations

import re
import time

from app.core.db import session_scope
from app.runs.sink import persist_batch
from tests.runs.helpers import run_body

FORM = {"model": "preset:mnist-mlp", "dataset": "digits", "config.epochs": "3", "config.batch_size": "32",
        "config.optimizer.name": "adam", "config.optimizer.lr": "0.001"}


def test_the_form_starts_a_search_and_its_panel_polls_until_the_curve_and_suggestion(client):
    form = client.get("/runs/new").text
    assert 'id="lr-find"' in form and 'hx-post="/runs/lr-finder"' in form and 'id="lr-finder"' in form
    panel = client.post("/runs/lr-finder", data=FORM, headers={"HX-Request": "true"})
    assert panel.status_code == 200, panel.text
    job_id = re.search(r'hx-get="/runs/lr-finder/([0-9a-f]{32})"', panel.text).group(1)
    deadline = time.monotonic() + 90
    while 'hx-trigger="every' in panel.text and time.monotonic() < deadline:
        time.sleep(0.3)
        panel = client.get(f"/runs/lr-finder/{job_id}", headers={"HX-Request": "true"})
    assert 'hx-trigger="every' not in panel.text, "the search did not end"
    suggestion = float(re.search(r'data-use-lr="([^"]+)"', panel.text).group(1))
    assert suggestion == client.get(f"/api/lr-finder/{job_id}").json()["suggestion"]
    points = int(re.search(r'<svg class="scatter lr-chart"[^>]* data-points="(\d+)"', panel.text).group(1))
    assert points == len(client.get(f"/api/lr-finder/{job_id}").json()["points"]) >= 20


def test_a_bad_form_gets_its_errors_next_to_the_fields_and_no_search(client):
    answer = client.post("/runs/lr-finder", data={**FORM, "config.batch_size": "0", "config.optimizer.lr": "-1"},
                         headers={"HX-Request": "true"})
    assert answer.status_code == 422
    assert answer.headers["HX-Retarget"] == "#run-form" and answer.headers["HX-Reswap"] == "outerHTML"
    errors = re.search(r'id="config-batch_size-errors" class="messages">(.*?)</div>', answer.text, re.S).group(1)
    assert 'class="error"' in errors
    assert 'class="error"' in re.search(r'id="config-optimizer-lr-errors" class="messages">(.*?)</div>', answer.text, re.S).group(1)
    answer = client.post("/runs/lr-finder", data={**FORM, "dataset": "no_such_data"}, headers={"HX-Request": "true"})
    assert answer.status_code == 422 and "no_such_data" in answer.text


def test_an_unknown_search_says_so_in_the_panel(client):
    answer = client.get("/runs/lr-finder/" + "a" * 32, headers={"HX-Request": "true"})
    assert answer.status_code == 200 and "no learning-rate search" in answer.text and "hx-trigger" not in answer.text


def _projection(count: int = 6) -> dict:
    true = [i % 3 for i in range(count)]
    pred = [0 if i in (1, 4) else t for i, t in enumerate(true)]  # two mistakes: test #1 and #4
    return {"epoch": 2, "count": count, "total": 360, "features": 32, "layer": 2, "explained_variance": [0.4, 0.2],
            "x": [float(i) for i in range(count)], "y": [float(i % 2) for i in range(count)], "true": true,
            "pred": pred, "index": [10 * i for i in range(count)], "class_names": ["zero", "one", "two"]}


def test_a_runs_projection_as_json_and_as_a_page(client):
    run_id = client.post("/api/runs", json=run_body()).json()["id"]
    missing = client.get(f"/api/runs/{run_id}/projection")
    assert missing.status_code == 404 and "queued" in missing.json()["detail"]
    page = client.get(f"/runs/{run_id}/projection")
    assert page.status_code == 200 and 'id="projection-missing"' in page.text and "has no test-set projection" in page.text
    assert f'href="/runs/{run_id}/projection"' in client.get(f"/runs/{run_id}").text
    with session_scope() as db_session:
        persist_batch(db_session, run_id, [("projection", _projection())])
    data = client.get(f"/api/runs/{run_id}/projection").json()
    assert data["count"] == 6 and data["misclassified"] == 2 and data["dataset"] == "digits"
    assert data["index"] == [0, 10, 20, 30, 40, 50]
    page = client.get(f"/runs/{run_id}/projection").text
    assert 'data-points="6"' in page and page.count('class="pj-point"') == 6
    links = re.findall(r'<a class="pj-dot pj-miss" href="([^"]+)"', page)
    assert links == ["/api/datasets/digits/samples/10.png?split=test", "/api/datasets/digits/samples/40.png?split=test"]
    assert "test #10: true one, predicted zero" in page
    legend = re.search(r'id="projection-legend">(.*?)</ul>', page, re.S).group(1)
    assert [name.strip() for name in re.findall(r"</span>([^<]+)</li>", legend)] == ["zero", "one", "two"]
    image = client.get(links[0])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    # The run page's snapshot carries the event's summary, not its points.
    events = client.get(f"/api/runs/{run_id}/series", params={"events": 10}).json()["events"]
    [summary] = [e["data"] for e in events if e["kind"] == "projection"]
    assert summary["count"] == 6 and "x" not in summary


def test_a_malformed_projection_event_is_no_projection_not_a_500(client):
    run_id = client.post("/api/runs", json=run_body()).json()["id"]
    bad = {**_projection(), "x": [1.0]}  # columns of different lengths (e.g. sent by hand over the ingest API)
    with session_scope() as db_session:
        persist_batch(db_session, run_id, [("projection", bad)])
    assert client.get(f"/api/runs/{run_id}/projection").status_code == 404
    assert client.get(f"/runs/{run_id}/projection").status_code == 200
    with session_scope() as db_session:  # the latest event counts: labels that are not class indices
        persist_batch(db_session, run_id, [("projection", {**_projection(), "true": ["a"] * 6})])
    assert client.get(f"/api/runs/{run_id}/projection").status_code == 404
    assert "has no test-set projection" in client.get(f"/runs/{run_id}/projection").text
    huge = {**_projection(3000), "true": [0] * 3000, "pred": [1] * 3000}  # more than a trainer sends
    with session_scope() as db_session:
        persist_batch(db_session, run_id, [("projection", huge)])
    data = client.get(f"/api/runs/{run_id}/projection").json()
    assert data["count"] == len(data["x"]) == len(data["index"]) == 2000 and data["misclassified"] == 2000
    assert client.get("/api/runs/999999/projection").status_code == 404
    assert client.get("/runs/999999/projection").status_code == 404
