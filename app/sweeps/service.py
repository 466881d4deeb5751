"""Sweeps: a search over run settings and architecture variants on Optuna, stored in our own tables.

A sweep's trials are ordinary runs (`Run.sweep_id`, `sweep_trial`, `sweep_params`): full run page,
compare, fork. Optuna's own RDB storage would share our Alembic version table, so the study is
rebuilt in memory from those rows whenever it is needed (Optuna's `create_trial` / `add_trials`):
the database stays the one store, and any web process can drive any sweep.

- **Asking** (`advance`, from the scheduler's tick): grid and random sweeps queue every trial when
  they are created (nothing is learnt between them); TPE keeps up to `parallelism` trials (at most
  the executor's slots) queued or running and asks for the next when one ends, with the finished
  trials' values (and the running ones' parameters) in its study.
- **Pruning** (`judge_epoch`, called where a trainer's epoch rows are stored, app/runs/sink.py):
  after each epoch but the last, the sweep's pruner (median or successive halving) sees the trial's
  validation figure per epoch against the other trials'; a trial it prunes is asked to stop and ends
  `pruned` (app/runs/lifecycle.py `request_prune`). What the pruner keeps between epochs (ASHA's rungs)
  is stored on the run (`sweep_attrs`).
- **Values**: a trial's objective is the best per-epoch value of a validation metric, or the test
  figure; failed, cancelled and interrupted trials count as failed, pruned ones as pruned.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.errors import Conflict, DomainError, InvalidInput, NotFound
from app.core.models_base import utcnow
from app.runs import figures as run_figures
from app.runs import lifecycle
from app.runs import service as runs_service
from app.runs.models import COMPLETED, PRUNED, RUNNING, TERMINAL_STATUSES, Run, Sweep
from app.runs.schemas import RunCreate, TrainConfigIn, describe, error_message
from app.sweeps import space as sweep_space
from app.sweeps.schemas import MAX_TRIALS, PRUNE_ON, SweepCreate

SWEEP_ACTIVE = ("queued", "running")
# Importances need this many finished trials with a value (fANOVA on fewer says nothing).
MIN_TRIALS_FOR_IMPORTANCE = 4
MAX_TRIALS_FOR_IMPORTANCE = 200
NAME_MAX = 200
_importance_cache: dict[tuple, dict[str, float] | None] = {}
_importance_lock = threading.Lock()


def _optuna():
    import optuna

    optuna.logging.set_verbosity(logging.WARNING)
    return optuna


# -- create ---------------------------------------------------------------------------------------

def create(*, db_session: Session, sweep_in: SweepCreate, slots: int) -> Sweep:
    """Validate the whole space (every setting and every architecture it can produce, against the
    model caps and the data set) and record the sweep with its first trials. Nothing is queued
    when anything is invalid."""
    base_in = _run_create(sweep_in.name or "sweep", sweep_in, spec=sweep_in.spec, config=sweep_in.config)
    base_spec, dataset, _, base_config = runs_service.prepare(db_session=db_session, run_in=base_in)
    config = base_config.model_dump(mode="json", exclude_none=True)
    problems = []
    for key in sweep_in.space:
        try:
            sweep_space.check_key(key, base_spec)
        except sweep_space.SpaceError as exc:
            problems.append({"field": f"space.{key}", "message": str(exc)})
    if problems:
        raise InvalidInput("; ".join(p["message"] for p in problems), problems)
    metric = sweep_in.objective.metric
    needs_val = metric.startswith("val_") or sweep_in.pruner != "none"
    if needs_val and not base_config.val_split and "config.val_split" not in sweep_in.space:
        raise InvalidInput(f"the objective {PRUNE_ON[metric]} needs a validation split: set config.val_split above 0",
                           [{"field": "config.val_split", "message": "must be above 0"}])
    floats = [key for key in sweep_space.integer_keys(sweep_in.space, base_spec)
              if isinstance(sweep_in.space[key], sweep_space.Distribution) and not sweep_in.space[key].is_int]
    if floats:
        raise InvalidInput(f"{', '.join(floats)} take whole numbers: use an int_uniform or int_log_uniform range "
                           "(or a list)", [{"field": f"space.{key}", "message": "use int_uniform or int_log_uniform"}
                                           for key in floats])
    combos = sweep_space.grid_size(sweep_in.space) if sweep_in.sampler == "grid" else None
    if combos is not None and sweep_in.trials is not None and sweep_in.trials > combos:
        raise InvalidInput(f"a grid of {combos} combinations runs at most {combos} trials, not {sweep_in.trials}",
                           [{"field": "trials", "message": f"at most {combos}"}])
    if combos is not None and sweep_in.trials is None and combos > MAX_TRIALS:
        raise InvalidInput(f"the grid has {combos:,} combinations, more than {MAX_TRIALS} trials: shorten the lists, "
                           f"or set trials (a seeded sample of the grid runs)",
                           [{"field": "trials", "message": f"at most {MAX_TRIALS}"}])
    _check_space(db_session, sweep_in, base_spec, config, dataset)
    total = sweep_in.trials or combos or 20
    request = sweep_in.model_dump(mode="json")
    request.update(base_spec=base_spec, base_config=config)
    sweep = Sweep(name=(sweep_in.name or _default_name(sweep_in))[:NAME_MAX], kind="search", dataset=dataset, request=request,
                  sampler=sweep_in.sampler, pruner=None if sweep_in.pruner == "none" else sweep_in.pruner,
                  metric=metric, direction=sweep_in.objective.direction or "maximize", trials_total=total,
                  parallelism=sweep_in.parallelism, status="queued")
    db_session.add(sweep)
    db_session.flush()
    try:
        _fill(db_session, sweep, slots)
    except (sweep_space.SpaceError, ValueError) as exc:  # a sampled value the checks could not foresee
        raise InvalidInput(f"the space produced a run that is not valid: {exc}",
                           [{"field": "space", "message": str(exc)}]) from exc
    db_session.commit()
    return sweep


def _default_name(sweep_in: SweepCreate) -> str:
    keys = ", ".join(sweep_space.short(k) for k in sweep_in.space)
    model = sweep_in.preset or ("architecture " + str(sweep_in.architecture_id) if sweep_in.architecture_id else "model")
    return f"{model}: {keys}"


def _run_create(name: str, sweep_in: SweepCreate, *, spec: dict | None, config: dict) -> RunCreate:
    """The run a sweep request describes (with `spec` given, that spec instead of the named model)."""
    try:
        config_in = TrainConfigIn.model_validate(config)
    except ValidationError as exc:
        raise InvalidInput(describe(exc), [{"field": ".".join(["config", *map(str, e["loc"])]),
                                            "message": error_message(e)} for e in exc.errors()]) from exc
    name = name[:NAME_MAX]
    if spec is not None:
        return RunCreate(name=name, spec=spec, dataset=sweep_in.dataset, config=config_in)
    return RunCreate(name=name, architecture_id=sweep_in.architecture_id, preset=sweep_in.preset,
                     dataset=sweep_in.dataset, config=config_in)


def _check_space(db_session: Session, sweep_in: SweepCreate, base_spec: dict, base_config: dict, dataset: str) -> None:
    """Every combination of the values to check (choices, range ends) makes a valid run: settings within
    their limits, every architecture within the model caps and fitting the data set."""
    values = sweep_space.check_values(sweep_in.space)
    seen: set[str] = set()
    for params in sweep_space.combinations(values):
        try:
            spec, config = sweep_space.build(base_spec, base_config, params)
            check_in = _run_create("check", sweep_in.model_copy(update={"dataset": dataset}), spec=spec, config=config)
            runs_service.prepare(db_session=db_session, run_in=check_in)
        except (DomainError, sweep_space.SpaceError) as exc:
            message = exc.message if isinstance(exc, DomainError) else str(exc)
            if message in seen:
                continue
            seen.add(message)
            where = sweep_space.label(params)
            raise InvalidInput(f"the space can produce a run that is not valid ({where}): {message}",
                               [{"field": "space", "message": f"{where}: {message}"}]) from exc


# -- trials -----------------------------------------------------------------------------------------

def _trial_runs(db_session: Session, sweep_id: int) -> list[Run]:
    return list(db_session.scalars(select(Run).where(Run.sweep_id == sweep_id).order_by(Run.sweep_trial)))


def _issued(runs: list[Run]) -> int:
    """How many trial numbers were handed out (a deleted trial's number counts: it is not asked again,
    unless it was the last one)."""
    return max((run.sweep_trial or 0 for run in runs), default=-1) + 1


def _fill(db_session: Session, sweep: Sweep, slots: int) -> int:
    """Queue the trials a search sweep should have now; returns how many were queued."""
    if sweep.kind != "search" or sweep.status not in SWEEP_ACTIVE:
        return 0
    runs = _trial_runs(db_session, sweep.id)
    next_number = _issued(runs)
    remaining = sweep.trials_total - next_number
    if remaining <= 0:
        return 0
    if sweep.sampler == "tpe":
        active = sum(run.status not in TERMINAL_STATUSES for run in runs)
        remaining = min(remaining, max(0, min(sweep.parallelism or slots, slots) - active))
    request = sweep.request
    sweep_in = _request(sweep)
    space = sweep_in.space
    grid = sweep_space.grid_indexes(space, sweep.trials_total, sweep_in.seed) if sweep.sampler == "grid" else None
    queued = 0
    for number in range(next_number, next_number + remaining):
        if grid is not None:
            if number >= len(grid):
                break
            params = sweep_space.grid_point(space, grid[number])
        else:
            params = _ask(sweep, space, runs, number)
        spec, config = sweep_space.build(request["base_spec"], request["base_config"], params)
        name = f"{sweep.name[:NAME_MAX - 16]} · trial {number}"
        run_in = _run_create(name, sweep_in.model_copy(update={"dataset": sweep.dataset}), spec=spec, config=config)
        run = runs_service.queue(db_session=db_session, run_in=run_in, fields={
            "sweep_id": sweep.id, "sweep_trial": number, "sweep_params": params, "preset": sweep_in.preset,
            "created_by": sweep.created_by,
            "architecture_id": sweep_in.architecture_id if not any(map(sweep_space.is_spec_key, space)) else None})
        runs.append(run)
        queued += 1
    if queued and sweep.status == "queued":
        # the caller holds the sweep's row (`_locked`, or a sweep it just created): a cancel waits for this
        sweep.status = "running"
    return queued


def _request(sweep: Sweep) -> SweepCreate:
    return SweepCreate.model_validate({k: v for k, v in sweep.request.items() if k not in ("base_spec", "base_config")})


def _locked(db_session: Session, sweep_id: int) -> Sweep | None:
    """The sweep, its row locked until the transaction ends (PostgreSQL: `advance` and `cancel` take turns;
    SQLite's write transactions already do)."""
    return db_session.execute(select(Sweep).where(Sweep.id == sweep_id).with_for_update()
                              .execution_options(populate_existing=True)).scalar_one_or_none()


def _distributions(space: dict[str, Any]) -> dict[str, Any]:
    optuna = _optuna()
    return {key: domain.optuna() if isinstance(domain, sweep_space.Distribution)
            else optuna.distributions.CategoricalDistribution(list(domain)) for key, domain in space.items()}


def _study(sweep: Sweep, space: dict[str, Any], runs: Iterable[Run], *, seed_offset: int,
           intermediate: dict[int, dict[int, float]] | None = None, pruner: Any = None, skip: int | None = None):
    """An in-memory Optuna study holding the sweep's trials as they stand (`skip`: leave one run out)."""
    optuna = _optuna()
    seed = int(sweep.request.get("seed") or 0) + seed_offset
    if sweep.sampler == "tpe":
        startup = max(2, min(10, sweep.trials_total // 3))
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(direction=sweep.direction, sampler=sampler,
                                pruner=pruner or optuna.pruners.NopPruner())
    distributions = _distributions(space)
    values = trial_values(sweep, runs, intermediate)
    for run in runs:
        if run.id == skip or not run.sweep_params:
            continue
        params = {k: v for k, v in run.sweep_params.items() if k in distributions}
        state, value = _state(run, values.get(run.id))
        try:
            study.add_trial(optuna.trial.create_trial(
                state=state, value=value, params=params, distributions=distributions,
                intermediate_values=(intermediate or {}).get(run.id, {}), system_attrs=dict(run.sweep_attrs or {})))
        except ValueError:
            continue  # parameters outside the space (never, but a study must not crash on one trial)
    return study, distributions


def _state(run: Run, value: float | None) -> tuple[Any, float | None]:
    from optuna.trial import TrialState

    if run.status == COMPLETED and value is not None:
        return TrialState.COMPLETE, value
    if run.status == PRUNED:
        return TrialState.PRUNED, None
    if run.status in TERMINAL_STATUSES:
        return TrialState.FAIL, None
    return TrialState.RUNNING, None


def _ask(sweep: Sweep, space: dict[str, Any], runs: list[Run], number: int) -> dict[str, Any]:
    if sweep.sampler == "random":  # learns nothing from history: an empty study, seeded per trial
        runs = []
    study, distributions = _study(sweep, space, runs, seed_offset=number,
                                  intermediate=_intermediate(sweep, runs) if runs else {})
    trial = study.ask(fixed_distributions=distributions)
    return {key: trial.params[key] for key in space}


def _intermediate(sweep: Sweep, runs: Iterable[Run]) -> dict[int, dict[int, float]]:
    """Each trial's per-epoch figure the pruner judges (the objective's validation counterpart)."""
    metric = PRUNE_ON[sweep.metric]
    payloads = run_figures.epoch_payloads(Session.object_session(sweep), [run.id for run in runs]) if runs else {}
    out: dict[int, dict[int, float]] = {}
    for run_id, rows in payloads.items():
        out[run_id] = {int(p["epoch"]): float(p[metric]) for p in run_figures.kept_epochs(rows)
                       if isinstance(p.get(metric), int | float) and math.isfinite(p[metric])}
    return out


def trial_values(sweep: Sweep, runs: Iterable[Run], intermediate: dict[int, dict[int, float]] | None) -> dict[int, float]:
    """The objective of each run that has one: the best epoch's value of a validation metric (the same
    figure the runs list calls best), or the test figure."""
    values: dict[int, float] = {}
    for run in runs:
        if sweep.metric.startswith("test_"):
            value = run.test_accuracy if sweep.metric == "test_accuracy" else run.test_loss
        else:
            series = list((intermediate or {}).get(run.id, {}).values())
            value = (max if sweep.direction == "maximize" else min)(series) if series else None
        if value is not None and math.isfinite(value):
            values[run.id] = float(value)
    return values


# -- the scheduler's tick ---------------------------------------------------------------------------

def any_active(db_session: Session) -> bool:
    return db_session.scalar(select(Sweep.id).where(Sweep.status.in_(SWEEP_ACTIVE)).limit(1)) is not None


def advance(db_session: Session, slots: int) -> bool:
    """Queue the trials active sweeps should have and finish the sweeps whose trials all ended.
    True when anything changed (a run was queued: the scheduler looks at the queue again)."""
    changed = False
    for sweep_id in db_session.scalars(select(Sweep.id).where(Sweep.status.in_(SWEEP_ACTIVE)).order_by(Sweep.id)).all():
        try:
            sweep = _locked(db_session, sweep_id)
            if sweep is None or sweep.status not in SWEEP_ACTIVE:
                db_session.rollback()
                continue
            queued = _fill(db_session, sweep, slots)
            runs = _trial_runs(db_session, sweep.id)
            issued_all = sweep.kind != "search" or _issued(runs) >= sweep.trials_total
            if issued_all and all(run.status in TERMINAL_STATUSES for run in runs):
                sweep.status, sweep.finished_at = "completed", utcnow()
            db_session.commit()
            changed = changed or bool(queued)
        except IntegrityError:  # another process queued the same trial number first
            db_session.rollback()
        except (DomainError, sweep_space.SpaceError, ValueError) as exc:  # a trial that cannot be made: stop asking
            db_session.rollback()
            sweep = _locked(db_session, sweep_id)
            if sweep is not None:
                sweep.trials_total = _issued(_trial_runs(db_session, sweep_id))
                sweep.note = f"stopped asking for trials: {getattr(exc, 'message', exc)}"[:2000]
                db_session.commit()
        except Exception as exc:  # never let one sweep stop the others (or the scheduler's tick)
            db_session.rollback()
            print(f"trainboard sweeps: sweep {sweep_id}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    return changed


# -- pruning ------------------------------------------------------------------------------------------

def judge_epoch(db_session: Session, run: Run) -> bool:
    """After a trial's epoch rows were stored: ask the sweep's pruner whether to stop it now. True
    when it was asked to stop (it ends `pruned`)."""
    if run.sweep_id is None or run.status != RUNNING or run.cancel_requested:
        return False
    sweep = db_session.get(Sweep, run.sweep_id)
    if sweep is None or not sweep.pruner or sweep.kind != "search":
        return False
    runs = _trial_runs(db_session, sweep.id)
    intermediate = _intermediate(sweep, runs)
    own = intermediate.get(run.id, {})
    if not own:
        return False
    epoch = max(own)
    if epoch >= (run.epochs_total or 0):
        return False  # the last epoch: nothing left to save
    optuna = _optuna()
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0) if sweep.pruner == "median"
              else optuna.pruners.SuccessiveHalvingPruner(min_resource=1))  # rungs at epochs 1, 4, 16…
    space = _request(sweep).space
    study, distributions = _study(sweep, space, runs, seed_offset=0, intermediate=intermediate,
                                  pruner=pruner, skip=run.id)
    study.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.RUNNING, params=dict(run.sweep_params or {}), distributions=distributions,
        intermediate_values=own, system_attrs=dict(run.sweep_attrs or {})))
    trial = study.get_trials(deepcopy=False)[-1]
    prune = pruner.prune(study, trial)
    attrs = study._storage.get_trial(trial._trial_id).system_attrs
    if attrs != (run.sweep_attrs or {}):
        run.sweep_attrs = dict(attrs)
    if not prune:
        return False
    metric = PRUNE_ON[sweep.metric]
    how = "median" if sweep.pruner == "median" else "successive-halving"
    reason = (f"pruned after epoch {epoch} by the sweep's {how} pruner: {metric} {own[epoch]:.4g} was behind "
              "the other trials' at that epoch")
    return lifecycle.request_prune(db_session, run.id, epoch, reason)


