"""Property-based fuzzing from the OpenAPI schema (Schemathesis) against a real server.

Every operation gets a bounded number of generated requests, valid and invalid; none may answer
5xx, and every documented answer must match its schema. Run-creating routes run with tiny limits;
the SSE streams are opened with a short read timeout and checked for their status line only.
"""

from __future__ import annotations

import hypothesis
import pytest
import requests
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.conftest import LiveServer
from tests.runs.helpers import DIGITS_MLP, run_body

# One server for all operations: keep them on one xdist worker.
pytestmark = pytest.mark.xdist_group("api-fuzz")

STREAMS = ("/api/events", "/api/runs/{run_id}/events")


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    env = {"TRAINBOARD_MAX_EPOCHS": "1", "TRAINBOARD_MAX_PARAMS": "20000", "TRAINBOARD_SLOTS": "1",
           "TRAINBOARD_WARM_WORKERS": "0", "TRAINBOARD_SSE_HEARTBEAT_S": "1"}
    server = LiveServer(tmp_path_factory.mktemp("fuzz") / "data", env=env).start()
    try:
        with server.api() as api:  # something to find: one run and one architecture
            assert api.post("/api/runs", json=run_body(epochs=1)).status_code == 201
            created = api.post("/api/architectures",
                               json={"name": "fuzz mlp", "spec": {**DIGITS_MLP, "input_shape": [1, 8, 8]}})
            assert created.status_code == 201, created.text
        yield server
    finally:  # a failed setup stops its server too
        server.stop()


def _operations() -> dict[str, object]:
    from app.main import create_app

    loaded = schemathesis.openapi.from_dict(create_app(start_executor=False).openapi())
    return {result.ok().label: result.ok() for result in loaded.get_all_operations()}


OPERATIONS = _operations()


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_no_operation_answers_5xx_or_breaks_its_schema(label, fuzz_server):
    operation = OPERATIONS[label]

    @hypothesis.given(case=operation.as_strategy())
    @hypothesis.settings(max_examples=15, deadline=None, derandomize=True, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck))
    def fuzz(case):
        if operation.path in STREAMS:
            kwargs = case.as_transport_kwargs(base_url=fuzz_server.url)
            try:
                with requests.request(**kwargs, timeout=(5, 3), stream=True) as response:
                    assert response.status_code < 500, (operation.path, response.status_code)
            except requests.exceptions.ReadTimeout:
                pass  # the stream stayed open: that is what a stream does
            return
        case.call_and_validate(base_url=fuzz_server.url, timeout=30,
                               checks=[not_a_server_error, response_schema_conformance])

    fuzz()
