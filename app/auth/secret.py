"""The key that signs session cookies: TRAINBOARD_SECRET_KEY, else one kept in the data dir."""

from __future__ import annotations

import os
import secrets

from app.core.config import Settings

MIN_LENGTH = 32  # an empty or short key would let anyone sign a session cookie


def session_secret(settings: Settings) -> str:
    if settings.secret_key:
        if len(settings.secret_key) < MIN_LENGTH:
            raise ValueError(f"TRAINBOARD_SECRET_KEY is shorter than {MIN_LENGTH} characters: use a long random "
                             "value, or unset it to have one kept in the data dir")
        return settings.secret_key
    path = settings.data_dir / "secret_key"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        key = path.read_text().strip()
        if len(key) >= MIN_LENGTH:
            return key
    except FileNotFoundError:
        pass
    # None yet, or one left empty or short (e.g. a write cut off): make one and swap it in whole.
    key = secrets.token_urlsafe(48)
    part = path.with_name(f".secret_key.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key)
    try:
        os.link(part, path)  # only where there is none: another process's key wins
    except FileExistsError:
        if len(path.read_text().strip()) < MIN_LENGTH:
            os.replace(part, path)  # the short one is replaced whole
    finally:
        part.unlink(missing_ok=True)
    return path.read_text().strip()
