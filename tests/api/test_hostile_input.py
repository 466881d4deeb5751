"""Bad input gets a clear 4xx that names the field, before anything heavy happens: never a 500."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from tests.conftest import LOCAL
from tests.runs.helpers import run_body

HUGE = str(2**31)  # one past PostgreSQL's integer (the ids' columns; SQLite's would hold it)


def _fields(response) -> list[str]:
    return [error["field"] for error in response.json()["errors"]]


@pytest.fixture
def make_client(data_dir, monkeypatch) -> Iterator:
    """A client for an app built after the given TRAINBOARD_* settings are set."""
    from app.core.config import get_settings
    from app.main import create_app

    clients = []

    def make(**env: str) -> TestClient:
        for key, value in env.items():
            monkeypatch.setenv(f"TRAINBOARD_{key.upper()}", value)
        get_settings.cache_clear()
        client = TestClient(create_app(start_executor=False), base_url=LOCAL, raise_server_exceptions=False)
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def api(make_client) -> TestClient:
    return make_client()


# ---------- 1. a pydantic ValidationError raised past the request's own validation ----------

def _run_with_checkpoint(api: TestClient) -> int:
    from app.runs import service as runs_service

    run = api.post("/api/runs", json=run_body())
    assert run.status_code == 201, run.text
    run_id = run.json()["id"]
    path = runs_service.checkpoint_path(run_id, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")  # fork checks that the checkpoint exists; the trainer would read it
    return run_id


@pytest.mark.parametrize("changes, field", [
    ({"optimizer": {"lr": -1}}, "config.optimizer.lr"),
    ({"epochs": "many"}, "config.epochs"),
    ({"seed": 2**40}, "config.seed"),
    ({"colour": "blue"}, "config.colour"),
])
def test_fork_with_invalid_settings_is_422_naming_the_field(api, changes, field):
    run_id = _run_with_checkpoint(api)
    response = api.post(f"/api/runs/{run_id}/fork", json={"config": changes})
    assert response.status_code == 422, response.text
    assert _fields(response) == [field]
    assert response.json()["detail"].startswith(f"{field}: ")
    assert api.get("/api/runs").json()["total"] == 1  # nothing queued


def test_fork_with_valid_settings_still_forks(api):
    run_id = _run_with_checkpoint(api)
    response = api.post(f"/api/runs/{run_id}/fork", json={"config": {"optimizer": {"lr": 0.5}}})
    assert response.status_code == 201, response.text
    assert response.json()["config"]["optimizer"]["lr"] == 0.5


# ---------- 2. ids and counts the database cannot hold ----------

def _params(dependant, kind: str) -> list:
    found = list(getattr(dependant, kind))
    for sub in dependant.dependencies:
        found += _params(sub, kind)
    return found


def _int_routes(app) -> list[tuple[str, str, list[str], list[str], list[str]]]:
    """(method, path, int path params, other path params, int query params) of every route."""
    routes = []
    for route in iter_route_contexts(app.routes):
        dependant = getattr(route, "dependant", None)
        if dependant is None:
            continue
        path_params = _params(dependant, "path_params")
        int_path = [p.name for p in path_params if "int" in str(p.field_info.annotation)]
        other_path = [p.name for p in path_params if p.name not in int_path]
        int_query = [p.name for p in _params(dependant, "query_params") if "int" in str(p.field_info.annotation)]
        for method in route.methods:
            routes.append((method, route.path, int_path, other_path, int_query))
    return routes


def test_every_int_in_a_path_or_query_out_of_range_is_a_4xx(api):
    """Walk the app's routes: every int path or query parameter, given 2**63+ or -1, answers 4xx."""
    run_id = api.post("/api/runs", json=run_body()).json()["id"]
    routes = _int_routes(api.app)
    int_path_routes = [r for r in routes if r[2]]
    assert len(int_path_routes) >= 25  # the walk sees the API's and the pages' routes
    answers = []
    for method, path, int_path, other_path, int_query in routes:
        for bad in (HUGE, "-1"):
            if int_path:
                url = path
                for name in int_path:
                    url = url.replace(f"{{{name}}}", bad)
                for name in other_path:
                    url = url.replace(f"{{{name}}}", "x")
                answers.append((method, url, api.request(method, url).status_code))
            for name in int_query:
                url = path
                for param in int_path:
                    url = url.replace(f"{{{param}}}", str(run_id))
                for param in other_path:
                    url = url.replace(f"{{{param}}}", "x")
                answers.append((method, f"{url}?{name}={bad}",
                                api.request(method, url, params={name: bad}).status_code))
    errors = [a for a in answers if a[2] >= 500]
    assert not errors, errors
    huge_path = [a for a in answers if HUGE in a[1] and "?" not in a[1]]
    assert all(400 <= status < 500 for _, _, status in huge_path), huge_path