# -- reading ----------------------------------------------------------------------------------------

def get(*, db_session: Session, sweep_id: int) -> Sweep:
    sweep = db_session.get(Sweep, sweep_id)
    if sweep is None:
        raise NotFound(f"sweep {sweep_id} does not exist")
    return sweep


def list_(*, db_session: Session, limit: int = 50, offset: int = 0) -> tuple[list[Sweep], int]:
    total = db_session.scalar(select(func.count()).select_from(Sweep)) or 0
    rows = db_session.scalars(select(Sweep).order_by(Sweep.id.desc()).offset(offset).limit(limit)).all()
    return list(rows), total


def view(*, db_session: Session, sweep: Sweep, with_importances: bool = True) -> dict[str, Any]:
    """Everything GET /api/sweeps/{id} and the sweep page show (importances only when asked: they cost a
    fANOVA fit each time a trial completes, never worth it inside a write)."""
    runs = _trial_runs(db_session, sweep.id)
    intermediate = _intermediate(sweep, runs)
    values = trial_values(sweep, runs, intermediate)
    trials = [{"number": run.sweep_trial, "run_id": run.id, "name": run.name, "params": dict(run.sweep_params or {}),
               "value": values.get(run.id) if run.status == COMPLETED else None, "status": run.status,
               "epoch": run.epoch or 0, "epochs_total": run.epochs_total or 0,
               "pruned_epoch": run.pruned_epoch if run.status == PRUNED else None,
               "intermediate": intermediate.get(run.id, {}), "failure_reason": run.failure_reason,
               "test_accuracy": run.test_accuracy, "total_params": run.total_params,
               "train_time_s": run.train_time_s} for run in runs]
    scored = [t for t in trials if t["value"] is not None]
    best = None
    if scored:
        pick = max if sweep.direction == "maximize" else min
        best = pick(scored, key=lambda t: (t["value"], -t["number"]) if sweep.direction == "maximize"
                    else (t["value"], t["number"]))
    counts = {status: 0 for status in ("queued", "starting", "running", "completed", "pruned", "failed",
                                       "cancelled", "interrupted")}
    for trial in trials:
        counts[trial["status"]] = counts.get(trial["status"], 0) + 1
    request = sweep.request
    return {"id": sweep.id, "name": sweep.name, "kind": sweep.kind, "status": sweep.status, "dataset": sweep.dataset,
            "sampler": sweep.sampler, "pruner": sweep.pruner,
            "objective": {"metric": sweep.metric, "direction": sweep.direction},
            "space": request.get("space", {}), "trials_total": sweep.trials_total, "parallelism": sweep.parallelism,
            "note": sweep.note, "created_at": sweep.created_at, "finished_at": sweep.finished_at,
            "trials": trials, "best": best, "counts": counts,
            "importances": importances(sweep, runs, values) if with_importances else None}


