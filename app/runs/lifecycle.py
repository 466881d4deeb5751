"""The run lifecycle: the only code that writes `Run.status` and the fields that go with it.

Those fields are `status`, `started_at`, `finished_at`, `failure_reason`, `pid`, `worker` (the
owner), `cancel_requested` and `heartbeat_at`. Every status change is one conditional UPDATE
(`UPDATE runs SET ... WHERE id = ? AND status IN (<the sources the table allows>)`) whose
rowcount is checked, and the matching `status` event is appended in the same transaction: two
processes can never both claim a run, and nobody overwrites a final status. A change the table
does not allow raises `IllegalTransition` (409 Conflict through the API).

Transitions (from → to):

{table}

A new run enters as `queued` (`enqueue`: Trainboard trains it) or, when a user's own script logs
it over the ingest API, directly as `running` (`start_external`: nothing schedules it; it fails
when its heartbeats stop, and it is never resumed).

- `starting`: claimed by the scheduler and handed to a trainer that has not reported yet.
- `interrupted`: its trainer vanished (server down, node lost); it can be resumed like a failed run.
- Cancelling a `starting` or `running` run only sets `cancel_requested`; the trainer (or the
  scheduler, after the grace period) makes the `cancelled` transition.
- `pruned`: a sweep's pruner judged the trial behind the others after an epoch (`request_prune`
  sets `cancel_requested` and `pruned_epoch`); the stop that follows ends it `pruned`, not
  `cancelled`, with the pruner's reason. Final: a pruned trial is not resumed.

Functions take the caller's session and never commit: the caller's transaction holds the
change and its event together.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from app.core.errors import Conflict, NotFound
from app.core.models_base import utcnow
from app.runs.events import append_events
from app.runs.models import (
    ACTIVE_STATUSES,
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
)

# The whole state machine. Keep docs/DESIGN.md's table in step (a test compares them).
TRANSITIONS: dict[str, frozenset[str]] = {
    QUEUED: frozenset({STARTING, CANCELLED}),
    STARTING: frozenset({RUNNING, FAILED, CANCELLED, INTERRUPTED}),
    RUNNING: frozenset({COMPLETED, FAILED, CANCELLED, INTERRUPTED, PRUNED}),
    COMPLETED: frozenset(),
    FAILED: frozenset({QUEUED}),
    CANCELLED: frozenset({QUEUED}),
    INTERRUPTED: frozenset({QUEUED}),
    PRUNED: frozenset(),
}

# The fields this module owns; nothing else in app/ assigns them (tests/core/test_import_rules.py).
LIFECYCLE_FIELDS = ("status", "started_at", "finished_at", "failure_reason", "pid", "worker",
                    "cancel_requested", "heartbeat_at", "pruned_epoch")


# Where a new run enters the table: queued (enqueue), or running for an external run (start_external).
ENTRIES = (QUEUED, RUNNING)


def table_markdown() -> str:
    """The transition table as a Markdown table (rendered in this docstring and in DESIGN.md)."""
    lines = ["| from | to |", "|---|---|", f"| (new) | {ENTRIES[0]}, {ENTRIES[1]} (external runs only) |"]
    for source in STATUSES:
        targets = [t for t in STATUSES if t in TRANSITIONS[source]]
        lines.append(f"| {source} | {', '.join(targets) if targets else '(final)'} |")
    return "\n".join(lines)


__doc__ = __doc__.replace("{table}", table_markdown())


class IllegalTransition(Conflict):
    """The run is not in a status from which the asked-for change is allowed."""


def sources(target: str) -> list[str]:
    """The statuses from which the table allows `target`."""
    return [s for s in STATUSES if target in TRANSITIONS[s]]


def transition(db_session: Session, run_id: int, to: str, *, reason: str | None = None,
               only_from: Iterable[str] | None = None, values: dict[str, Any] | None = None,
               event: dict[str, Any] | None = None) -> None:
    """Move run `run_id` to `to` in one compare-and-set UPDATE, with its status event.

    `only_from` narrows the allowed sources further (e.g. the trainer only finishes a `running`
    run). Raises IllegalTransition when the run is in no allowed source status (NotFound when
    there is no such run).
    """
    if to not in TRANSITIONS:
        raise ValueError(f"unknown run status '{to}'")
    allowed = sources(to)
    if only_from is not None:
        allowed = [s for s in allowed if s in set(only_from)]
    now = utcnow()
    # A prune request belongs to the stop it asked for: any other change forgets it (a resumed or retried
    # run, one failed by the hang check or interrupted before it stopped, one that completed first).
    fields: dict[str, Any] = {"status": to} if to == PRUNED else {"status": to, "pruned_epoch": None}
    if to == STARTING:
        fields.update(started_at=now, heartbeat_at=now, finished_at=None, failure_reason=None,
                      cancel_requested=False, pid=None)
    elif to == RUNNING:
        fields.update(heartbeat_at=now)
    elif to == QUEUED:
        fields.update(failure_reason=None, cancel_requested=False, finished_at=None, pid=None, worker=None)
    else:  # completed, failed, cancelled, interrupted
        fields.update(finished_at=now, failure_reason=reason)
    fields.update(values or {})
    changed = 0
    if allowed:
        changed = db_session.execute(
            update(Run).where(Run.id == run_id, Run.status.in_(allowed)).values(**fields)
            .execution_options(synchronize_session=False)
        ).rowcount
    if changed != 1:
        current = db_session.scalar(select(Run.status).where(Run.id == run_id))
        if current is None:
            raise NotFound(f"run {run_id} does not exist")
        raise IllegalTransition(f"run {run_id} is {current}: it cannot become {to}")
    payload: dict[str, Any] = {"status": to}
    if reason:
        payload["reason"] = reason
    payload.update(event or {})
    append_events(db_session, run_id, [("status", payload)])
    _expire(db_session, run_id)


def try_transition(db_session: Session, run_id: int, to: str, **kwargs: Any) -> bool:
    """`transition`, answering False instead of raising when the run is not in an allowed status."""
    try:
        transition(db_session, run_id, to, **kwargs)
    except IllegalTransition:
        return False
    return True


def _expire(db_session: Session, run_id: int) -> None:
    """A loaded Run object in this session reloads its fields after an UPDATE behind its back."""
    run = db_session.identity_map.get(identity_key(Run, run_id))
    if run is not None:
        db_session.expire(run)


# -- the named transitions ------------------------------------------------------------------

def enqueue(db_session: Session, run: Run, reason: str | None = None) -> Run:
    """A new run enters the lifecycle as `queued` (with its first status event)."""
    run.status = QUEUED
    db_session.add(run)
    db_session.flush()
    append_events(db_session, run.id, [("status", {"status": QUEUED, **({"reason": reason} if reason else {})})])
    return run


def start_external(db_session: Session, run: Run, owner: str = "external") -> Run:
    """A run logged by a user's own script enters the lifecycle as `running` (its first status
    event with it): no scheduler claims it, its script reports heartbeats and its end."""
    now = utcnow()
    run.status, run.external, run.worker = RUNNING, True, owner
    run.started_at = run.heartbeat_at = now
    db_session.add(run)
    db_session.flush()
    append_events(db_session, run.id, [("status", {"status": RUNNING, "reason": "logged by its own script"})])
    return run


def claim(db_session: Session, run_id: int, owner: str) -> bool:
    """queued → starting for `owner` (e.g. "local:HOST"). False when someone else got it first."""
    return try_transition(db_session, run_id, STARTING, only_from=[QUEUED], values={"worker": owner})


def claim_next(db_session: Session, owner: str) -> int | None:
    """Claim the oldest queued run; None when nothing is queued (or others took them all)."""
    for run_id in db_session.scalars(select(Run.id).where(Run.status == QUEUED).order_by(Run.id).limit(10)):
        if claim(db_session, run_id, owner):
            return run_id
    return None


def launched(db_session: Session, run_id: int, pid: int | None) -> bool:
    """Record the process a `starting` run was handed to (its trainer records itself on report)."""
    return bool(db_session.execute(
        update(Run).where(Run.id == run_id, Run.status == STARTING).values(pid=pid)
        .execution_options(synchronize_session=False)
    ).rowcount)


def report_running(db_session: Session, run_id: int, pid: int) -> bool:
    """starting → running: the trainer's first report. False when the run is no longer starting
    (cancelled meanwhile, or failed by the start timeout): the trainer must not train it."""
    return try_transition(db_session, run_id, RUNNING, only_from=[STARTING], values={"pid": pid},
                          event={"pid": pid})


def finish(db_session: Session, run_id: int, status: str, reason: str | None = None,
           values: dict[str, Any] | None = None) -> bool:
    """running → completed | failed | cancelled, as the trainer reports it at the end. False
    when the run is no longer running (e.g. the hang check failed it first): nothing changes."""
    if status not in (COMPLETED, FAILED, CANCELLED):
        raise IllegalTransition(f"a trainer cannot finish a run as {status}")
    if status == CANCELLED:
        status, reason = _cancelled_or_pruned(db_session, run_id, reason)
    return try_transition(db_session, run_id, status, reason=reason, only_from=[RUNNING],
                          values={"heartbeat_at": utcnow(), **(values or {})})


def _cancelled_or_pruned(db_session: Session, run_id: int, reason: str | None) -> tuple[str, str | None]:
    """A stop its sweep's pruner asked for ends `pruned` with the pruner's reason (kept in
    failure_reason by `request_prune`); any other stop ends `cancelled`."""
    row = db_session.execute(select(Run.pruned_epoch, Run.failure_reason, Run.status).where(Run.id == run_id)).first()
    if row is not None and row.pruned_epoch is not None and row.status == RUNNING:
        return PRUNED, row.failure_reason or f"pruned after epoch {row.pruned_epoch}"
    return CANCELLED, reason


def fail(db_session: Session, run_id: int, reason: str) -> bool:
    """starting | running → failed (trainer exited, hung, never reported). False if already final."""
    return try_transition(db_session, run_id, FAILED, reason=reason)


def cancelled(db_session: Session, run_id: int, reason: str) -> bool:
    """starting | running → cancelled (pruned, when its pruner asked): the scheduler saw a cancelled
    run's trainer end."""
    status, reason = _cancelled_or_pruned(db_session, run_id, reason)
    return try_transition(db_session, run_id, status, reason=reason, only_from=ACTIVE_STATUSES)


