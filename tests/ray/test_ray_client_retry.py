"""Ray Client: a head whose proxy fails to start this client's server (ConnectionAbortedError
"Initialization failure from server", seen on a loaded head) is tried again, a few times; any other
failure is said at once."""

from __future__ import annotations

import pytest
import ray

from app.core.config import Settings
from app.executors import ray as ray_executor


@pytest.fixture
def attempts(monkeypatch):
    """ray.init fails with each error in `failures`, then connects; returns the calls it saw."""
    calls: list[str] = []
    failures: list[Exception] = []

    def init(**kwargs):
        calls.append(kwargs["address"])
        if failures:
            raise failures.pop(0)

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: calls.append("shutdown"))
    monkeypatch.setattr(ray_executor.RayLauncher, "_remove_old_standbys", lambda self: None)
    monkeypatch.setattr(ray_executor, "CLIENT_RETRY_DELAY_S", 0)
    return calls, failures


def test_a_client_server_that_failed_to_start_is_tried_again(attempts, data_dir):
    calls, failures = attempts
    failures.append(ConnectionAbortedError("Initialization failure from server:\nRuntimeError: Starting Ray "
                                           "client server failed."))
    launcher = ray_executor.RayLauncher(Settings(executor="ray", ray_address="ray://127.0.0.1:10001"))
    assert calls == ["ray://127.0.0.1:10001", "shutdown", "ray://127.0.0.1:10001"]
    assert launcher.standby is None


def test_it_gives_up_after_a_few_attempts_and_other_errors_are_not_retried(attempts, data_dir):
    calls, failures = attempts
    settings = Settings(executor="ray", ray_address="ray://127.0.0.1:10001")
    failures.extend(ConnectionAbortedError("Initialization failure from server: again")
                    for _ in range(ray_executor.CLIENT_INIT_ATTEMPTS))
    with pytest.raises(ray_executor.RayUnavailable, match="Initialization failure"):
        ray_executor.RayLauncher(settings)
    assert calls.count("ray://127.0.0.1:10001") == ray_executor.CLIENT_INIT_ATTEMPTS
    calls.clear()
    failures.append(ConnectionError("ray client connection timeout"))
    with pytest.raises(ray_executor.RayUnavailable, match="connection timeout"):
        ray_executor.RayLauncher(settings)
    assert calls == ["ray://127.0.0.1:10001"], "not a proxy failure: said at once"