def importances(sweep: Sweep, runs: list[Run], values: dict[int, float]) -> dict[str, float] | None:
    """Optuna's fANOVA importance of each parameter (summing to 1), once MIN_TRIALS_FOR_IMPORTANCE
    trials completed with a value and some parameter varied; cached per set of finished trials."""
    if sweep.kind != "search":
        return None
    done = [run for run in runs if run.status == COMPLETED and run.id in values]
    space = sweep.request.get("space", {})
    if len(done) < MIN_TRIALS_FOR_IMPORTANCE or not space:
        return None
    done = done[-MAX_TRIALS_FOR_IMPORTANCE:]  # the latest: fANOVA's cost grows with the trials
    key = (sweep.id, tuple(sorted((run.id, values[run.id]) for run in done)))
    with _importance_lock:  # one fit per change, however many pages and streams ask at once
        missing = object()
        cached = _importance_cache.get(key, missing)
        if cached is not missing:
            return cached
        result = _fanova(sweep, done)
        if len(_importance_cache) > 256:
            _importance_cache.clear()
        _importance_cache[key] = result
        return result


def _fanova(sweep: Sweep, done: list[Run]) -> dict[str, float] | None:
    optuna = _optuna()
    parsed = _request(sweep).space
    study, _ = _study(sweep, parsed, done, seed_offset=0, intermediate=_intermediate(sweep, done))
    varied = [k for k in parsed if len({repr((run.sweep_params or {}).get(k)) for run in done}) > 1]
    result = None
    if varied:
        try:
            evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
            scores = optuna.importance.get_param_importances(study, evaluator=evaluator, params=varied)
            result = {k: float(v) for k, v in scores.items()}
        except (RuntimeError, ValueError):  # e.g. every value equal: nothing to attribute
            result = None
    return result


