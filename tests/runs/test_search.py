"""Finding runs: the search query's terms and messages, and keyset pages in every sort order (NULLs last)."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import update

from app.core.db import session_scope
from app.core.errors import InvalidInput
from app.runs import lifecycle, search
from app.runs.models import Run


def _seed(count: int = 37) -> list[int]:
    rng = random.Random(7)
    ids = []
    with session_scope() as db_session:
        for i in range(count):
            run = lifecycle.enqueue(db_session, Run(name=f"{'mlp' if i % 2 else 'cnn'} run {i}", spec={}, config={},
                                                    dataset="digits" if i % 3 else "moons", total_params=rng.choice([100, 200, 300])))
            ids.append(run.id)
        db_session.flush()
        for run_id in ids:
            accuracy = None if rng.random() < 0.3 else rng.choice([0.5, 0.9, 0.97, 0.98])
            db_session.execute(update(Run).where(Run.id == run_id).values(
                test_accuracy=accuracy, best_val_accuracy=accuracy, status="completed" if accuracy else "queued"))
    return ids


def _all(db_session, **kwargs) -> list[Run]:
    return search.page(db_session=db_session, limit=1000, **kwargs)[0]


def test_terms_filter_by_name_field_and_metric(data_dir):
    _seed()
    with session_scope(write=False) as db_session:
        def find(text):
            return _all(db_session, query=search.parse(text))
        assert {r.name.split()[0] for r in find("MLP")} == {"mlp"}
        assert all(r.dataset == "moons" for r in find("dataset:moons")) and find("dataset:moons")
        high = find("val_accuracy>0.97 status:completed")
        assert high and all(r.best_val_accuracy > 0.97 for r in high)
        assert {r.id for r in find("val_accuracy>=97%")} == {r.id for r in find("val_accuracy>=0.97")}
        assert all(r.total_params < 250 and "cnn" in r.name for r in find("cnn params<250"))
        assert find("created>2000-01-01") and not find("created<2000-01-01")
        assert find("mlp run 3")[0].name == "mlp run 3" or all("3" in r.name for r in find("mlp run 3"))


@pytest.mark.parametrize("text, words", [
    ("status:done", "there is no status 'done'"),
    ("accuracy>0.9", "there is no metric 'accuracy'"),
    ("val_accuracy>high", "'high' is not a number"),
    ("created>yesterday", "created takes a date"),
    ("owner:me", "'owner' is not something to search by"),
    ("arch:x", "'x' is not an id"),
    ("x " * 25, "at most 20"),
])
def test_unreadable_terms_say_what_to_write(data_dir, text, words):
    with pytest.raises(InvalidInput) as caught:
        search.parse(text)
    assert words in caught.value.message


@pytest.mark.parametrize("sort", sorted(search.SORTS))
@pytest.mark.parametrize("descending", [True, False])
def test_keyset_pages_walk_the_whole_order_once(data_dir, sort, descending):
    _seed()
    with session_scope(write=False) as db_session:
        whole = [r.id for r in _all(db_session, query=search.Query(), sort=sort, descending=descending)]
        assert len(whole) == 37
        walked, cursor = [], None
        for _ in range(20):
            rows, cursor, total = search.page(db_session=db_session, query=search.Query(), sort=sort,
                                              descending=descending, cursor=cursor, limit=5)
            walked += [r.id for r in rows]
            if cursor is None:
                break
        assert walked == whole and total == 37
        values = [getattr(db_session.get(type(r), r.id), search.SORTS[sort].key) for r in _all(
            db_session, query=search.Query(), sort=sort, descending=descending)]
        present = [v for v in values if v is not None]
        assert values[:len(present)] == present  # NULLs last
        assert present == sorted(present, reverse=descending)


def test_a_cursor_from_elsewhere_is_refused(data_dir):
    with session_scope(write=False) as db_session:
        for cursor in ("garbage", "W10", search.encode_cursor("name", Run(id=3, name="x"))):
            with pytest.raises(InvalidInput, match="start from the first page"):
                search.page(db_session=db_session, query=search.Query(), sort="created", cursor=cursor)


def test_the_runs_api_searches_and_pages_by_cursor(client):
    _seed()
    answer = client.get("/api/runs", params={"q": "mlp", "sort": "name", "order": "asc", "limit": 4}).json()
    names = [r["name"] for r in answer["items"]]
    assert len(names) == 4 and all(n.startswith("mlp") for n in names) and answer["next_cursor"]
    following = client.get("/api/runs", params={"q": "mlp", "sort": "name", "order": "asc", "limit": 4,
                                                "cursor": answer["next_cursor"]}).json()
    assert not set(names) & {r["name"] for r in following["items"]} and following["total"] == answer["total"]
    bad = client.get("/api/runs", params={"q": "val_accuracy>lots"})
    assert bad.status_code == 422 and "'lots' is not a number" in bad.text
    assert client.get("/api/runs", params={"sort": "colour"}).status_code == 422
    assert client.get("/api/runs", params={"cursor": "nope"}).status_code == 422
    # the old way still works: offset pages, newest first
    assert client.get("/api/runs", params={"offset": 30}).json()["items"][0]["id"] == 7


def test_search_by_tag_and_archived(client):
    ids = _seed(6)
    assert client.put(f"/api/runs/{ids[0]}/tags", json={"tags": ["baseline"]}).status_code == 200
    assert client.put(f"/api/runs/{ids[1]}/tags", json={"tags": ["baseline", "wide"]}).status_code == 200
    client.post("/api/runs/archive", json={"ids": [ids[1]]})

    def found(q: str, **params) -> list[int]:
        return sorted(r["id"] for r in client.get("/api/runs", params={"q": q, **params}).json()["items"])

    assert found("tag:baseline") == [ids[0]]  # the archived one is left out…
    assert found("tag:baseline archived:all") == [ids[0], ids[1]]  # …unless asked for
    assert found("tag:wide", archived="true") == [ids[1]]
    assert found("tag:nothing") == []
    assert client.get("/api/runs", params={"q": "archived:maybe"}).status_code == 422


def test_the_compare_picker_finds_runs_with_the_same_search(client):
    ids = _seed(12)
    page = client.get("/compare", params={"q": "mlp status:completed"}).text
    with session_scope(write=False) as db_session:
        wanted = {r.id for r in _all(db_session, query=search.parse("mlp status:completed archived:all"))}
    shown = {run_id for run_id in ids if f'id="pick-{run_id}"' in page}
    assert shown == wanted and wanted
    bad = client.get("/compare", params={"q": "params<many"})
    assert bad.status_code == 200 and 'id="picker-errors"' in bad.text and "is not a number" in bad.text
