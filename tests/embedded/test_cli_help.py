"""`abtest --help` explains every option with its default, and `--version` answers."""

from __future__ import annotations

import argparse
from importlib.metadata import version

import pytest

from abtest.cli import _parser, main


def _commands() -> dict[str, argparse.ArgumentParser]:
    (subparsers,) = (a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(subparsers.choices)


def test_version_prints_the_installed_version(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"abtest {version('abtest')}"


@pytest.mark.parametrize("command", sorted(_commands()))
def test_every_option_has_a_description_and_its_default(command: str, capsys) -> None:
    parser = _commands()[command]
    with pytest.raises(SystemExit):
        main([command, "--help"])
    shown = "".join(capsys.readouterr().out.split())  # argparse wraps lines (even at hyphens)
    assert parser.description and "".join(parser.description.split()) in shown
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{command} {action.dest}: no description"
        if action.default not in (None, False):
            assert f"(default:{action.default})" in shown, f"{command} {action.dest}"
