"""docker-compose.yml: the `ray` profile's cluster and app, loopback-only ports, and a default `up` without Ray."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def services() -> dict[str, dict]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # resolves the `<<:` merges
    return compose["services"]


def env(service: dict) -> dict[str, str]:
    """A service's environment as a dict, whichever of the two compose syntaxes it uses."""
    value = service.get("environment") or {}
    if isinstance(value, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in value)
    return {key: str(item) for key, item in value.items()}


def command(service: dict) -> list[str]:
    value = service.get("command") or []
    return shlex.split(value) if isinstance(value, str) else [str(item) for item in value]


def build(service: dict) -> dict:
    value = service.get("build")
    return {"context": value} if isinstance(value, str) else dict(value or {})


def extras(service: dict) -> set[str]:
    args = build(service).get("args") or {}
    if isinstance(args, list):
        args = dict(item.split("=", 1) for item in args)
    return set(str(args.get("EXTRAS", "")).split(","))


def in_profile(services: dict[str, dict], profile: str) -> dict[str, dict]:
    return {name: svc for name, svc in services.items() if profile in (svc.get("profiles") or [])}


def published(service: dict) -> list[tuple[str | None, str]]:
    """(host IP, host port) of each published port; the IP is None when the port binds every interface."""
    out = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):  # long syntax
            out.append((port.get("host_ip"), str(port.get("published", ""))))
            continue
        parts = str(port).split("/")[0].rsplit(":", 2)
        if len(parts) == 3:
            out.append((parts[0].strip("[]"), parts[1]))
        else:  # "8000" or "8000:8000": no IP, so every interface
            out.append((None, parts[0]))
    return out


def ray_app(services: dict[str, dict]) -> tuple[str, dict]:
    apps = [(name, svc) for name, svc in services.items() if env(svc).get("TRAINBOARD_EXECUTOR") == "ray"]
    assert len(apps) == 1, f"one app service on TRAINBOARD_EXECUTOR=ray, found {[name for name, _ in apps]}"
    return apps[0]


def test_ray_profile_has_head_worker_and_app(services):
    ray = in_profile(services, "ray")
    assert {"ray-head", "ray-worker"} <= set(ray)
    name, _ = ray_app(services)
    assert name in ray


def test_ray_app_connects_with_ray_client_and_is_reachable_from_workers(services):
    name, app = ray_app(services)
    variables = env(app)
    address = urlparse(variables["TRAINBOARD_RAY_ADDRESS"])
    assert (address.scheme, address.hostname, address.port) == ("ray", "ray-head", 10001)
    server = urlparse(variables["TRAINBOARD_SERVER_URL"])
    assert (server.scheme, server.hostname, server.port) == ("http", name, 8000)
    assert variables.get("TRAINBOARD_HOST") == "0.0.0.0"  # inside the container; the host publishes loopback only
    assert any(port == "8000" for port in (str(p).split(":")[-1].split("/")[0] for p in app["ports"]))


def test_head_and_worker_commands(services):
    head, worker = command(services["ray-head"]), command(services["ray-worker"])
    assert head[:2] == ["ray", "start"] and worker[:2] == ["ray", "start"]
    assert {"--head", "--block", "--port=6379", "--ray-client-server-port=10001"} <= set(head)
    assert {"--address=ray-head:6379", "--block"} <= set(worker)
    assert "--head" not in worker


def test_head_worker_and_app_share_the_ray_build(services):
    _, app = ray_app(services)
    for name in ("ray-head", "ray-worker"):
        assert build(services[name]) == build(app), name
        assert services[name].get("image") == app.get("image"), name
    assert build(app).get("context") in (".", "./")
    assert "ray" in extras(app)


def test_every_published_port_binds_loopback(services):
    for name, svc in services.items():
        for host_ip, host_port in published(svc):
            assert host_ip == "127.0.0.1", f"{name} publishes {host_port} on {host_ip or 'every interface'}"


def test_ray_app_port_does_not_collide_with_the_default_app(services):
    # `docker compose --profile ray up` starts the default services too.
    _, app = ray_app(services)
    assert not {port for _, port in published(app)} & {port for _, port in published(services["trainboard"])}


def test_default_up_has_no_ray(services):
    default = {name: svc for name, svc in services.items() if not svc.get("profiles")}
    assert "trainboard" in default
    assert not {"ray-head", "ray-worker"} & set(default)
    for name, svc in default.items():
        assert env(svc).get("TRAINBOARD_EXECUTOR", "local") == "local", name
        assert "ray" not in extras(svc), name


def test_dockerfile_default_extras_unchanged():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG EXTRAS=onnx$", dockerfile, re.M)
    assert "trainboard[${EXTRAS}]" in dockerfile  # the app's wheel with the extras the build asks for


def test_the_app_services_take_the_admin_password_from_the_environment(services):
    # The container binds 0.0.0.0: without an account the server refuses to start (app/cli.py).
    for name in ("trainboard", "trainboard-ray", "trainboard-pg"):
        assert env(services[name])["TRAINBOARD_ADMIN_PASSWORD"] == "${TRAINBOARD_ADMIN_PASSWORD:-}", name
    example = (ROOT / ".env.example").read_text()
    assert re.search(r"^TRAINBOARD_ADMIN_PASSWORD=\S+", example, re.M)


def test_the_postgres_profile_runs_the_app_on_a_health_checked_postgres(services):
    app, db = services["trainboard-pg"], services["postgres"]
    assert app["profiles"] == ["postgres"] == db["profiles"]
    assert "postgres" in app["build"]["args"]["EXTRAS"].split(",")  # psycopg in the image
    url = env(app)["TRAINBOARD_DATABASE_URL"]
    assert url.startswith("postgresql+psycopg://trainboard:${POSTGRES_PASSWORD:-}@postgres/trainboard")
    assert app["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "pg_isready" in db["healthcheck"]["test"]
    assert env(db)["POSTGRES_PASSWORD"] == "${POSTGRES_PASSWORD:-}"  # no password in the file
    assert "ports" not in db  # the database is not published
    assert "trainboard-pg" not in {n for n, s in services.items() if "profiles" not in s}


@pytest.mark.parametrize("profile", [None, "postgres", "ray"])
def test_docker_compose_validates_the_file(profile, tmp_path):
    # Debian's docker-compose (installed by `make test`) checks the file as compose itself reads it;
    # there is no Docker engine here, so nothing is built or started.
    import os
    import shutil
    import subprocess

    tool = shutil.which("docker-compose")
    assert tool, "docker-compose is missing: `make test` installs it (apt-get install docker-compose)"
    args = [tool, "-f", str(ROOT / "docker-compose.yml"), *(["--profile", profile] if profile else []), "config", "-q"]
    env = {**os.environ, "TRAINBOARD_ADMIN_PASSWORD": "x" * 12, "POSTGRES_PASSWORD": "y" * 12}
    answer = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert answer.returncode == 0, answer.stderr
