"""The README's lists and defaults, held to the code they describe, so neither drifts alone.

Each check reads one README list (the command synopses, the endpoint config table, the
event log's fields, the dependencies, the layout) and compares it with the declaration it
documents: a new option, key, field, dependency or module fails here until it is written
down, and a changed default until the README says the new one.
"""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path
from typing import Any, Protocol

import pytest
from pydantic import BaseModel

import abtest.history
import abtest.ports
from abtest.cli import _parser
from abtest.embedded.config import EndpointSection, EventLogSettings, VariantSpec
from abtest.events import ASSIGNMENT_KINDS, EVENT_TYPES
from abtest.http.routes import ADMIN_ROUTE_NAMES
from bandit.registry import STRATEGIES

REPO = Path(__file__).resolve().parents[1]
_SUBPACKAGES = ("usecases", "http", "adapters", "embedded", "demo")
README = (REPO / "README.md").read_text()
# A synopsis value that stands for what the user gives (`FILE`, `R`, `<id>`, `NAME ...`)
# rather than the option's default.
_PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_=.:,-]*$|<|\.\.\.")


def _section(heading: str) -> str:
    """The README's text under `heading` up to the next heading of the same or a higher level."""
    level = heading.split(" ", 1)[0]
    body = README.split(f"\n{heading}\n", 1)[1]
    ends = [m.start() for m in re.finditer(rf"^#{{1,{len(level)}}} ", body, re.M)]
    return body[: ends[0]] if ends else body


def _table(text: str) -> list[list[str]]:
    """The cells of the first Markdown table in `text`, header and rule left out."""
    rows = [line for line in text.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows[2:]]


def _ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def _commands() -> dict[str, argparse.ArgumentParser]:
    (subparsers,) = (a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(subparsers.choices)


def _synopses() -> dict[str, str]:
    """Per subcommand, its usage lines in the README's code blocks (`abtest NAME ...` and the
    indented lines that continue it), comments left out."""
    found: dict[str, str] = {}
    for block in re.findall(r"```[a-z]*\n(.*?)```", README, re.S):
        name = None
        for line in block.splitlines():
            code = line.split("  #", 1)[0].rstrip(" \\")
            if code.startswith("abtest "):
                name = code.split()[1]
                found[name] = found.get(name, "") + " " + code
            elif name and line.startswith(" "):
                found[name] += " " + code
            else:
                name = None
    return found


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in parser._actions for s in a.option_strings if s.startswith("--")}


@pytest.mark.parametrize("command", sorted(_commands()))
def test_every_command_has_a_synopsis_naming_exactly_its_options(command: str) -> None:
    synopsis = _synopses().get(command)
    assert synopsis, f"abtest {command}: no usage line in the README"
    options = set(_options(_commands()[command])) - {"--help"}
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", synopsis))
    assert options - named == set(), f"abtest {command}: options the README does not name"
    assert named - options == set(), f"abtest {command}: options it no longer has"


@pytest.mark.parametrize("command", sorted(_commands()))
def test_the_values_a_synopsis_shows_are_the_defaults_and_choices(command: str) -> None:
    synopsis = _synopses()[command]
    options = _options(_commands()[command])
    for option, value in re.findall(r"\[(--[a-z-]+) ([^]|]+)\]", synopsis):
        if _PLACEHOLDER.search(value):
            continue
        default = options[option].default
        shown: Any = type(default)(value) if isinstance(default, int | float | Path) else value
        assert shown == default, f"abtest {command} {option}: README {value}, code {default}"
    for option, values in re.findall(r"\[(--[a-z-]+) ([\w-]+(?:\|[\w-]+)+)\]", synopsis):
        assert values.split("|") == list(options[option].choices), f"abtest {command} {option}"


def test_the_version_option_is_documented() -> None:
    assert "abtest --version" in _synopses().get("--version", "")


