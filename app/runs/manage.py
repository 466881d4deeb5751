"""Run management: tags (with colours), a markdown note, rename, archive, and deleting runs with
everything they left on disk (checkpoints, exports, trainer logs), one or many at a time.

Keyword-only, session first; raises domain errors; the caller's session is committed here.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from markdown_it import MarkdownIt
from markupsafe import Markup
from sqlalchemy import delete as sql_delete
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.core.config import get_settings
from app.core.errors import Conflict, InvalidInput, NotFound
from app.runs.models import ACTIVE_STATUSES, Artifact, Evaluation, Run, RunEvent, RunTag, Tag
from app.runs.service import get, run_dir

MAX_TAG_LENGTH = 40
MAX_TAGS_PER_RUN = 20
MAX_NOTE_LENGTH = 20_000
MAX_NAME_LENGTH = 200
MAX_BULK = 500
TAG_PATTERN = re.compile(r"^[^\s,<>\"'`][^,<>\"'`]*$")  # no commas (the form splits on them), no markup
COLOUR_PATTERN = re.compile(r"^#[0-9a-fA-F]{6}$")
# New tags take a colour from this palette by their name's hash: the same name, the same colour.
PALETTE = ("#2563eb", "#16a34a", "#d97706", "#dc2626", "#7c3aed", "#0891b2", "#db2777", "#4d7c0f",
           "#9333ea", "#0f766e", "#b45309", "#475569")


# ---------- tags ----------

def clean_tag(name: str) -> str:
    """A tag name as stored: trimmed, inner whitespace collapsed; InvalidInput when it cannot be one."""
    tag = " ".join(str(name).split())
    if not tag:
        raise InvalidInput("a tag cannot be empty", [{"field": "tags", "message": "empty tag"}])
    if len(tag) > MAX_TAG_LENGTH:
        raise InvalidInput(f"tag '{tag[:MAX_TAG_LENGTH]}…' is longer than {MAX_TAG_LENGTH} characters",
                           [{"field": "tags", "message": "too long"}])
    if not TAG_PATTERN.match(tag):
        raise InvalidInput(f"tag '{tag}' may not contain commas, quotes or angle brackets",
                           [{"field": "tags", "message": "invalid characters"}])
    return tag


def clean_tags(names: Iterable[str]) -> list[str]:
    """Distinct tag names in the order given (case-sensitive), each checked."""
    tags: list[str] = []
    for name in names:
        tag = clean_tag(name)
        if tag not in tags:
            tags.append(tag)
    return tags


def default_colour(name: str) -> str:
    return PALETTE[int(hashlib.sha256(name.encode()).hexdigest(), 16) % len(PALETTE)]


def _tags_named(db_session: Session, names: list[str]) -> list[Tag]:
    """The Tag rows for these names, created (with their default colour) where missing."""
    if not names:
        return []
    found = {t.name: t for t in db_session.scalars(select(Tag).where(Tag.name.in_(names)))}
    for name in names:
        if name not in found:
            found[name] = Tag(name=name, colour=default_colour(name))
            db_session.add(found[name])
    db_session.flush()
    return [found[name] for name in names]


def _check_count(run: Run, count: int) -> None:
    if count > MAX_TAGS_PER_RUN:
        raise InvalidInput(f"run {run.id} would have {count} tags; a run carries at most {MAX_TAGS_PER_RUN}",
                           [{"field": "tags", "message": f"at most {MAX_TAGS_PER_RUN} tags"}])


def set_tags(*, db_session: Session, run_id: int, tags: list[str]) -> Run:
    """Replace the run's tags with `tags` (new names become tags)."""
    run = get(db_session=db_session, run_id=run_id)
    names = clean_tags(tags)
    _check_count(run, len(names))
    run.tags = sorted(_tags_named(db_session, names), key=lambda t: t.name)
    db_session.commit()
    return run


def change_tags(*, db_session: Session, run_ids: list[int], add: list[str], remove: list[str]) -> list[Run]:
    """Add and remove tags on several runs at once (all or none)."""
    runs = _runs(db_session, run_ids)
    adding, removing = clean_tags(add), set(clean_tags(remove))
    new_tags = _tags_named(db_session, adding)
    for run in runs:
        kept = [t for t in run.tags if t.name not in removing]
        kept += [t for t in new_tags if t not in kept]
        _check_count(run, len(kept))
        run.tags = sorted(kept, key=lambda t: t.name)
    db_session.commit()
    return runs


def list_tags(*, db_session: Session) -> list[dict]:
    """Every tag with its colour and how many runs carry it, by name."""
    rows = db_session.execute(
        select(Tag.name, Tag.colour, func.count(RunTag.run_id))
        .outerjoin(RunTag, RunTag.tag_id == Tag.id).group_by(Tag.id, Tag.name, Tag.colour).order_by(Tag.name)
    ).all()
    return [{"name": name, "colour": colour, "runs": count} for name, colour, count in rows]


def set_colour(*, db_session: Session, name: str, colour: str) -> Tag:
    if not COLOUR_PATTERN.match(colour or ""):
        raise InvalidInput("a colour is written #rrggbb", [{"field": "colour", "message": "not #rrggbb"}])
    tag = db_session.scalars(select(Tag).where(Tag.name == name)).first()
    if tag is None:
        raise NotFound(f"there is no tag '{name}'")
    tag.colour = colour.lower()
    db_session.commit()
    return tag


# ---------- name, note, archive ----------