def request_prune(db_session: Session, run_id: int, epoch: int, reason: str) -> bool:
    """A running trial's pruner stopped it after `epoch`: like a cancel request (the trainer stops at
    its next step), remembered so that the run ends `pruned` with `reason`. False when the run is not
    running or already asked to stop."""
    changed = db_session.execute(
        update(Run).where(Run.id == run_id, Run.status == RUNNING, Run.cancel_requested.is_(False))
        .values(cancel_requested=True, pruned_epoch=epoch, failure_reason=reason)
        .execution_options(synchronize_session=False)
    ).rowcount
    _expire(db_session, run_id)
    return bool(changed)


def interrupt(db_session: Session, run_id: int, reason: str) -> bool:
    """starting | running → interrupted: its trainer vanished (server down, node lost); resumable."""
    return try_transition(db_session, run_id, INTERRUPTED, reason=reason)


def request_cancel(db_session: Session, run_id: int) -> str:
    """queued → cancelled at once; starting | running: set `cancel_requested` (the trainer stops at
    its next step, the scheduler enforces the grace period). A final run stays as it is.
    Returns the run's status afterwards."""
    if try_transition(db_session, run_id, CANCELLED, reason="cancelled before it started", only_from=[QUEUED]):
        return CANCELLED
    db_session.execute(
        update(Run).where(Run.id == run_id, Run.status.in_(ACTIVE_STATUSES)).values(cancel_requested=True)
        .execution_options(synchronize_session=False)
    )
    _expire(db_session, run_id)
    status = db_session.scalar(select(Run.status).where(Run.id == run_id))
    if status is None:
        raise NotFound(f"run {run_id} does not exist")
    return status


