"""Run management over the API (app/runs/manage.py): tags and their colours, notes rendered safely,
rename, archive, and deleting runs (one or many) with every row and file they left behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import update

from app.runs import lifecycle
from app.runs.manage import render_note
from app.runs.models import COMPLETED, QUEUED, RUNNING, STARTING, Run
from tests.conftest import LiveServer
from tests.runs.helpers import run_body, wait_exports, wait_status


def _new_run(status: str = QUEUED, name: str = "t") -> int:
    """A run in `status`, set directly (the test's own setup, not a transition)."""
    from app.core.db import session_scope

    with session_scope() as db_session:
        run = lifecycle.enqueue(db_session, Run(name=name, spec={}, dataset="digits", config={}))
        run_id = run.id
        if status != QUEUED:
            db_session.execute(update(Run).where(Run.id == run_id).values(status=status))
    return run_id


def test_tags_replace_add_remove_and_colour(client):
    a, b = _new_run(COMPLETED), _new_run(COMPLETED)
    answer = client.put(f"/api/runs/{a}/tags", json={"tags": ["baseline", " lr  sweep ", "baseline"]})
    assert answer.status_code == 200, answer.text
    assert [t["name"] for t in answer.json()["tags"]] == ["baseline", "lr sweep"]
    assert all(t["colour"].startswith("#") and len(t["colour"]) == 7 for t in answer.json()["tags"])

    bulk = client.post("/api/runs/tags", json={"ids": [a, b], "add": ["best"], "remove": ["baseline"]})
    assert bulk.status_code == 200, bulk.text
    assert {r["id"]: [t["name"] for t in r["tags"]] for r in bulk.json()} == {a: ["best", "lr sweep"], b: ["best"]}

    tags = client.get("/api/tags").json()
    assert {t["name"]: t["runs"] for t in tags} == {"baseline": 0, "best": 2, "lr sweep": 1}
    assert client.patch("/api/tags/best", json={"colour": "#AA00ff"}).json() == {"name": "best", "colour": "#aa00ff"}
    assert client.get(f"/api/runs/{b}").json()["tags"] == [{"name": "best", "colour": "#aa00ff"}]
    assert client.patch("/api/tags/best", json={"colour": "red"}).status_code == 422
    assert client.patch("/api/tags/nope", json={"colour": "#000000"}).status_code == 404

    assert client.put(f"/api/runs/{a}/tags", json={"tags": []}).json()["tags"] == []


def test_tag_limits(client):
    run_id = _new_run()
    assert client.put(f"/api/runs/{run_id}/tags", json={"tags": ["x" * 41]}).status_code == 422
    assert client.put(f"/api/runs/{run_id}/tags", json={"tags": [f"t{i}" for i in range(21)]}).status_code == 422
    for bad in ["", "   ", "a,b", "<b>", 'say "hi"']:
        assert client.put(f"/api/runs/{run_id}/tags", json={"tags": [bad]}).status_code == 422, bad
    assert client.put(f"/api/runs/{run_id}/tags", json={"tags": [f"t{i}" for i in range(20)]}).status_code == 200
    over = client.post("/api/runs/tags", json={"ids": [run_id], "add": ["one more"]})
    assert over.status_code == 422 and "at most 20" in over.text
    assert len(client.get(f"/api/runs/{run_id}").json()["tags"]) == 20
    assert client.put("/api/runs/999999/tags", json={"tags": ["a"]}).status_code == 404


def test_rename_and_note(client):
    run_id = _new_run()
    answer = client.patch(f"/api/runs/{run_id}", json={"name": "  better name ", "note": "**bold**"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["name"] == "better name" and answer.json()["note"] == "**bold**"
    assert client.patch(f"/api/runs/{run_id}", json={"note": ""}).json()["note"] is None
    assert client.patch(f"/api/runs/{run_id}", json={"note": "x" * 20_001}).status_code == 422
    assert client.patch(f"/api/runs/{run_id}", json={"name": ""}).status_code == 422
    assert client.patch(f"/api/runs/{run_id}", json={"name": "   "}).status_code == 422
    assert client.patch(f"/api/runs/{run_id}", json={"colour": "x"}).status_code == 422


def test_notes_render_markdown_but_never_html_or_script_links():
    html = render_note("# Title\n\n*x* <script>alert(1)</script> <img src=x onerror=alert(1)>\n\n"
                       "[ok](https://example.org) [bad](javascript:alert(1)) ![pic](https://example.org/p.png)")
    assert "<h1>Title</h1>" in html and "<em>x</em>" in html
    assert "<script" not in html and "<img" not in html and "&lt;script&gt;" in html
    assert 'href="https://example.org"' in html and 'rel="nofollow noopener noreferrer"' in html
    assert "javascript:" not in html.replace("[bad](javascript:alert(1))", "")
    assert 'href="javascript' not in html


def test_the_run_page_shows_the_note_safely(client):
    run_id = client.post("/api/runs", json=run_body()).json()["id"]  # stays queued: no executor here
    client.patch(f"/api/runs/{run_id}", json={"note": "see **this** <script>alert(1)</script>"})
    client.put(f"/api/runs/{run_id}/tags", json={"tags": ["baseline"]})
    page = client.get(f"/runs/{run_id}").text
    assert "<strong>this</strong>" in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)" not in page
    assert 'data-tag="baseline"' in page


def test_archived_runs_are_hidden_unless_asked_for(client):
    kept, hidden = _new_run(COMPLETED, "kept run"), _new_run(COMPLETED, "hidden run")
    answer = client.post("/api/runs/archive", json={"ids": [hidden]})
    assert answer.status_code == 200 and answer.json()[0]["archived"] is True

    def ids(query: str = "") -> list[int]:
        return [r["id"] for r in client.get(f"/api/runs{query}").json()["items"]]

    assert ids() == [kept] and ids("?archived=false") == [kept]
    assert ids("?archived=true") == [hidden] and ids("?archived=all") == [hidden, kept]
    assert client.get("/api/runs?archived=maybe").status_code == 422
    assert "hidden run" not in client.get("/").text
    assert "hidden run" in client.get("/?archived=1").text
    client.post("/api/runs/archive", json={"ids": [hidden], "archived": False})
    assert ids() == [hidden, kept]
    assert client.post("/api/runs/archive", json={"ids": [hidden, 999999]}).status_code == 404


def test_bulk_delete_refuses_active_runs_and_says_which(client):
    done, starting, running = _new_run(COMPLETED), _new_run(STARTING), _new_run(RUNNING)
    refused = client.post("/api/runs/delete", json={"ids": [done, starting, running]})
    assert refused.status_code == 409
    assert f"#{starting}" in refused.json()["detail"] and f"#{running}" in refused.json()["detail"]
    assert f"#{done}" not in refused.json()["detail"]
    assert client.get(f"/api/runs/{done}").status_code == 200  # nothing was deleted
    plan = client.post("/api/runs/delete", json={"ids": [done, running], "dry_run": True}).json()
    assert plan == {"ids": [done, running], "bytes_freed": 0, "active": [running], "dry_run": True}
    assert client.get(f"/api/runs/{done}").status_code == 200
    assert client.post("/api/runs/delete", json={"ids": []}).status_code == 422
    assert client.post("/api/runs/delete", json={"ids": list(range(1, 502))}).status_code == 422
    assert client.post("/api/runs/delete", json={"ids": [999999]}).status_code == 404
    answer = client.post("/api/runs/delete", json={"ids": [done]})
    assert answer.status_code == 200 and answer.json()["ids"] == [done]
    assert client.get(f"/api/runs/{done}").status_code == 404


def _tables_naming(server: LiveServer, run_id: int) -> dict[str, int]:
    """Rows that still name the run, in every table that has a run id column (found from the schema)."""
    from sqlalchemy import inspect

    from app.core.db import make_engine

    engine = make_engine(server.database_url)
    try:
        inspector = inspect(engine)
        columns = {table: [c["name"] for c in inspector.get_columns(table)] for table in inspector.get_table_names()}
    finally:
        engine.dispose()
    found = {}
    for table, names in columns.items():
        for column in [n for n in names if n in ("run_id", "parent_run_id")] + (["id"] if table == "runs" else []):
            count = server.sql(f"select count(*) from {table} where {column} = :run_id", run_id=run_id)[0][0]
            if count:
                found[f"{table}.{column}"] = count
    return found


def _files_naming(data_dir: Path, run_id: int) -> list[str]:
    """Files and folders under the data dir whose name is the run's (run-<id>, run-<id>.log...)."""
    names = {f"run-{run_id}", f"run-{run_id}.log"}
    hits = []
    for folder, dirs, files in os.walk(data_dir):
        hits += [os.path.join(folder, n) for n in dirs + files if n in names]
    return hits


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A live server (with its executor) and two completed digits runs plus a fork of the first."""
    server = LiveServer(tmp_path_factory.mktemp("manage") / "server-data").start()
    with server.api() as api:
        ids = [api.post("/api/runs", json=run_body(epochs=2)).json()["id"] for _ in range(2)]
        for run_id in ids:
            assert wait_status(api, run_id, "completed", "failed", timeout=120)["status"] == "completed"
        child = api.post(f"/api/runs/{ids[0]}/fork", json={"epoch": 1, "config": {"epochs": 2}}).json()
        assert wait_status(api, child["id"], "completed", "failed", timeout=120)["status"] == "completed"
        for run_id in [*ids, child["id"]]:  # the exports follow `completed`: their files are part of the test
            wait_exports(api, run_id)
    yield server, ids, child["id"]
    server.stop()


def test_deleting_runs_leaves_nothing_behind_on_disk_or_in_the_database(trained):
    server, (first, second), child = trained
    with server.api() as api:
        api.put(f"/api/runs/{first}/tags", json={"tags": ["doomed", "kept tag"]})
        api.put(f"/api/runs/{child}/tags", json={"tags": ["kept tag"]})
        api.patch(f"/api/runs/{first}", json={"note": "going away"})
        for run_id in (first, second):  # what there is to delete: rows in several tables, files on disk
            tables = _tables_naming(server, run_id)
            assert {"runs.id", "run_events.run_id", "evaluations.run_id", "artifacts.run_id"} <= set(tables), tables
            assert _files_naming(server.data_dir, run_id), run_id
        assert "run_tags.run_id" in _tables_naming(server, first)
        on_disk = sum(f.stat().st_size for f in (server.data_dir / "artifacts" / f"run-{first}").rglob("*") if f.is_file())

        plan = api.post("/api/runs/delete", json={"ids": [first, second], "dry_run": True}).json()
        assert plan["bytes_freed"] > on_disk > 0 and plan["active"] == []  # the trainer logs count too
        answer = api.post("/api/runs/delete", json={"ids": [first, second]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["ids"] == [first, second] and answer.json()["bytes_freed"] == plan["bytes_freed"]

        for run_id in (first, second):
            assert _tables_naming(server, run_id) == {}, run_id
            assert _files_naming(server.data_dir, run_id) == [], run_id
            assert api.get(f"/api/runs/{run_id}").status_code == 404
        # The fork lives on without its parent; the tag the deleted run shared stays.
        fork = api.get(f"/api/runs/{child}").json()
        assert fork["parent_run_id"] is None and [t["name"] for t in fork["tags"]] == ["kept tag"]
        assert _files_naming(server.data_dir, child)
        assert {t["name"]: t["runs"] for t in api.get("/api/tags").json()} == {"doomed": 0, "kept tag": 1}

        # The single-run DELETE goes the same way.
        assert api.delete(f"/api/runs/{child}").status_code == 204
        assert _tables_naming(server, child) == {} and _files_naming(server.data_dir, child) == []


def test_viewers_read_tags_and_notes_but_cannot_change_or_delete_anything(client):
    from app.auth import service
    from app.core.db import session_scope

    run_id = _new_run(COMPLETED)
    client.put(f"/api/runs/{run_id}/tags", json={"tags": ["kept"]})
    with session_scope() as db_session:
        viewer = service.create_user(db_session, "viewer", "correct horse battery staple", "viewer")
        token = service.create_token(db_session, viewer, "viewer", "write")[1]
    service.forget_cache()
    try:
        _viewer_is_refused(client, run_id, {"Authorization": f"Bearer {token}"})
    finally:
        service.forget_cache()  # accounts were on for this database only


def _viewer_is_refused(client, run_id: int, headers: dict[str, str]) -> None:
    assert client.get("/api/tags", headers=headers).status_code == 200
    assert client.get(f"/api/runs/{run_id}", headers=headers).json()["tags"][0]["name"] == "kept"
    for method, url, body in [
        ("PUT", f"/api/runs/{run_id}/tags", {"tags": []}), ("PATCH", f"/api/runs/{run_id}", {"note": "x"}),
        ("POST", "/api/runs/tags", {"ids": [run_id], "add": ["x"]}), ("PATCH", "/api/tags/kept", {"colour": "#000000"}),
        ("POST", "/api/runs/archive", {"ids": [run_id]}), ("POST", "/api/runs/delete", {"ids": [run_id]}),
        ("DELETE", f"/api/runs/{run_id}", None), ("POST", f"/runs/{run_id}/delete", None),
        ("POST", f"/runs/{run_id}/tags", None), ("POST", f"/runs/{run_id}/archive", None),
    ]:
        answer = client.request(method, url, json=body, headers=headers)
        assert answer.status_code == 403, (method, url, answer.status_code)
    run = client.get(f"/api/runs/{run_id}", headers=headers).json()
    assert run["archived"] is False and [t["name"] for t in run["tags"]] == ["kept"]