@pytest.mark.parametrize("header", [HUGE, "99999999999999999999", "9" * 5000, "-1", "12abc"])
@pytest.mark.parametrize("stream", ["run", "feed", "dashboard"])
def test_a_last_event_id_that_is_not_an_event_id_is_422(api, header, stream):
    run_id = api.post("/api/runs", json=run_body()).json()["id"]
    url = {"run": f"/api/runs/{run_id}/events", "feed": "/api/events", "dashboard": "/stream/runs"}[stream]
    answer = api.get(url, headers={"Last-Event-ID": header})
    assert answer.status_code == 422 and "Last-Event-ID" in answer.json()["detail"]


def test_huge_ids_answer_422_on_the_api_and_the_404_page_on_pages(api):
    response = api.get(f"/api/runs/{HUGE}")
    assert response.status_code == 422 and _fields(response) == ["run_id"]
    assert "2147483647" in response.json()["detail"]
    assert api.get(f"/api/architectures/{HUGE}").status_code == 422
    for url in (f"/runs/{HUGE}", f"/architectures/{HUGE}"):
        page = api.get(url)
        assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
        assert "Not found" in page.text


@pytest.mark.parametrize("body, field", [
    ({"architecture_id": int(HUGE), "dataset": "digits"}, "architecture_id"),
    ({"architecture_id": 0, "dataset": "digits"}, "architecture_id"),
])
def test_huge_ids_in_a_body_are_422(api, body, field):
    response = api.post("/api/runs", json=body)
    assert response.status_code == 422, response.text
    assert _fields(response) == [field]


def test_a_nul_character_is_never_a_500_and_never_half_writes(api):
    """PostgreSQL refuses NUL in text where SQLite stores it: either way no 5xx and no partial run."""
    before = api.get("/api/runs").json()["total"]
    answer = api.post("/api/runs", json={**run_body(), "name": "digits\u0000mlp"})
    assert answer.status_code in (201, 422), answer.text
    after = api.get("/api/runs").json()["total"]
    assert after == before + (answer.status_code == 201)
    if answer.status_code == 422:
        assert "NUL" in answer.json()["detail"]
    assert api.get("/api/runs/1%00").status_code == 400  # and in a URL, a clear 400 on both


def test_fork_epoch_out_of_range_is_422(api):
    run_id = _run_with_checkpoint(api)
    response = api.post(f"/api/runs/{run_id}/fork", json={"epoch": int(HUGE)})
    assert response.status_code == 422 and _fields(response) == ["epoch"]


@pytest.mark.parametrize("url", ["/api/compare", "/api/compare.csv", "/compare"])
def test_compare_with_an_id_the_database_cannot_hold_is_404(api, url):
    response = api.get(url, params={"runs": HUGE})
    assert response.status_code == 404
    assert response.status_code == 404 and HUGE in response.text


def test_compare_stops_reading_a_long_run_list(api):
    ids = ",".join(str(i) for i in range(1, 5000))
    response = api.get("/api/compare", params={"runs": ids})
    assert response.status_code == 422 and "compare at most 12" in response.json()["detail"]


@pytest.mark.parametrize("url, data", [
    ("/architectures/editor", {"action": "remove:" + "9" * 5000}),
    ("/architectures/editor/live", {"architecture_id": "9" * 5000}),
    ("/architectures/editor", {"layers-" + "9" * 5000 + "-type": "Dense"}),
])
def test_builder_form_with_huge_numbers_is_not_a_500(api, url, data):
    form = {"name": "x", "input_shape": "1,8,8", "layers-0-type": "Dense", "layers-0-units": "10", **data}
    assert api.post(url, data=form).status_code == 200


def test_launch_form_with_a_huge_architecture_id_is_422(api):
    response = api.post("/runs", data={"model": "architecture:" + "9" * 5000, "dataset": "digits"})
    assert response.status_code == 422
    response = api.post("/runs", data={"model": f"architecture:{HUGE}", "dataset": "digits"})
    assert response.status_code == 422


# ---------- 3. run settings the trainer would fail on ----------

