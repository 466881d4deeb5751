"""The first standby trainer starts with `trainboard serve`, before its imports, and is the one the
local launcher hands the first run; a server that does not start leaves no standby behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.xdist_group("runs-standby")


def _standbys_of(data_dir: Path) -> list[psutil.Process]:
    """Live `app.worker --standby` processes started for this data dir."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            cmdline = process.info["cmdline"] or []
            if "app.worker" in cmdline and "--standby" in cmdline and process.status() != psutil.STATUS_ZOMBIE \
                    and process.environ().get("TRAINBOARD_DATA_DIR") == str(data_dir):
                found.append(process)
        except psutil.Error:
            continue
    return found


def test_the_launcher_takes_over_the_early_standby_of_its_own_data_dir(data_dir, tmp_path):
    from app.core.config import Settings, get_settings
    from app.executors import local

    settings = get_settings()
    local.start_early_standby(settings)
    early = local._early
    assert early is not None and early.process.poll() is None
    try:
        other = local.LocalLauncher(Settings(data_dir=tmp_path / "elsewhere"))
        assert other.standby is None, "a launcher for another data dir must not take this standby"
        cold = local.LocalLauncher(settings, warm=False)
        assert cold.standby is None, "no warm workers: no standby to take"
        launcher = local.LocalLauncher(settings)
        assert launcher.standby is early and local._early is None
        launcher.prepare()
        assert launcher.standby is early, "the taken standby serves; no second one is spawned"
        launcher.close()
        assert early.process.poll() is not None, "closing the launcher stops the standby it took"
    finally:
        local.discard_early_standby()
        if early.process.poll() is None:
            early.process.kill()


def test_a_server_that_refuses_to_start_leaves_no_standby(tmp_path):
    data_dir = tmp_path / "data"
    env = {**os.environ, "TRAINBOARD_DATA_DIR": str(data_dir)}
    env.pop("TRAINBOARD_DATABASE_URL", None)
    env.pop("TRAINBOARD_ADMIN_PASSWORD", None)
    # Beyond loopback with no accounts: serve refuses after its first standby was spawned.
    done = subprocess.run([sys.executable, "-m", "app.cli", "serve", "--host", "0.0.0.0", "--port", "1"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "refusing to listen on 0.0.0.0" in done.stderr, done.stderr
    assert list((data_dir / "logs").glob("standby-*.log")), "serve should have started its first standby early"
    # Stopped before serve exits (it would otherwise live on until its imports end and it reads EOF).
    deadline = time.monotonic() + 0.5
    while (left := _standbys_of(data_dir)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"standby trainers left behind: {[p.pid for p in left]}"