# -- acting ---------------------------------------------------------------------------------------

def cancel(*, db_session: Session, sweep_id: int) -> Sweep:
    """Queued trials are cancelled at once (they never start), running ones stop at their next step;
    no new trial is asked for. Cancelling a finished sweep changes nothing."""
    get(db_session=db_session, sweep_id=sweep_id)
    sweep = _locked(db_session, sweep_id)
    if sweep is not None and sweep.status in SWEEP_ACTIVE:
        sweep.status, sweep.finished_at = "cancelled", utcnow()
        for run in _trial_runs(db_session, sweep_id):
            if run.status not in TERMINAL_STATUSES:
                lifecycle.request_cancel(db_session, run.id)
        db_session.commit()
    return get(db_session=db_session, sweep_id=sweep_id)


def best_run(*, db_session: Session, sweep_id: int, epochs: int | None, name: str | None) -> Run:
    """A new run of the best trial's model and settings, for more epochs (default: twice as many)."""
    sweep = get(db_session=db_session, sweep_id=sweep_id)
    best = view(db_session=db_session, sweep=sweep, with_importances=False)["best"]
    if best is None:
        raise Conflict(f"sweep {sweep_id} has no completed trial with a {sweep.metric} yet")
    trial = runs_service.get(db_session=db_session, run_id=best["run_id"])
    config = dict(trial.config)
    config["epochs"] = epochs or 2 * int(config.get("epochs") or 1)
    try:
        config_in = TrainConfigIn.model_validate(config)
    except ValidationError as exc:
        raise InvalidInput(describe(exc), [{"field": "epochs", "message": error_message(e)} for e in exc.errors()]) from exc
    run_in = RunCreate(name=name or f"{sweep.name}: best (trial {best['number']}) for {config_in.epochs} epochs",
                       spec=dict(trial.spec), dataset=trial.dataset, config=config_in)
    run = runs_service.queue(db_session=db_session, run_in=run_in, fields={"preset": trial.preset})
    db_session.commit()
    return run


def top_run_ids(view_: dict[str, Any], count: int) -> list[int]:
    """The run ids of the best `count` trials by objective (best first)."""
    scored = [t for t in view_["trials"] if t["value"] is not None]
    scored.sort(key=lambda t: t["value"], reverse=view_["objective"]["direction"] == "maximize")
    return [t["run_id"] for t in scored[:count]]
