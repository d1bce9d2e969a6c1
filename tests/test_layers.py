"""The rings: every import points inward (README, "Architecture"), and bandit stays pure."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Ring of each package prefix, innermost first; a module may import its own ring or inner.
RINGS = (
    ("bandit", 0),
    ("abtest.adapters", 2),
    ("abtest.http", 3),
    ("abtest.embedded", 4),
    ("abtest.demo", 4),
    ("abtest.cli", 4),
    ("lambdas", 4),
    ("infra", 4),
    ("abtest", 1),  # the core: the top-level modules and abtest.usecases
)


def ring(module: str) -> int | None:
    for prefix, number in RINGS:
        if module == prefix or module.startswith(prefix + "."):
            return number
    return None  # the standard library or a third-party package


def modules() -> list[tuple[str, Path]]:
    found = []
    for package in ("bandit", "abtest", "lambdas", "infra"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found.append((name, path))
    return found


def imports(path: Path) -> set[str]:
    """Every module imported, at the top or inside a function (lazy imports count too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize(("module", "path"), modules(), ids=[m for m, _ in modules()])
def test_no_import_runs_back_up_a_ring(module: str, path: Path) -> None:
    mine = ring(module)
    outward = sorted(
        name for name in imports(path) if (theirs := ring(name)) is not None and theirs > mine
    )
    assert outward == [], f"{module} (ring {mine}) imports outer rings: {outward}"


def test_the_rings_are_what_the_readme_says() -> None:
    # Sanity of the table itself: the core is neither an adapter nor an entry point.
    assert ring("abtest.usecases.invoke") == ring("abtest.events") == 1
    assert ring("abtest.adapters.sqlite") == 2 and ring("abtest.http.routes") == 3
    assert ring("lambdas.wiring") == ring("abtest.embedded.wiring") == 4