@pytest.mark.parametrize("config, field", [
    ({"seed": 1e30}, "config.seed"),
    ({"seed": 2**32}, "config.seed"),
    ({"seed": -1}, "config.seed"),
    ({"device": "cuda:999999999"}, "config.device"),
    ({"device": "tpu"}, "config.device"),
    ({"device": "cuda:"}, "config.device"),
    ({"optimizer": {"name": "adam", "lr": 0}}, "config.optimizer.lr"),
    ({"optimizer": {"name": "adam", "betas": [0.9, 1.5]}}, "config.optimizer.betas.1"),
    ({"optimizer": {"name": "adam", "betas": [-0.1, 0.9]}}, "config.optimizer.betas.0"),
])
def test_settings_the_trainer_would_fail_on_are_refused(api, config, field):
    response = api.post("/api/runs", json=run_body(**config))
    assert response.status_code == 422, response.text
    assert field in _fields(response)
    assert api.get("/api/runs").json()["total"] == 0


@pytest.mark.parametrize("raw, field", [('{"lr": Infinity}', "config.optimizer.lr"),
                                        ('{"lr": NaN}', "config.optimizer.lr"),
                                        ('{"lr": 0.1, "weight_decay": Infinity}', "config.optimizer.weight_decay")])
def test_infinite_or_nan_settings_are_refused(api, raw, field):
    """Python's JSON reader takes Infinity and NaN: the run settings must not."""
    body = json.dumps(run_body()).replace('{"name": "adam", "lr": 0.01}', raw.replace("{", '{"name": "adam", ', 1))
    assert "Infinity" in body or "NaN" in body
    response = api.post("/api/runs", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert _fields(response) == [field]
    assert api.get("/api/runs").json()["total"] == 0


def test_largest_seed_is_accepted(api):
    assert api.post("/api/runs", json=run_body(seed=2**32 - 1)).status_code == 201


@pytest.fixture
def gpus(monkeypatch):
    """Say which GPUs this server sees (CUDA_VISIBLE_DEVICES, read once and cached)."""
    from app.runs.schemas import visible_gpus

    def see(value: str) -> None:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
        visible_gpus.cache_clear()

    yield see
    visible_gpus.cache_clear()


def test_cuda_devices_must_exist_on_this_server(api, gpus):
    gpus("0,1")
    assert api.post("/api/runs", json=run_body(device="cuda:1")).status_code == 201
    assert api.post("/api/runs", json=run_body(device="cuda")).status_code == 201
    response = api.post("/api/runs", json=run_body(device="cuda:2"))
    assert response.status_code == 422 and _fields(response) == ["config.device"]
    assert "there is no cuda:2" in response.json()["detail"] and "cuda:0 to cuda:1" in response.json()["detail"]

    gpus("")
    for device in ("cuda", "cuda:0"):
        response = api.post("/api/runs", json=run_body(device=device))
        assert response.status_code == 422 and "no GPU" in response.json()["detail"], response.text
    assert api.post("/api/runs", json=run_body(device="cpu")).status_code == 201


def test_gpus_are_not_counted_for_a_ray_cluster(make_client, gpus):
    gpus("")
    api = make_client(executor="ray")
    assert api.post("/api/runs", json=run_body(device="cuda:3")).status_code == 201


# ---------- 4. request body size ----------

def test_a_body_over_the_limit_is_413_before_it_is_parsed(api):
    layers = ",".join(['{"type": "Dense", "units": 10, "activation": "relu"}'] * 60_000)
    body = f'{{"name": "big", "spec": {{"input_shape": [64], "layers": [{layers}]}}}}'
    assert len(body) > 512 * 1024
    response = api.post("/api/architectures", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    detail = response.json()["detail"]
    assert "512 KiB" in detail and "TRAINBOARD_MAX_BODY_BYTES" in detail
    assert api.get("/api/architectures").json()["total"] == 0


def test_a_chunked_body_over_the_limit_is_413(make_client):
    api = make_client(max_body_bytes="1000")

    def chunks() -> Iterator[bytes]:
        yield b'{"code": "'
        for _ in range(20):
            yield b"#" * 100
        yield b'"}'

    response = api.post("/api/architectures/import-keras", content=chunks(),
                        headers={"content-type": "application/json"})
    assert response.status_code == 413, response.text
    assert "1000 bytes" in response.json()["detail"]


def test_uploads_have_their_own_limit(make_client):
    api = make_client(max_body_bytes="1000", max_upload_bytes="4000")
    csv = "x,label\n" + "1,0\n2,1\n" * 200  # 1.6 KB: over the body limit, under the upload limit
    response = api.post("/api/datasets", data={"name": "tiny"}, files={"file": ("tiny.csv", csv, "text/csv")})
    assert response.status_code == 201, response.text
    big = "x,label\n" + "1,0\n" * 2000
    response = api.post("/api/datasets", data={"name": "big"}, files={"file": ("big.csv", big, "text/csv")})
    assert response.status_code == 413 and "TRAINBOARD_MAX_UPLOAD_BYTES" in response.json()["detail"]
    page = api.post("/datasets", data={"name": "big"}, files={"file": ("big.csv", big, "text/csv")})
    assert page.status_code == 413
    # The same 1.6 KB as JSON elsewhere is over the body limit.
    response = api.post("/api/architectures/import-keras", json={"code": csv})
    assert response.status_code == 413 and "TRAINBOARD_MAX_BODY_BYTES" in response.json()["detail"]


def test_the_middleware_stops_reading_once_over_the_limit():
    """Without a Content-Length, chunks are counted as they arrive: the rest is never read."""
    from app.core.limits import BodyLimitMiddleware

    pulled = 0
    reached_app = []

    async def receive():
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * 100, "more_body": pulled < 1000}

    async def app(scope, receive, send):
        reached_app.append(True)
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"read it all"})

    sent = []

    async def send(message):
        sent.append(message)

    middleware = BodyLimitMiddleware(app, max_body_bytes=1000, max_upload_bytes=10_000)
    scope = {"type": "http", "method": "POST", "path": "/api/architectures", "headers": []}
    asyncio.run(middleware(scope, receive, send))
    assert pulled == 11  # 1,100 bytes read of 100,000
    assert sent[0]["status"] == 413 and b"read it all" not in b"".join(m.get("body", b"") for m in sent)

    # A declared Content-Length over the limit is refused before the app runs.
    reached_app.clear()
    sent.clear()
    scope["headers"] = [(b"content-length", b"100000")]
    asyncio.run(middleware(scope, receive, send))
    assert sent[0]["status"] == 413 and not reached_app


