"""docs/settings.md is generated from Settings and the comments in app/core/config.py, and stays so."""

from __future__ import annotations

import re

from app.core import settings_doc
from app.core.config import Settings
from tests.conftest import ROOT

DOC = ROOT / "docs" / "settings.md"
# Fields with no comment line directly above them in app/core/config.py. Remove a name once its
# comment is written (and regenerate docs/settings.md); a new field must come with its comment.
KNOWN_GAPS: list[str] = []


def test_docs_settings_md_is_the_generated_table():
    assert DOC.is_file(), f"docs/settings.md is missing: run `{settings_doc.COMMAND}`"
    assert DOC.read_text(encoding="utf-8") == settings_doc.markdown(), (
        f"docs/settings.md is out of date with app/core/config.py: run `{settings_doc.COMMAND}`")


def test_every_field_is_in_the_table():
    text = settings_doc.markdown()
    assert Settings.model_fields
    for name in Settings.model_fields:
        assert f"| `TRAINBOARD_{name.upper()}` |" in text, name


def test_every_field_has_a_meaning():
    missing = settings_doc.fields_without_comment()
    new = [name for name in missing if name not in KNOWN_GAPS]
    assert not new, f"write a comment above these fields in app/core/config.py (their meaning): {new}"
    fixed = [name for name in KNOWN_GAPS if name not in missing]
    assert not fixed, f"these fields have a comment now: remove them from KNOWN_GAPS: {fixed}"
    meanings = settings_doc.meanings()
    assert all(meanings[name] for name in Settings.model_fields if name not in KNOWN_GAPS)


def test_comments_are_read_from_the_source():
    meanings = settings_doc.meanings()
    assert meanings["data_dir"] == "Where SQLite files, data sets, uploads and artifacts live."
    # A block of several lines is joined; an end-of-line comment is added.
    assert meanings["max_body_bytes"].startswith("Request bodies (JSON and forms) over this size are refused")
    assert meanings["max_body_bytes"].endswith("stays around 10 ms.")
    assert meanings["max_activation_bytes"].startswith("Activation memory of one sample")


def test_defaults_are_written_as_environment_values():
    assert settings_doc.env_value("data_dir") == "./data"
    assert settings_doc.env_value("warm_workers") == "true"
    assert settings_doc.env_value("secure_cookies") == "false"
    assert settings_doc.env_value("session_max_age_s") == "604800"
    assert settings_doc.env_value("poll_interval_s") == "0.1"
    for secret in ("admin_password", "secret_key", "database_url"):
        assert settings_doc.env_value(secret) == ""
    assert settings_doc.type_name("slots") == "integer, >= 1"


def test_variables_read_outside_the_settings_are_listed():
    """A TRAINBOARD_* variable that the code reads from os.environ is a setting or is documented."""
    read = set()
    for path in [*(ROOT / "app").rglob("*.py"), *(ROOT / "trainboard").rglob("*.py")]:
        read |= set(re.findall(r"environ(?:\.get\(|\[)\s*[\"'](TRAINBOARD_[A-Z0-9_]+)", path.read_text("utf-8")))
    fields = {f"TRAINBOARD_{name.upper()}" for name in Settings.model_fields}
    undocumented = sorted(read - fields - set(settings_doc.OTHER_VARIABLES))
    assert not undocumented, f"add these to OTHER_VARIABLES in app/core/settings_doc.py: {undocumented}"
    assert set(settings_doc.OTHER_VARIABLES) <= read
