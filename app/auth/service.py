"""Users, passwords and personal API tokens.

Passwords are hashed with Argon2id by pwdlib (its recommended parameters); a token is
`tb_` + `secrets.token_urlsafe(32)`, shown once and stored as its sha256 (a token is random, so a
fast hash is enough; the comparison is by the hash's unique index). A server with no users is open
(and binds to loopback unless told otherwise: app/cli.py); once one exists, every route but the
login page, health and static files needs a session or a token (app/auth/middleware.py).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from pwdlib import PasswordHash
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.auth.models import ADMIN, READ, ROLES, SCOPES, WRITE, ApiToken, User
from app.core.config import get_settings
from app.core.errors import Conflict, InvalidInput, NotFound
from app.core.models_base import utcnow

USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # hashing cost is bounded before any work: longer passwords are refused
TOKEN_PREFIX = "tb_"

_hasher = PasswordHash.recommended()
# A hash to verify against when the user does not exist, so a login takes as long either way.
_DUMMY_HASH = _hasher.hash("trainboard-no-such-user")


@dataclass(frozen=True)
class Principal:
    """Who is asking: a user and what this credential allows (`write` for sessions)."""

    user_id: int
    username: str
    role: str
    scope: str
    via: str  # "session" or "token"

    @property
    def can_write(self) -> bool:
        return self.role != "viewer" and self.scope == WRITE

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN and self.scope == WRITE


# -- whether accounts exist (read on every request: cached briefly) ------------------------------

_cache_lock = threading.Lock()
_cache: dict[str, tuple[float, bool]] = {}  # by database URL (tests run many databases in one process)
CACHE_S = 2.0


def accounts_enabled(db_session: Session) -> bool:
    """True once the server has a user: from then on every route needs credentials. Users are
    never deleted (only disabled), so once true it stays true; false is re-read every CACHE_S."""
    key = get_settings().sqlalchemy_url
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and (hit[1] or now - hit[0] < CACHE_S):
            return hit[1]
    enabled = db_session.scalar(select(func.count()).select_from(User)) > 0
    with _cache_lock:
        _cache[key] = (now, enabled)
    return enabled


def forget_cache() -> None:
    with _cache_lock:
        _cache.clear()


# -- users ---------------------------------------------------------------------------------------

def _check_password(password: str, field: str = "password") -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidInput(f"a password is {MIN_PASSWORD} to {MAX_PASSWORD} characters",
                           [{"field": field, "message": f"use {MIN_PASSWORD} to {MAX_PASSWORD} characters"}])


def create_user(db_session: Session, username: str, password: str, role: str = "member") -> User:
    if not USERNAME.match(username or ""):
        raise InvalidInput("a username is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
                           [{"field": "username", "message": "invalid username"}])
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}", [{"field": "role", "message": "unknown role"}])
    _check_password(password)
    if db_session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"user {username} already exists")
    user = User(username=username, password_hash=_hasher.hash(password), role=role)
    db_session.add(user)
    db_session.flush()
    forget_cache()
    return user


def authenticate(db_session: Session, username: str, password: str) -> User | None:
    """The user when the password is right and the account is enabled (constant work either way)."""
    if len(password) > MAX_PASSWORD:
        return None
    user = db_session.scalar(select(User).where(User.username == username))
    if user is None:
        _hasher.verify(password, _DUMMY_HASH)
        return None
    valid, new_hash = _hasher.verify_and_update(password, user.password_hash)
    if not valid or user.disabled:
        return None
    if new_hash:  # pwdlib's recommended parameters changed: store the stronger hash
        user.password_hash = new_hash
    return user


def get_user(db_session: Session, user_id: int) -> User:
    user = db_session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} does not exist")
    return user


def list_users(db_session: Session) -> list[User]:
    return list(db_session.scalars(select(User).order_by(User.id)))


def update_user(db_session: Session, user_id: int, *, role: str | None = None, disabled: bool | None = None,
                password: str | None = None) -> User:
    user = get_user(db_session, user_id)
    if role is not None:
        if role not in ROLES:
            raise InvalidInput(f"role must be one of {', '.join(ROLES)}", [{"field": "role", "message": "unknown role"}])
        user.role = role
    if disabled is not None:
        user.disabled = disabled
    if password is not None:
        _check_password(password)
        user.password_hash = _hasher.hash(password)
    if user.role != ADMIN or user.disabled:
        others = db_session.scalar(select(func.count()).select_from(User).where(
            User.role == ADMIN, User.disabled.is_(False), User.id != user.id))
        if not others:
            raise Conflict("this is the last enabled admin: make another user admin first")
    return user


# -- tokens --------------------------------------------------------------------------------------

def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(db_session: Session, user: User, name: str, scope: str = READ,
                 expires_in_days: int | None = None) -> tuple[ApiToken, str]:
    """A new personal token; the token itself is returned once and never stored."""
    if scope not in SCOPES:
        raise InvalidInput(f"scope must be {' or '.join(SCOPES)}", [{"field": "scope", "message": "unknown scope"}])
    if not 1 <= len(name.strip()) <= 100:
        raise InvalidInput("a token needs a name (1 to 100 characters)", [{"field": "name", "message": "required"}])
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires = utcnow() + timedelta(days=expires_in_days) if expires_in_days else None
    row = ApiToken(user_id=user.id, name=name.strip(), token_hash=_digest(token), prefix=token[:10],
                   scope=scope, expires_at=expires)
    db_session.add(row)
    db_session.flush()
    return row, token


def list_tokens(db_session: Session, user_id: int | None = None) -> list[ApiToken]:
    query = select(ApiToken).order_by(ApiToken.id)
    if user_id is not None:
        query = query.where(ApiToken.user_id == user_id)
    return list(db_session.scalars(query))


def revoke_token(db_session: Session, token_id: int, principal: Principal) -> ApiToken:
    row = db_session.get(ApiToken, token_id)
    if row is None or (row.user_id != principal.user_id and not principal.is_admin):
        raise NotFound(f"token {token_id} does not exist")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def principal_for_token(db_session: Session, token: str) -> Principal | None:
    """The principal of a valid personal token (not revoked, not expired, its user enabled)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        return None
    row = db_session.scalar(select(ApiToken).where(ApiToken.token_hash == _digest(token)))
    if row is None or row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= utcnow()):
        return None
    user = db_session.get(User, row.user_id)
    if user is None or user.disabled:
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=1):
        db_session.execute(update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=now))
    return Principal(user.id, user.username, user.role, row.scope, "token")


def session_stamp(user: User) -> str:
    """What a login session keeps of the password it was made with: a new password (set by the
    user or reset by an admin) ends every session made before it, on every browser."""
    return hashlib.sha256(b"session:" + user.password_hash.encode()).hexdigest()[:24]


def principal_for_user(db_session: Session, user_id: int, stamp: str) -> Principal | None:
    """The principal of a login session: its user enabled, and the password unchanged since."""
    user = db_session.get(User, user_id)
    if user is None or user.disabled or not hmac.compare_digest(session_stamp(user), stamp):
        return None
    return Principal(user.id, user.username, user.role, WRITE, "session")


def change_password(db_session: Session, user_id: int, current: str, new: str) -> User:
    """A user's own change: the current password first (a session left open is not enough)."""
    user = get_user(db_session, user_id)
    if len(current) > MAX_PASSWORD or not _hasher.verify(current, user.password_hash):
        raise InvalidInput("the current password is wrong",
                           [{"field": "current_password", "message": "not your current password"}])
    _check_password(new, "new_password")
    user.password_hash = _hasher.hash(new)
    return user


def token_state(row: ApiToken, now: datetime | None = None) -> str:
    now = now or utcnow()
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= now:
        return "expired"
    return "active"