# ---------- 5. lists that drive work ----------

def test_too_many_layers_is_422_at_once(api):
    layers = ",".join(['{"type":"Flatten"}'] * 25_000)
    body = f'{{"spec": {{"input_shape": [1, 8, 8], "layers": [{layers}]}}}}'
    assert len(body) < 512 * 1024  # under the body limit: the layer cap answers
    response = api.post("/api/architectures/validate", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert "at most 1000 layers (TRAINBOARD_MAX_LAYERS)" in response.json()["detail"]
    assert response.json()["errors"][0]["field"] == "layers"


@pytest.mark.parametrize("route", ["/api/architectures", "/api/runs"])
def test_layer_cap_applies_to_saved_architectures_and_runs(make_client, route):
    api = make_client(max_layers="3")
    spec = {"input_shape": [1, 8, 8], "layers": [{"type": "Flatten"}] * 3 + [{"type": "Dense", "units": 10}]}
    body = {"name": "four", "spec": spec} if route == "/api/architectures" else run_body(spec=spec)
    response = api.post(route, json=body)
    assert response.status_code == 422, response.text
    assert "at most 3 layers (TRAINBOARD_MAX_LAYERS)" in response.json()["detail"]
    spec["layers"] = spec["layers"][2:]
    assert api.post(route, json=body).status_code == 201


def test_keras_source_is_bounded(api):
    response = api.post("/api/architectures/import-keras", json={"code": "#" * 200_001})
    assert response.status_code == 422 and _fields(response) == ["code"]
    response = api.post("/api/architectures/import-keras", json={"code": "x = 1" + " + 1" * 40_000})
    assert response.status_code == 422 and "nests too deeply" in response.json()["detail"]


# ---------- 6. Keras constants ----------

def test_keras_import_reads_a_module_level_input_shape(api):
    code = """import keras
from keras import layers
input_shape = (8, 8, 1)
num_classes = 10
model = keras.Sequential([
    keras.Input(shape=input_shape),
    layers.Flatten(),
    layers.Dense(num_classes, activation="softmax"),
])
"""
    response = api.post("/api/architectures/import-keras", json={"code": code})
    assert response.status_code == 200, response.text
    assert response.json()["spec"]["input_shape"] == [1, 8, 8]
    assert response.json()["summary"]["output_shape"] == [10]
    run = api.post("/api/runs", json={"spec": response.json()["spec"], "dataset": "digits"})
    assert run.status_code == 201, run.text

