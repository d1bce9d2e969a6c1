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
        if action.default is not None and action.default is not False:  # 0 == False: shown
            assert f"(default:{action.default})" in shown, f"{command} {action.dest}"


SERVE = ["serve", "--config", "endpoints.toml"]
SIMULATE = ["simulate", "--url", "http://127.0.0.1:1", "--endpoint", "e"]
EVALUATE = ["evaluate", "--endpoint", "e", "--data-dir", "data"]


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        ([*SERVE, "--port", "99999"], "--port"),
        ([*SERVE, "--port", "-1"], "--port"),
        ([*SERVE, "--workers", "0"], "--workers"),
        (["dashboard", "--url", "http://127.0.0.1:1", "--port", "65536"], "--port"),
        (["demo", "--users", "0"], "--users"),
        ([*SIMULATE, "--users", "-5"], "--users"),
        ([*SIMULATE, "--batch-size", "0"], "--batch-size"),
        ([*SIMULATE, "--wait", "nan"], "--wait"),
        ([*SIMULATE, "--wait", "-1"], "--wait"),
        ([*EVALUATE, "--batch-size", "two"], "--batch-size"),
        (["redrive", "events", "--queue-url", "q", "--settle", "inf"], "--settle"),
    ],
)
def test_a_number_out_of_range_is_a_usage_error_naming_its_option(
    argv: list[str], option: str, capsys
) -> None:
    # Before anything runs: no traceback, no connection, no file written.
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: must be" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["simulate", "--url", "http://127.0.0.1:9", "--endpoint", "e", "--truth", "A=0.1"],
        ["evaluate", "--endpoint", "e", "--data-dir", "."],
        ["demo"],
    ],
    ids=["simulate", "evaluate", "demo"],
)
def test_an_out_that_cannot_be_a_folder_is_said_before_any_work(
    argv: list[str], tmp_path, capsys
) -> None:
    # It was `abtest: [Errno 17] File exists: 'results'`, naming no option, and for
    # simulate and evaluate only once the users were served (and counted) or the log
    # read: their results lost.
    taken = tmp_path / "results"
    taken.write_text("")

    code = main([*argv, "--no-progress", "--out", str(taken / "run")])

    err = capsys.readouterr().err
    assert (code, err) == (2, f"abtest: config error: --out {taken}/run: {taken} is not a folder\n")
