"""A finished run's results through TestClient, from evaluations written as a trainer writes them: the
misclassified gallery a page at a time and following the matrix shown, and top-k accuracy shown only
where it means something (k below the number of classes)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import LOCAL

SPIRALS_MLP = {"layers": [{"type": "Dense", "units": 8, "activation": "relu"},
                          {"type": "Dense", "units": 3, "activation": "softmax"}]}
DIGITS_MLP = {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 32, "activation": "relu"},
                         {"type": "Dense", "units": 10, "activation": "softmax"}]}


@pytest.fixture
def client(data_dir):
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(start_executor=False), base_url=LOCAL) as test_client:
        yield test_client


def stored_run(spec: dict, dataset: str, matrix: list[list[int]], *, misclassified: dict[str, list[int]],
               top_k: int | None = 5, top_k_accuracy: float | None = 1.0) -> int:
    """A completed run with a test evaluation and one validation evaluation (epoch 1) of `matrix`."""
    from app.core.db import session_scope
    from app.runs import service as runs_service
    from app.runs.models import Evaluation
    from app.runs.schemas import RunCreate

    names = [str(i) for i in range(len(matrix))]
    body = {"confusion_matrix": matrix, "class_names": names,
            "per_class": [{"class": n, "precision": 0.5, "recall": 0.5, "f1": 0.5, "support": sum(matrix[i])}
                          for i, n in enumerate(names)],
            "macro": {"precision": 0.5, "recall": 0.5, "f1": 0.5}, "weighted": {"precision": 0.5, "recall": 0.5, "f1": 0.5},
            "top_k": top_k, "top_k_accuracy": top_k_accuracy}
    with session_scope() as db_session:
        run = runs_service.create(db_session=db_session, run_in=RunCreate(name="stored", spec=spec, dataset=dataset))
        db_session.add(Evaluation(run_id=run.id, split="val", epoch=1, accuracy=0.5, loss=0.5, payload=body))
        db_session.add(Evaluation(run_id=run.id, split="test", epoch=1, accuracy=0.5, loss=0.5,
                                  payload={**body, "misclassified": misclassified}))
        run.status, run.epoch, run.epochs_total, run.test_accuracy = "completed", 1, 1, 0.5
        return run.id


def digits_run(wrong: int = 25, kept: int | None = None) -> int:
    """Digits: `wrong` test samples of class 3 called 4, the first `kept` of them (default all) kept."""
    matrix = [[30 if t == p else 0 for p in range(10)] for t in range(10)]
    matrix[3][4] = wrong
    indices = list(range(100, 100 + wrong))[:kept]
    return stored_run(DIGITS_MLP, "digits", matrix, misclassified={"3,4": indices})


def images(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<img src="/api/datasets/digits/samples/(\d+)\.png\?split=test"', html)]


def test_the_gallery_pages_through_every_kept_image(client):
    run_id = digits_run(wrong=45)
    first = client.get(f"/runs/{run_id}/gallery?true=3&pred=4").text
    assert images(first) == list(range(100, 120))
    assert "Showing 1–20 of 45" in first and "page 1 of 3" in first
    assert re.search(r'id="gallery-prev"[^>]*disabled', first)
    assert f'hx-get="/runs/{run_id}/gallery?true=3&amp;pred=4&amp;page=2"' in first
    third = client.get(f"/runs/{run_id}/gallery?true=3&pred=4&page=3").text
    assert images(third) == list(range(140, 145)) and "Showing 41–45 of 45" in third
    assert re.search(r'id="gallery-next"[^>]*disabled', third)
    assert images(client.get(f"/runs/{run_id}/gallery?true=3&pred=4&page=9").text) == list(range(140, 145))
    assert client.get(f"/runs/{run_id}/gallery?true=3&pred=4&page=0").status_code == 422


def test_a_cell_with_more_samples_than_kept_says_so(client):
    run_id = digits_run(wrong=250, kept=200)  # what the engine keeps per cell
    html = client.get(f"/runs/{run_id}/gallery?true=3&pred=4&page=10").text
    assert images(html) == list(range(280, 300))
    assert "Showing 181–200 of 200 (the run kept 200 of this cell's 250)" in html
    assert "page 1 of 10" in client.get(f"/runs/{run_id}/gallery?true=3&pred=4").text


def test_a_new_matrix_reopens_the_test_gallery_or_closes_it(client):
    run_id = digits_run(wrong=25)
    page = client.get(f"/runs/{run_id}").text
    assert re.search(r'<section id="gallery" class="gallery-slot" aria-live="polite"></section>', page)  # empty, closed
    gallery = client.get(f"/runs/{run_id}/gallery?true=3&pred=4&page=2").text
    assert 'form="confusion-controls" name="gallery" value="3,4"' in gallery
    assert 'form="confusion-controls" name="gallery_page" value="2"' in gallery

    # Normalizing the test matrix keeps the gallery where it was (sent out of band beside the matrix).
    same = client.get(f"/runs/{run_id}/confusion?split=test&normalized=true&gallery=3,4&gallery_page=2").text
    oob = re.search(r'<section id="gallery"[^>]*hx-swap-oob="true">(.*?)</section>', same, re.S)
    assert oob and images(oob.group(1)) == list(range(120, 125)) and "page 2 of 2" in oob.group(1)
    # A validation epoch has no images: the gallery closes.
    val = client.get(f"/runs/{run_id}/confusion?split=val&epoch=1&gallery=3,4&gallery_page=2").text
    assert "Validation · epoch 1" in val
    assert re.search(r'<section id="gallery"[^>]*hx-swap-oob="true"></section>', val)
    # No open gallery, or a cell that is no cell of this matrix: the slot stays empty.
    for query in ("split=test", "split=test&gallery=3,99", "split=test&gallery=x"):
        html = client.get(f"/runs/{run_id}/confusion?{query}").text
        assert re.search(r'<section id="gallery"[^>]*hx-swap-oob="true"></section>', html), query


def test_top_k_shows_only_when_k_is_below_the_number_of_classes(client):
    three = stored_run(SPIRALS_MLP, "spirals", [[5, 1, 0], [0, 6, 0], [1, 0, 5]], misclassified={},
                       top_k=5, top_k_accuracy=1.0)  # recorded before the engine stopped recording it
    page = client.get(f"/runs/{three}").text
    assert 'id="test-accuracy"' in page and "Top-" not in page and 'id="test-top-k"' not in page
    evaluation = client.get(f"/api/runs/{three}/evaluation").json()
    assert evaluation["top_k"] is None and evaluation["top_k_accuracy"] is None
    assert client.get(f"/api/runs/{three}/evaluation?epoch=1").json()["top_k_accuracy"] is None

    ten = stored_run(DIGITS_MLP, "digits", [[3 if t == p else 0 for p in range(10)] for t in range(10)],
                     misclassified={}, top_k=5, top_k_accuracy=0.97)
    assert re.search(r'<dt>Top-5 accuracy</dt><dd id="test-top-k">97.0%</dd>', client.get(f"/runs/{ten}").text)
    assert client.get(f"/api/runs/{ten}/evaluation").json()["top_k_accuracy"] == 0.97


def test_a_points_gallery_explains_its_ring(client):
    run_id = stored_run(SPIRALS_MLP, "spirals", [[5, 1, 0], [0, 6, 0], [1, 0, 5]], misclassified={"0,1": [3]})
    html = client.get(f"/runs/{run_id}/gallery?true=0&pred=1").text
    assert '<img src="/api/datasets/spirals/samples/3.png?split=test"' in html
    assert "the black ring marks the sample" in html
    assert "ring" not in client.get(f"/runs/{digits_run()}/gallery?true=3&pred=4").text
