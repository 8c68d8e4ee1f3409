"""The documentation site says what the code does: every setting of ``KitSettings`` is in the configuration page with
its default and bounds, the README stays the door, and the pages the site builds from are where ``mkdocs.yml`` says.

The configuration table is written by hand (its "meaning" column is prose), and checked here cell by cell against
the settings class, so the two cannot drift: a new setting, a changed default or bound fails this test with the row
to write.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any

import yaml
from conftest import REPO
from pydantic.fields import FieldInfo

from hayhooks_gunicorn.settings import ENV_PREFIX, KitSettings

DOCS = REPO / "docs"
CONFIGURATION = DOCS / "configuration.md"
BOUND_SIGNS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))


class MkDocsLoader(yaml.SafeLoader):
    """mkdocs.yml with its own tags (``!relative``) read as nothing: only the nav is read here."""


MkDocsLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def number(value: Any) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def choices(field: FieldInfo) -> list[str] | None:
    """The values a field accepts when they are a closed set (an enum, a ``^(a|b)$`` pattern, a bool)."""
    annotation = field.annotation
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return [str(member.value) for member in annotation]
    if annotation is bool:
        return ["true", "false"]
    for meta in field.metadata:
        pattern = getattr(meta, "pattern", None)
        if pattern and (closed := re.fullmatch(r"\^\(([\w|]+)\)\$", pattern)):
            return closed.group(1).split("|")
    return None


def bounds(field: FieldInfo) -> str:
    """The bounds cell: the accepted values, the numeric limits, or what kind of value (path, text)."""
    if (values := choices(field)) is not None:
        return ", ".join(f"`{v}`" for v in values)
    limits = [
        f"`{sign} {number(getattr(meta, key))}`"
        for key, sign in BOUND_SIGNS
        for meta in field.metadata
        if hasattr(meta, key)
    ]
    if limits:
        return ", ".join(limits)
    return "a path" if "Path" in str(field.annotation) else "text"


def default(field: FieldInfo) -> str | None:
    """The default cell, or ``None`` when the field has none of its own (the page says what applies then)."""
    value = field.default
    if value is None:
        return None
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{number(value) if isinstance(value, int | float) else value}`"


def settings_table(text: str) -> dict[str, list[str]]:
    """The rows of the page's settings table: variable -> its other cells."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith(f"| `{ENV_PREFIX}"):
            rows[cells[0].strip("`")] = cells[1:]
    return rows


def mismatches(text: str) -> list[str]:
    """What the page's settings table gets wrong about the settings class, one sentence each."""
    rows = settings_table(text)
    expected = {f"{ENV_PREFIX}{name.upper()}": field for name, field in KitSettings.model_fields.items()}
    if sorted(rows) != sorted(expected):
        return [f"the table's variables are not the settings class's fields: {sorted(set(rows) ^ set(expected))}"]
    found = []
    for variable, field in expected.items():
        shown_default, shown_bounds, meaning = rows[variable]
        row = f"| `{variable}` | {default(field) or '(what applies)'} | {bounds(field)} | ... |"
        if shown_bounds != bounds(field) or (default(field) is not None and shown_default != default(field)):
            found.append(f"write the row as {row}")
        elif not shown_default:
            found.append(f"{variable}: say what applies when it is unset")
        elif not meaning:
            found.append(f"{variable}: say what it means")
    return found


def test_every_setting_is_in_the_configuration_page_with_its_default_and_bounds() -> None:
    text = CONFIGURATION.read_text()
    assert "| variable | default | bounds | meaning |" in text
    assert mismatches(text) == []


def test_the_table_check_sees_a_wrong_default() -> None:
    wrong = CONFIGURATION.read_text().replace("| `500` |", "| `250` |", 1)
    assert [m for m in mismatches(wrong) if f"{ENV_PREFIX}POLL_INTERVAL_MS" in m] == [
        f"write the row as | `{ENV_PREFIX}POLL_INTERVAL_MS` | `500` | `>= 50`, `<= 60000` | ... |"
    ]
    assert len(mismatches(wrong)) == 1
    assert bounds(KitSettings.model_fields["log_format"]) == "`text`, `json`"
    assert default(KitSettings.model_fields["preload_imports"]) == "`true`"


def test_every_page_of_the_nav_exists_and_the_readme_is_the_door() -> None:
    config = yaml.load((REPO / "mkdocs.yml").read_text(), MkDocsLoader)
    pages = [next(iter(entry.values())) for entry in config["nav"]]
    assert all((DOCS / page).is_file() for page in pages), pages
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    for page in pages:
        if page != "index.md":
            assert f"(docs/{page})" in readme, f"the README links {page}"
