"""Find any run: a search query in words, and keyset pages over any sortable column.

A query is space-separated terms (the dashboard's search box and `GET /api/runs?q=` take the same text):

    digits mlp status:completed,failed dataset:digits arch:3 sweep:2 created>2026-12-01 val_accuracy>0.97 params<50000

- plain words match the run's name (all of them, any case);
- `status:`, `dataset:`, `tag:`, `arch:` (a saved architecture's id), `sweep:` (a sweep's id) and `preset:`
  filter (comma-separated values: any of them); `archived:true|all` shows archived runs (left out by default);
- `created>` / `created<` take a date (YYYY-MM-DD) or a date and time;
- a metric compared with `>`, `>=`, `<`, `<=` or `=` to a number: val_accuracy (the best epoch's),
  test_accuracy, test_loss, params, time (training seconds), epochs.

Pages are keyset, not offset: the cursor names the last row's sort value and id, so page 50 costs what
page 1 does and a run created meanwhile never shifts a page. Rows without a value in the sort column
(a running run's test accuracy) come after those with one, in either direction.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session, selectinload

from app.core.deps import DB_INT_MAX
from app.core.errors import InvalidInput
from app.runs.models import STATUSES, Run, RunTag, Tag

MAX_QUERY_CHARS = 500
MAX_TERMS = 20
# Sortable columns by the name a URL uses, and the filterable metrics.
SORTS = {"created": Run.id, "name": Run.name, "status": Run.status, "dataset": Run.dataset,
         "val_accuracy": Run.best_val_accuracy, "test_accuracy": Run.test_accuracy, "test_loss": Run.test_loss,
         "params": Run.total_params, "time": Run.train_time_s, "epochs": Run.epoch}
METRICS = {"val_accuracy": Run.best_val_accuracy, "best_val_accuracy": Run.best_val_accuracy,
           "test_accuracy": Run.test_accuracy, "test_loss": Run.test_loss, "params": Run.total_params,
           "time": Run.train_time_s, "epochs": Run.epoch}
_COMPARE = re.compile(r"([a-z_]+)(>=|<=|>|<|=)(.+)")
_FIELDS = ("status", "dataset", "arch", "sweep", "preset", "tag", "archived")
HOW = ("words match the name; status:completed, dataset:digits, tag:baseline, arch:3, sweep:2, preset:mnist-mlp, "
       "archived:true|all, "
       "created>2026-12-01, and metrics such as val_accuracy>0.97, test_loss<0.1, params<50000, time<60")


@dataclass
class Query:
    words: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    architecture_ids: list[int] = field(default_factory=list)
    sweep_ids: list[int] = field(default_factory=list)
    presets: list[str] = field(default_factory=list)
    created: list[tuple[str, datetime]] = field(default_factory=list)
    thresholds: list[tuple[str, str, float]] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    # True: archived runs only; False: leave them out; None: both (`archived:true|false|all`)
    archived: bool | None = False
    archived_given: bool = False  # the text said archived: (a caller's own default gives way)


def _refuse(term: str, why: str) -> InvalidInput:
    return InvalidInput(f"“{term[:60]}” in the search: {why}. Search with {HOW}",
                        [{"field": "q", "message": why}])


def _ids(term: str, values: str) -> list[int]:
    ids = []
    for value in values.split(","):
        if not (value.isascii() and value.isdigit()) or len(value) > 10 or int(value) > DB_INT_MAX:
            raise _refuse(term, f"{value[:20]!r} is not an id")
        ids.append(int(value))
    return ids


def parse(text: str) -> Query:
    """The query in `text` (InvalidInput naming the term that cannot be read, and what to write)."""
    if len(text) > MAX_QUERY_CHARS:
        raise InvalidInput(f"the search is longer than {MAX_QUERY_CHARS} characters", [{"field": "q", "message": "too long"}])
    terms = text.split()
    if len(terms) > MAX_TERMS:
        raise InvalidInput(f"the search has {len(terms)} terms: at most {MAX_TERMS}", [{"field": "q", "message": "too many terms"}])
    query = Query()
    for term in terms:
        name, colon, values = term.partition(":")
        if colon and name.lower() in _FIELDS and not _COMPARE.fullmatch(term):
            name = name.lower()
            if not values:
                raise _refuse(term, f"{name}: needs a value")
            if name == "status":
                wrong = [v for v in values.split(",") if v not in STATUSES]
                if wrong:
                    raise _refuse(term, f"there is no status {wrong[0]!r} (statuses: {', '.join(STATUSES)})")
                query.statuses += values.split(",")
            elif name == "dataset":
                query.datasets += values.split(",")
            elif name == "preset":
                query.presets += values.split(",")
            elif name == "tag":
                query.tags += values.split(",")
            elif name == "archived":
                if values not in ("true", "false", "all"):
                    raise _refuse(term, "archived: takes true, false or all")
                query.archived = None if values == "all" else values == "true"
                query.archived_given = True
            elif name == "arch":
                query.architecture_ids += _ids(term, values)
            else:
                query.sweep_ids += _ids(term, values)
            continue
        compared = _COMPARE.fullmatch(term)
        if compared and compared[1] == "created":
            if compared[2] not in (">", "<", ">=", "<="):
                raise _refuse(term, "compare created with > or <")
            try:
                when = datetime.fromisoformat(compared[3])
            except ValueError:
                raise _refuse(term, "created takes a date such as 2026-12-01 (or 2026-12-01T09:30)") from None
            query.created.append((compared[2], when.replace(tzinfo=None)))
            continue
        if compared:
            metric, op, number = compared[1], compared[2], compared[3]
            if metric not in METRICS:
                raise _refuse(term, f"there is no metric {metric!r} (metrics: {', '.join(sorted(set(METRICS) - {'best_val_accuracy'}))})")
            try:
                value = float(number.rstrip("%")) / (100 if number.endswith("%") else 1)
            except ValueError:
                raise _refuse(term, f"{number[:20]!r} is not a number") from None
            if value != value or value in (float("inf"), float("-inf")):
                raise _refuse(term, "compare with a finite number")
            query.thresholds.append((metric, op, value))
            continue
        if any(c in term for c in "<>") or (colon and name):
            raise _refuse(term, f"{name.lower()!r} is not something to search by" if colon else "not a comparison")
        query.words.append(term.lower())
    return query


def where(query: Query) -> list[Any]:
    """The query as SQL conditions on `runs`."""
    conditions: list[Any] = []
    for word in query.words:
        escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        conditions.append(func.lower(Run.name).like(f"%{escaped}%", escape="\\"))
    if query.statuses:
        conditions.append(Run.status.in_(query.statuses))
    if query.datasets:
        conditions.append(Run.dataset.in_(query.datasets))
    if query.presets:
        conditions.append(Run.preset.in_(query.presets))
    if query.architecture_ids:
        conditions.append(Run.architecture_id.in_(query.architecture_ids))
    if query.sweep_ids:
        conditions.append(Run.sweep_id.in_(query.sweep_ids))
    if query.tags:
        conditions.append(Run.id.in_(select(RunTag.run_id).join(Tag, Tag.id == RunTag.tag_id)
                                     .where(Tag.name.in_(query.tags))))
    if query.archived is not None:
        conditions.append(Run.archived.is_(query.archived))
    for op, when in query.created:
        conditions.append(_op(Run.created_at, op, when))
    for metric, op, value in query.thresholds:
        column = METRICS[metric]
        conditions.append(and_(column.is_not(None), _op(column, op, value)))
    return conditions


def _op(column: Any, op: str, value: Any) -> Any:
    return {">": column > value, ">=": column >= value, "<": column < value, "<=": column <= value,
            "=": column == value}[op]


# -- keyset pages ------------------------------------------------------------------------------------

def encode_cursor(sort: str, row: Run) -> str:
    value = getattr(row, SORTS[sort].key)
    data = [sort, value is None, value if not isinstance(value, datetime) else value.isoformat(), row.id]
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> tuple[bool, Any, int]:
    """(value is null, value, id) of the row a page ends at; InvalidInput for anything else."""
    bad = InvalidInput("the page cursor is not one this server gave: start from the first page",
                       [{"field": "cursor", "message": "not a cursor"}])
    if len(cursor) > 400:
        raise bad
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, UnicodeDecodeError):
        raise bad from None
    if not (isinstance(data, list) and len(data) == 4 and data[0] == sort and isinstance(data[1], bool)
            and isinstance(data[3], int) and not isinstance(data[3], bool) and 0 <= data[3] <= DB_INT_MAX):
        raise bad
    null, value, run_id = data[1], data[2], data[3]
    column = SORTS[sort]
    python_type = column.type.python_type
    if null:
        value = None
    elif python_type is str:
        if not isinstance(value, str) or len(value) > 300:
            raise bad
    elif python_type in (int, float):
        if isinstance(value, bool) or not isinstance(value, int | float) or (python_type is int and not isinstance(value, int)):
            raise bad
    else:
        raise bad
    return null, value, run_id


def page(*, db_session: Session, query: Query, sort: str = "created", descending: bool = True,
         cursor: str | None = None, limit: int = 50, extra: list[Any] | None = None) -> tuple[list[Run], str | None, int]:
    """One page of the runs the query finds, sorted by `sort`: (rows, the next page's cursor or None, total)."""
    if sort not in SORTS:
        raise InvalidInput(f"runs cannot be sorted by {sort!r}: sort by {', '.join(SORTS)}",
                           [{"field": "sort", "message": "unknown column"}])
    conditions = where(query) + list(extra or [])
    column = SORTS[sort]
    total = db_session.scalar(select(func.count(Run.id)).where(*conditions)) or 0
    is_null = column.is_(None)
    statement: Select = select(Run).where(*conditions)
    if cursor:
        null, value, run_id = decode_cursor(cursor, sort)
        statement = statement.where(_after(column, null, value, run_id, descending))
    order = [is_null.asc()]  # rows with a value first, in either direction
    order += [column.desc(), Run.id.desc()] if descending else [column.asc(), Run.id.asc()]
    if column is Run.id:
        order = [Run.id.desc() if descending else Run.id.asc()]
    rows = list(db_session.scalars(statement.order_by(*order).limit(limit + 1).options(selectinload(Run.tags))))
    next_cursor = encode_cursor(sort, rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor, total


def _after(column: Any, null: bool, value: Any, run_id: int, descending: bool) -> Any:
    """Rows after (value, id) in the page order: values first (by value, then id), then NULLs by id."""
    beyond_id = Run.id < run_id if descending else Run.id > run_id
    if column is Run.id:
        return beyond_id
    if null:
        return and_(column.is_(None), beyond_id)
    beyond_value = column < value if descending else column > value
    return or_(column.is_(None), beyond_value, and_(column == value, beyond_id))