def update_run(*, db_session: Session, run_id: int, name: str | None = None, note: str | None = None) -> Run:
    """Rename the run and/or replace its note (an empty note removes it)."""
    run = get(db_session=db_session, run_id=run_id)
    if name is not None:
        name = name.strip()
        if not name or len(name) > MAX_NAME_LENGTH:
            raise InvalidInput(f"a run's name has 1 to {MAX_NAME_LENGTH} characters",
                               [{"field": "name", "message": "empty or too long"}])
        run.name = name
    if note is not None:
        if len(note) > MAX_NOTE_LENGTH:
            raise InvalidInput(f"a note has at most {MAX_NOTE_LENGTH:,} characters",
                               [{"field": "note", "message": "too long"}])
        run.note = note if note.strip() else None
    db_session.commit()
    return run


def set_archived(*, db_session: Session, run_ids: list[int], archived: bool) -> list[Run]:
    runs = _runs(db_session, run_ids)
    db_session.execute(update(Run).where(Run.id.in_([r.id for r in runs])).values(archived=archived)
                       .execution_options(synchronize_session="fetch"))
    db_session.commit()
    return runs


_markdown = MarkdownIt("js-default").disable("image")  # raw HTML is escaped; unsafe link schemes refused


def _link_open(renderer, tokens, idx, options, env):  # noqa: ANN001  (markdown-it's render rule signature)
    tokens[idx].attrSet("rel", "nofollow noopener noreferrer")
    return renderer.renderToken(tokens, idx, options, env)


_markdown.add_render_rule("link_open", _link_open)


def render_note(note: str | None) -> Markup:
    """A note's markdown as HTML that is safe to put in a page: raw HTML in it is shown as text,
    `javascript:`-like links are not made links, images are not loaded."""
    return Markup(_markdown.render(note or ""))


# ---------- delete ----------

@dataclass
class DeletePlan:
    ids: list[int]
    bytes: int
    active: list[int]


def _runs(db_session: Session, run_ids: list[int]) -> list[Run]:
    ids = list(dict.fromkeys(run_ids))
    if not ids:
        raise InvalidInput("no runs given", [{"field": "ids", "message": "empty"}])
    if len(ids) > MAX_BULK:
        raise InvalidInput(f"at most {MAX_BULK} runs at a time", [{"field": "ids", "message": "too many"}])
    runs = {r.id: r for r in db_session.scalars(select(Run).where(Run.id.in_(ids)))}
    missing = [i for i in ids if i not in runs]
    if missing:
        raise NotFound(f"no run {', '.join(map(str, missing))}" if len(missing) == 1 else
                       f"these runs do not exist: {', '.join(map(str, missing))}")
    return [runs[i] for i in ids]


def run_files(run_id: int) -> list[Path]:
    """Every file and folder a run leaves on disk: its folder in the artifacts dir (checkpoints,
    exports) and its trainer's log (`logs/run-<id>.log`, a link to the trainer's own log file)."""
    paths = [run_dir(run_id)]
    logs = get_settings().data_dir.resolve() / "logs"
    link = logs / f"run-{run_id}.log"
    if link.is_symlink():
        target = link.resolve()
        if target.parent == logs:
            paths.append(target)
    paths.append(link)
    return paths


def disk_bytes(run_id: int) -> int:
    total = 0
    for path in run_files(run_id):
        if path.is_symlink():
            continue
        if path.is_file():
            total += path.stat().st_size
        elif path.is_dir():
            for folder, _, files in os.walk(path):
                for name in files:
                    try:
                        total += os.lstat(os.path.join(folder, name)).st_size
                    except OSError:
                        pass
    return total


def plan_delete(*, db_session: Session, run_ids: list[int]) -> DeletePlan:
    """What deleting these runs would do: which are active (refused) and how much disk it frees."""
    runs = _runs(db_session, run_ids)
    return DeletePlan(ids=[r.id for r in runs], bytes=sum(disk_bytes(r.id) for r in runs),
                      active=[r.id for r in runs if r.status in ACTIVE_STATUSES])


def delete_runs(*, db_session: Session, run_ids: list[int]) -> DeletePlan:
    """Delete runs with every row that refers to them (events, evaluations, artifacts, tag links) and
    their files; refused (nothing deleted) when any is starting or running: cancel those first. The
    status is checked in the DELETE itself, so a run claimed meanwhile is not deleted either."""
    plan = plan_delete(db_session=db_session, run_ids=run_ids)
    if plan.active:
        raise _active_conflict(plan.active)
    ids = plan.ids
    deleted = db_session.execute(
        sql_delete(Run).where(Run.id.in_(ids), Run.status.not_in(ACTIVE_STATUSES))
        .execution_options(synchronize_session=False)
    ).rowcount
    if deleted != len(ids):
        db_session.rollback()
        active = list(db_session.scalars(select(Run.id).where(Run.id.in_(ids), Run.status.in_(ACTIVE_STATUSES))))
        raise _active_conflict(active or ids)
    # The foreign keys cascade; said again here so that no row outlives its run whatever the database.
    for model in (RunTag, Evaluation, Artifact, RunEvent):
        db_session.execute(sql_delete(model).where(model.run_id.in_(ids)).execution_options(synchronize_session=False))
    db_session.execute(update(Run).where(Run.parent_run_id.in_(ids)).values(parent_run_id=None)
                       .execution_options(synchronize_session=False))
    db_session.commit()
    db_session.expunge_all()
    for run_id in ids:
        for path in run_files(run_id):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    path.unlink(missing_ok=True)
                except OSError:
                    pass
    return plan


def _active_conflict(active: list[int]) -> Conflict:
    which = ", ".join(f"#{i}" for i in active)
    return Conflict(f"run{'s' if len(active) > 1 else ''} {which} {'are' if len(active) > 1 else 'is'} still "
                    "training: cancel first, then delete (nothing was deleted)")
