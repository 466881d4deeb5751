"""The run state machine (app/runs/lifecycle.py): every (from, to) pair, and racing writers.

Runs against a real SQLite file (the `data_dir` fixture); racers use their own sessions, in
threads and in separate processes.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import select, update

from app.runs import lifecycle
from app.runs.models import (
    CANCELLED,
    COMPLETED,
    FAILED,
    INTERRUPTED,
    PRUNED,
    QUEUED,
    RUNNING,
    STARTING,
    STATUSES,
    Run,
    RunEvent,
)

ROOT = Path(__file__).resolve().parents[2]
# The table written out by hand: the module's dict must say exactly this.
EXPECTED = {
    (QUEUED, STARTING), (QUEUED, CANCELLED),
    (STARTING, RUNNING), (STARTING, FAILED), (STARTING, CANCELLED), (STARTING, INTERRUPTED),
    (RUNNING, COMPLETED), (RUNNING, FAILED), (RUNNING, CANCELLED), (RUNNING, INTERRUPTED), (RUNNING, PRUNED),
    (FAILED, QUEUED), (CANCELLED, QUEUED), (INTERRUPTED, QUEUED),
}


def _new_run(status: str = QUEUED) -> int:
    """A run in `status` (set directly here: the test's own setup, not a transition)."""
    from app.core.db import session_scope

    with session_scope() as db_session:
        run = lifecycle.enqueue(db_session, Run(name="t", spec={}, dataset="digits", config={}))
        run_id = run.id
        if status != QUEUED:
            db_session.execute(update(Run).where(Run.id == run_id).values(status=status))
    return run_id


def _state(run_id: int) -> tuple[str, list[tuple[int, str | None]]]:
    from app.core.db import session_scope

    with session_scope(write=False) as db_session:
        status = db_session.scalar(select(Run.status).where(Run.id == run_id))
        events = [(e.seq, e.payload.get("status")) for e in db_session.scalars(
            select(RunEvent).where(RunEvent.run_id == run_id).order_by(RunEvent.seq))]
    return status, events


def test_the_table_is_the_one_written_down():
    pairs = {(s, t) for s, targets in lifecycle.TRANSITIONS.items() for t in targets}
    assert pairs == EXPECTED
    assert set(lifecycle.TRANSITIONS) == set(STATUSES)
    design = (ROOT / "docs" / "DESIGN.md").read_text()
    assert lifecycle.table_markdown() in design, "docs/DESIGN.md must show lifecycle.table_markdown()"
    assert lifecycle.table_markdown() in lifecycle.__doc__


@pytest.mark.parametrize(("source", "target"), list(itertools.product(STATUSES, STATUSES)))
def test_only_the_tables_transitions_succeed(data_dir, source, target):
    from app.core.db import session_scope

    run_id = _new_run(source)
    _, before = _state(run_id)
    legal = (source, target) in EXPECTED
    if legal:
        with session_scope() as db_session:
            lifecycle.transition(db_session, run_id, target, reason="test")
        status, events = _state(run_id)
        assert status == target
        assert events == [*before, (before[-1][0] + 1, target)], "one status event, next seq"
    else:
        with pytest.raises(lifecycle.IllegalTransition) as raised, session_scope() as db_session:
            lifecycle.transition(db_session, run_id, target, reason="test")
        assert raised.value.status_code == 409
        assert _state(run_id) == (source, before), "an illegal transition changes nothing"


def test_named_transitions_keep_to_their_sources(data_dir):
    from app.core.db import session_scope

    for source in STATUSES:
        run_id = _new_run(source)
        with session_scope() as db_session:
            assert lifecycle.claim(db_session, run_id, "x") == (source == QUEUED)
        run_id = _new_run(source)
        with session_scope() as db_session:
            assert lifecycle.report_running(db_session, run_id, 123) == (source == STARTING)
        for final in (COMPLETED, FAILED, CANCELLED):
            run_id = _new_run(source)
            with session_scope() as db_session:
                assert lifecycle.finish(db_session, run_id, final, "r") == (source == RUNNING)
        run_id = _new_run(source)
        with session_scope() as db_session:
            assert lifecycle.interrupt(db_session, run_id, "gone") == (source in (STARTING, RUNNING))
        run_id = _new_run(source)
        with session_scope() as db_session:
            after = lifecycle.request_cancel(db_session, run_id)
            flag = db_session.scalar(select(Run.cancel_requested).where(Run.id == run_id))
        assert after == (CANCELLED if source == QUEUED else source)
        assert flag == (source in (STARTING, RUNNING))
        run_id = _new_run(source)
        if source in (FAILED, CANCELLED, INTERRUPTED):
            with session_scope() as db_session:
                lifecycle.resume(db_session, run_id, 3)
            with session_scope(write=False) as db_session:
                run = db_session.get(Run, run_id)
                assert (run.status, run.resume_epoch, run.failure_reason, run.pid) == (QUEUED, 3, None, None)
        else:
            with pytest.raises(lifecycle.IllegalTransition, match="only failed, cancelled or interrupted"), \
                    session_scope() as db_session:
                lifecycle.resume(db_session, run_id, None)


def test_claim_and_report_fill_the_lifecycle_fields(data_dir):
    from app.core.db import session_scope

    run_id = _new_run()
    with session_scope() as db_session:
        assert lifecycle.claim(db_session, run_id, "local:here")
        assert lifecycle.launched(db_session, run_id, 4242)
    with session_scope(write=False) as db_session:
        run = db_session.get(Run, run_id)
        assert (run.status, run.worker, run.pid) == (STARTING, "local:here", 4242)
        assert run.started_at is not None and run.finished_at is None
    with session_scope() as db_session:
        assert lifecycle.report_running(db_session, run_id, 4343)
        assert lifecycle.finish(db_session, run_id, COMPLETED, values={"train_time_s": 1.5})
        assert not lifecycle.launched(db_session, run_id, 1), "only a starting run takes a pid"
    with session_scope(write=False) as db_session:
        run = db_session.get(Run, run_id)
        assert (run.status, run.pid, run.train_time_s) == (COMPLETED, 4343, 1.5)
        assert run.finished_at is not None
    assert [s for _, s in _state(run_id)[1]] == [QUEUED, STARTING, RUNNING, COMPLETED]


def _race(functions) -> list:
    """Run the functions at the same moment, each in its own thread; their results in order."""
    barrier = threading.Barrier(len(functions))
    results: list = [None] * len(functions)

    def target(index: int) -> None:
        barrier.wait()
        try:
            results[index] = functions[index]()
        except BaseException as exc:  # reported as the result
            results[index] = exc

    threads = [threading.Thread(target=target, args=(i,)) for i in range(len(functions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def test_eight_threads_claiming_one_run_exactly_one_wins(data_dir):
    from app.core.db import session_scope

    run_id = _new_run()

    def claimer(name: str):
        def claim() -> bool:
            with session_scope() as db_session:
                return lifecycle.claim(db_session, run_id, name)
        return claim

    results = _race([claimer(f"scheduler-{i}") for i in range(8)])
    assert sorted(results, key=str) == [False] * 7 + [True], results
    with session_scope(write=False) as db_session:
        worker = db_session.scalar(select(Run.worker).where(Run.id == run_id))
    assert worker == f"scheduler-{results.index(True)}"
    assert [s for _, s in _state(run_id)[1]] == [QUEUED, STARTING]


CLAIMER = """
import sys
from app.core.db import session_scope
from app.runs import lifecycle
print("ready", flush=True)
sys.stdin.readline()
with session_scope() as db_session:
    won = lifecycle.claim(db_session, int(sys.argv[1]), sys.argv[2])
print("won" if won else "lost", flush=True)
"""


def test_two_processes_claiming_one_run_exactly_one_wins(data_dir):
    run_id = _new_run()
    processes = [subprocess.Popen([sys.executable, "-c", CLAIMER, str(run_id), f"process-{i}"], cwd=ROOT,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for i in range(2)]
    try:
        for process in processes:
            assert process.stdout.readline().strip() == "ready"
        for process in processes:  # both are past their imports and connect: go
            process.stdin.write("go\n")
            process.stdin.flush()
        answers = [process.communicate(timeout=120)[0].strip() for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    assert sorted(answers) == ["lost", "won"], answers
    assert [s for _, s in _state(run_id)[1]] == [QUEUED, STARTING]


def test_a_final_status_is_never_overwritten_by_a_racing_writer(data_dir):
    from app.core.db import session_scope

    run_id = _new_run(RUNNING)

    def trainer_completes() -> bool:
        with session_scope() as db_session:
            return lifecycle.finish(db_session, run_id, COMPLETED)

    def scheduler_fails() -> bool:
        with session_scope() as db_session:
            return lifecycle.fail(db_session, run_id, "hung")

    def reaper_interrupts() -> bool:
        with session_scope() as db_session:
            return lifecycle.interrupt(db_session, run_id, "gone")

    results = _race([trainer_completes, scheduler_fails, reaper_interrupts])
    assert results.count(True) == 1 and results.count(False) == 2, results
    winner = [COMPLETED, FAILED, INTERRUPTED][results.index(True)]
    status, events = _state(run_id)
    assert status == winner
    assert [s for _, s in events if s in (COMPLETED, FAILED, INTERRUPTED)] == [winner]
    assert [seq for seq, _ in events] == list(range(1, len(events) + 1))


def test_the_api_answers_409_for_illegal_changes_and_resumes_interrupted_runs(client):
    interrupted, completed, starting = _new_run(INTERRUPTED), _new_run(COMPLETED), _new_run(STARTING)
    answer = client.post(f"/api/runs/{interrupted}/resume")
    assert answer.status_code == 200 and answer.json()["status"] == "queued"
    refused = client.post(f"/api/runs/{completed}/resume")
    assert refused.status_code == 409 and "only failed, cancelled or interrupted" in refused.text
    assert client.delete(f"/api/runs/{starting}").status_code == 409
    cancel = client.post(f"/api/runs/{starting}/cancel")
    assert cancel.status_code == 200 and cancel.json()["status"] == "starting"
    assert client.delete(f"/api/runs/{completed}").status_code == 204
