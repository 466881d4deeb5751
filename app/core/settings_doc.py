"""The reference of every TRAINBOARD_* setting, generated from `Settings` so it cannot drift.

The meaning of a setting is the comment block directly above its field in app/core/config.py (plus
a comment at the end of its line, if any): that file is the one place that explains them.

    python -m app.core.settings_doc > docs/settings.md

tests/core/test_settings_doc.py fails when docs/settings.md is not what this prints.
"""

from __future__ import annotations

import ast
import inspect
import io
import tokenize
from pathlib import Path

from app.core import config
from app.core.config import Settings

COMMAND = "python -m app.core.settings_doc > docs/settings.md"
ENV_PREFIX = Settings.model_config.get("env_prefix", "")
# Shown with an empty default whatever the field holds: passwords, keys and URLs with credentials.
SECRETS = frozenset({"admin_password", "secret_key", "database_url"})
# Variables read outside `Settings` (os.environ in the CLI, the client, Ray nodes): name -> meaning.
OTHER_VARIABLES = {
    "TRAINBOARD_TOKEN": "The personal API token the `trainboard` CLI and `trainboard.init` send "
                        "(`Authorization: Bearer`) to a server with accounts.",
    "TRAINBOARD_SERVER": "The server `trainboard sweep` starts its sweep on (default `http://127.0.0.1:8000`; "
                         "`--server` wins).",
    "TRAINBOARD_NEW_PASSWORD": "The password `trainboard users create` gives the new user (else it asks).",
    "TRAINBOARD_NODE_CACHE": "On a Ray node: where data sets fetched from the server are cached by content "
                             "hash (default `~/.cache/trainboard`).",
}
TYPE_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path"}


def _field_comments() -> dict[str, tuple[str, str]]:
    """field name -> (the comment lines directly above its assignment, its end-of-line comment)."""
    source = inspect.getsource(config)
    full_line: dict[int, str] = {}  # line number -> text of a line that is only a comment
    trailing: dict[int, str] = {}  # line number -> a comment after code
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            text = token.string.lstrip("#").strip()
            if token.line.lstrip().startswith("#"):
                full_line[token.start[0]] = text
            else:
                trailing[token.start[0]] = text
    settings_class = next(node for node in ast.walk(ast.parse(source))
                          if isinstance(node, ast.ClassDef) and node.name == Settings.__name__)
    comments: dict[str, tuple[str, str]] = {}
    for node in settings_class.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above: list[str] = []
        line = node.lineno - 1
        while line in full_line:  # stops at a blank line or code
            above.insert(0, full_line[line])
            line -= 1
        end = [trailing[n] for n in range(node.lineno, (node.end_lineno or node.lineno) + 1) if n in trailing]
        comments[node.target.id] = (" ".join(above), " ".join(end))
    return comments


def meanings() -> dict[str, str]:
    """field name -> its meaning from the comments in config.py ("" when it has none)."""
    comments = _field_comments()
    result = {}
    for name in Settings.model_fields:
        above, end = comments.get(name, ("", ""))
        result[name] = f"{above} ({end})" if above and end else above or end
    return result


def fields_without_comment() -> list[str]:
    """Fields with no comment line directly above them in config.py."""
    comments = _field_comments()
    return [name for name in Settings.model_fields if not comments.get(name, ("", ""))[0]]


def env_value(name: str) -> str:
    """The default as one would write it in the environment; secrets are shown empty."""
    if name in SECRETS:
        return ""
    value = Settings.model_fields[name].default
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        text = value.as_posix()
        return text if value.is_absolute() or text.startswith(".") else f"./{text}"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def type_name(name: str) -> str:
    """The field's type and its bounds, e.g. `integer, >= 1`."""
    field = Settings.model_fields[name]
    parts = [TYPE_NAMES.get(field.annotation, getattr(field.annotation, "__name__", str(field.annotation)))]
    for item in field.metadata:
        for attribute, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(item, attribute, None) is not None:
                parts.append(f"{symbol} {getattr(item, attribute)}")
        if getattr(item, "pattern", None):
            parts.append(f"matches `{item.pattern}`")
    return ", ".join(parts)


def _cell(text: str) -> str:
    """Text for a table cell: `|` escaped, and `<` outside code spans (`<data_dir>` is no HTML tag)."""
    spans = text.replace("|", "\\|").replace("\n", " ").split("`")
    return "`".join(span if i % 2 else span.replace("<", "\\<") for i, span in enumerate(spans))


def markdown() -> str:
    """docs/settings.md: a table of every setting."""
    texts = meanings()
    lines = [
        "# Settings",
        "",
        f"Generated from `app.core.config.Settings` by `{COMMAND}`: edit the comments in "
        "app/core/config.py, not this file.",
        "",
        "Every setting is an optional environment variable. Secrets are shown with an empty default.",
        "",
        "| variable | default | type | meaning |",
        "|---|---|---|---|",
    ]
    for name in Settings.model_fields:
        default = env_value(name)
        lines.append(f"| `{ENV_PREFIX}{name.upper()}` | {_cell(f'`{default}`') if default else ''} "
                     f"| {_cell(type_name(name))} | {_cell(texts[name])} |")
    lines += ["", "Read outside the settings (by the CLI, the client or a Ray node):", "",
              "| variable | meaning |", "|---|---|"]
    lines += [f"| `{variable}` | {_cell(meaning)} |" for variable, meaning in OTHER_VARIABLES.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