def test_the_dashboard_names_every_admin_route_it_forwards() -> None:
    """`abtest dashboard` forwards every admin route: the README and its help say which."""
    listed = README.split("admin requests (", 1)[1].split(")", 1)[0]
    assert [name.removeprefix("/admin/") for name in _ticked(listed)] == list(ADMIN_ROUTE_NAMES)
    described = _commands()["dashboard"].description.split("admin requests (", 1)[1]
    assert described.split(")", 1)[0].split(", ") == list(ADMIN_ROUTE_NAMES)


def _documented_default(cell: str) -> Any:
    """`30` -> 30, `"binary"` -> "binary", `TopTwoThompson` -> "TopTwoThompson"; none -> None."""
    if cell.startswith("none"):
        return None
    token = _ticked(cell)[0]
    try:
        return tomllib.loads(f"value = {token}")["value"]
    except tomllib.TOMLDecodeError:
        return token


def test_the_endpoint_config_table_has_every_key_at_its_default() -> None:
    tables: dict[str, type[BaseModel]] = {
        "[endpoint]": EndpointSection,
        "[event_log]": EventLogSettings,
        "[[variants]]": VariantSpec,
    }
    documented: dict[type[BaseModel], set[str]] = {model: set() for model in tables.values()}
    model: type[BaseModel] = EndpointSection
    for key_cell, default_cell, *_ in _table(_section("### Endpoint config (TOML)")):
        *table, key = _ticked(key_cell)[0].split()
        model = tables[table[0]] if table else model
        documented[model].add(key)
        field = model.model_fields[key]  # a KeyError is a key the code does not have
        if field.is_required():
            assert default_cell == "required", key
        elif field.default_factory is None:  # strategy_params: each parameter's own default
            assert _documented_default(default_cell) == field.default, key
    for model, keys in documented.items():
        assert keys == set(model.model_fields), f"{model.__name__}: keys the table misses"


def test_the_event_log_table_lists_every_field_of_each_event() -> None:
    rows = _table(_section("### The event log's format"))
    for event_type in EVENT_TYPES:
        fields = {"type", *(field.name for field in event_type.fields)}
        listed = {
            name
            for names, events, _ in rows
            if events in ("both", event_type.name)
            for name in _ticked(names)
        }
        assert listed == fields, event_type.name
    (assignment,) = (meaning for names, _, meaning in rows if names == "`assignment`")
    assert all(f"`{kind}`" in assignment for kind in ASSIGNMENT_KINDS)


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\[<>=!~ ]", requirement, maxsplit=1)[0].lower()


def test_the_dependency_table_is_pyproject_with_each_extra() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {(_requirement_name(r), "core") for r in project["dependencies"]}
    for extra, requirements in project["optional-dependencies"].items():
        declared |= {
            (_requirement_name(r), extra) for r in requirements if not r.startswith("abtest[")
        }
    documented = {
        (package.strip(), extra)
        for packages, extra, _ in _table(_section("## Dependencies, and why each is there"))
        if extra != "-"  # the npm CLI, pinned in package.json
        for package in packages.split(",")
    }
    assert documented == declared


def test_the_layout_names_every_module() -> None:
    words = set(re.findall(r"[\w-]+", _section("## Layout")))
    # bandit's strategies are "one module each": the registry names them.
    strategies = {f"bandit/{cls.__module__.rsplit('.', 1)[1]}.py" for cls in STRATEGIES.values()}
    for package in ("abtest", *(f"abtest/{p}" for p in _SUBPACKAGES), "bandit", "lambdas"):
        for module in sorted((REPO / package).glob("*.py")):
            if module.stem == "__init__" or f"{package}/{module.name}" in strategies:
                continue
            assert module.stem in words, f"{package}/{module.name}: not in the README's layout"


def test_the_architecture_names_every_port() -> None:
    architecture = _section("## Architecture")
    for module in (abtest.ports, abtest.history):
        ports = [
            name
            for name, value in vars(module).items()
            if isinstance(value, type)
            and value.__module__ == module.__name__
            and Protocol in value.__mro__
        ]
        for name in ports:
            assert re.search(rf"\b{name}\b", architecture), f"{module.__name__}.{name}"