def resume(db_session: Session, run_id: int, resume_epoch: int | None) -> None:
    """failed | cancelled | interrupted → queued; it continues from checkpoint `resume_epoch`."""
    if db_session.scalar(select(Run.external).where(Run.id == run_id)):
        raise IllegalTransition(f"run {run_id} was logged by its own script: Trainboard cannot resume it")
    reason = f"resume from epoch {resume_epoch}" if resume_epoch else "restart (no checkpoint yet)"
    try:
        transition(db_session, run_id, QUEUED, reason=reason, values={"resume_epoch": resume_epoch})
    except IllegalTransition:
        status = db_session.scalar(select(Run.status).where(Run.id == run_id))
        raise IllegalTransition(
            f"run {run_id} is {status}: only failed, cancelled or interrupted runs can be resumed") from None


def heartbeat(db_session: Session, run_id: int) -> bool:
    """The trainer is alive. False when the run is no longer starting or running."""
    return bool(db_session.execute(
        update(Run).where(Run.id == run_id, Run.status.in_(ACTIVE_STATUSES)).values(heartbeat_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount)


def should_stop(db_session: Session, run_id: int) -> bool:
    """True when the trainer should stop: a cancel was asked for, or the run is no longer its own
    (final, or failed by the scheduler meanwhile)."""
    row = db_session.execute(select(Run.status, Run.cancel_requested).where(Run.id == run_id)).first()
    return row is None or row.status not in ACTIVE_STATUSES or bool(row.cancel_requested)
