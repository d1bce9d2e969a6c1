"""`abtest simulate` against an endpoint of the user's own: three variants, their truth given.

The endpoint's config and its models (`churn_models.py`, next to the config, not on the
import path) are written here, as a user would; no code of abtest changes for them.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from abtest.cli import main
from abtest.demo.simulation import read_csv
from abtest.demo.worlds import Bernoulli, BetaReward, load_scenario, parse_truth
from abtest.embedded.config import load_config
from abtest.embedded.server import EmbeddedServer
from abtest.embedded.wiring import Runtime
from abtest.errors import ConfigError
from tests.embedded.helpers import logged_events

ENDPOINT = "churn-offers"
VARIANTS = ("Baseline", "Tuned", "Deep")
CONFIG = f"""\
[endpoint]
name = "{ENDPOINT}"
strategy = "ThompsonSampling"
warmup = 10

[event_log]
buffer_interval_seconds = 0.2

[[variants]]
name = "Baseline"
model = "churn_models:baseline"

[[variants]]
name = "Tuned"
model = "churn_models:tuned"

[[variants]]
name = "Deep"
model = "churn_models:deep"
"""
MODELS = """\
import json

def _offer(data, content_type, discount):
    return {"customer": json.loads(data).get("customer"), "discount": discount}

def baseline(data, content_type):
    return _offer(data, content_type, 0)

def tuned(data, content_type):
    return _offer(data, content_type, 5)

def deep(data, content_type):
    return _offer(data, content_type, 10)
"""
REWARDS = """\
def reward(user_id, response):
    return 1.0 if response["predictions"]["discount"] == 10 else 0.0
"""


@pytest.fixture(scope="module")
def churn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """The user's own endpoint, its models in a module next to its config."""
    folder = tmp_path_factory.mktemp("churn")
    (folder / "churn_models.py").write_text(MODELS)
    config = folder / "churn.toml"
    config.write_text(CONFIG)
    runtime = Runtime(load_config(config), folder / "data", rng=random.Random(3))
    with EmbeddedServer(runtime) as server:
        yield server


def _simulate(server_url: str, out: Path, *options: str) -> int:
    return main(
        ["simulate", "--url", server_url, "--endpoint", ENDPOINT, "--out", str(out),
         "--no-progress", *options]
    )  # fmt: skip


@pytest.mark.slow  # 150 users over HTTP, then the plots
def test_three_variants_with_their_truth_on_the_command_line(churn, tmp_path, capsys) -> None:
    # GIVEN the user's endpoint with three variants, WHEN 100 users play the given truth
    # and their events are delivered (--wait), then 50 more
    truth = ("--truth", "Baseline=0.05", "--truth", "Tuned=0.3", "--truth", "Deep=0.9")
    data = ("--data", '{"customer": "c-1"}')
    first, then = tmp_path / "first", tmp_path / "then"
    assert _simulate(churn.url, first, "--users", "100", "--wait", "10", *truth, *data) == 0
    capsys.readouterr()
    assert _simulate(churn.url, then, "--users", "50", "--wait", "10", *truth, *data) == 0
    printed = capsys.readouterr().out
    rows = read_csv(first / "results.csv") + read_csv(then / "results.csv")
    assert (then / "regret.png").is_file()  # the truth is known: regret against the oracle
    # THEN the users reached all three variants, and once the first 100 were counted the
    # bandit sent most new users to the best truth (however fast the users came: the
    # first run waits for its events to be counted)
    assert {r.variant for r in rows} == set(VARIANTS)
    last = rows[100:]
    assert sum(r.variant == "Deep" for r in last) > len(last) / 2
    # AND the final /stats table counts every user, per variant, as the clients saw them
    table = {line.split()[0]: line.split() for line in printed.splitlines()}
    for variant in VARIANTS:
        mine = [r for r in rows if r.variant == variant]
        assert int(table[variant][1]) == len(mine)  # invocations
        assert int(table[variant][2]) == sum(r.reward > 0 for r in mine)  # conversions
    assert "note:" not in printed  # fresh users: none was assigned before


@pytest.mark.slow  # a run with its plots
def test_a_scenario_file_with_a_reward_function_next_to_it(churn, tmp_path) -> None:
    # GIVEN a scenario whose reward function lives next to it (not on the import path)
    (tmp_path / "churn_rewards.py").write_text(REWARDS)
    scenario = tmp_path / "churn.toml"
    scenario.write_text('reward_function = "churn_rewards:reward"\ndata = { customer = "c-9" }\n')
    # WHEN 30 users play it
    assert _simulate(churn.url, tmp_path / "run", "--users", "30", "--scenario", str(scenario)) == 0
    # THEN each reward is the function's verdict on the answer
    rows = read_csv(tmp_path / "run" / "results.csv")
    assert [r.reward for r in rows] == [float(r.variant == "Deep") for r in rows]


@pytest.mark.slow  # four runs, each drawing its plots
def test_each_run_has_new_users_unless_a_seed_repeats_one(churn, tmp_path, capsys) -> None:
    truth = ["--truth", "Baseline=0.1", "--truth", "Tuned=0.1", "--truth", "Deep=0.1"]
    # GIVEN two runs without --seed: the second one's users are new too
    for run in ("a", "b"):
        assert _simulate(churn.url, tmp_path / run, "--users", "10", *truth) == 0
    first, second = (read_csv(tmp_path / run / "results.csv") for run in ("a", "b"))
    assert {r.assignment for r in second} == {"new"}
    assert not {r.user_id for r in first} & {r.user_id for r in second}
    assert "note:" not in capsys.readouterr().out
    # WHEN a seed is given twice, THEN the second run's users are the first's, and it says so
    for run in ("c", "d"):
        assert _simulate(churn.url, tmp_path / run, "--users", "10", "--seed", "41", *truth) == 0
    repeated = read_csv(tmp_path / "d" / "results.csv")
    assert {r.assignment for r in repeated} == {"existing"}
    assert "note: 10 of 10 users already had a variant" in capsys.readouterr().out


STOPPER = """\
import itertools

_CALLS = itertools.count(1)


def reward(user_id, response):
    if next(_CALLS) == 5:
        raise KeyboardInterrupt  # Ctrl-C, as the fifth user's answer comes back
    return 1.0
"""


def test_ctrl_c_keeps_the_results_of_the_users_served_so_far(
    churn, tmp_path, capsys, monkeypatch
) -> None:
    # Ctrl-C ended the run with nothing written and nothing said: the users it had served
    # (and the endpoint counted) were lost to the report.
    (tmp_path / "ctrl_c_rewards.py").write_text(STOPPER)
    monkeypatch.chdir(tmp_path)

    code = _simulate(churn.url, tmp_path / "run", "--users", "50", "--seed", "29",
                     "--reward-function", "ctrl_c_rewards:reward")  # fmt: skip

    out, err = capsys.readouterr()
    assert code == 130
    assert err == "abtest: interrupted after 4 of 50 users; the results above are theirs\n"
    rows = read_csv(tmp_path / "run" / "results.csv")
    assert [r.user_id for r in rows] == [f"sim29-{n}" for n in range(4)]
    assert f"results: {tmp_path / 'run' / 'results.csv'}" in out


def test_an_api_that_fails_mid_run_keeps_the_results_of_the_users_served_so_far(
    tmp_path, capsys
) -> None:
    # A failure after some users lost them all: a traceback-free line, but no results.csv,
    # no plots, no /stats table for the users the endpoint had served and counted.
    failing = (
        "_CALLS = iter(range(10**6))\n\n"
        "def tired(data, content_type):\n"
        "    if next(_CALLS) >= 6:\n"
        "        raise RuntimeError('out of memory')\n"
        "    return {'discount': 0}\n"
    )
    (tmp_path / "tired_models.py").write_text(failing)  # its own name: one module a process
    only = CONFIG.split("[[variants]]")[0]
    config = only + '[[variants]]\nname = "Baseline"\nmodel = "tired_models:tired"\n'
    (tmp_path / "churn.toml").write_text(config)
    runtime = Runtime(load_config(tmp_path / "churn.toml"), tmp_path / "data")
    with EmbeddedServer(runtime) as server:
        code = _simulate(server.url, tmp_path / "run", "--users", "50", "--seed", "31",
                         "--truth", "Baseline=0.5")  # fmt: skip

    out, err = capsys.readouterr()
    assert code == 1
    assert err.startswith("abtest: the API failed after 6 of 50 users (HTTP 502: ")
    assert err.rstrip().endswith("; the results above are theirs") and err.count("\n") == 1
    rows = read_csv(tmp_path / "run" / "results.csv")
    assert [r.user_id for r in rows] == [f"sim31-{n}" for n in range(6)]
    assert f"endpoint {ENDPOINT}:" in out and "Baseline" in out  # the /stats table


def test_nothing_listening_is_one_clear_line(tmp_path, capsys) -> None:
    with socket.socket() as probe:  # a port nothing listens on once it is closed
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    assert _simulate(url, tmp_path / "run", "--truth", "A=0.1") == 1
    error = capsys.readouterr().err
    assert error.startswith(f"abtest: nothing answers at {url}: ")
    assert "abtest serve" in error and error.count("\n") == 1  # one line, no traceback


def test_an_unknown_endpoint_is_one_clear_line(churn, tmp_path, capsys) -> None:
    code = main(
        ["simulate", "--url", churn.url, "--endpoint", "churn-ofers", "--truth", "A=0.1",
         "--out", str(tmp_path), "--no-progress"]
    )  # fmt: skip
    error = capsys.readouterr().err
    assert code == 1
    assert error.startswith(f"abtest: endpoint 'churn-ofers' is not served at {churn.url}")
    assert error.count("\n") == 1


def test_the_demo_s_world_on_another_endpoint_is_one_clear_line(churn, tmp_path, capsys) -> None:
    code = _simulate(churn.url, tmp_path / "run", "--users", "30", "--seed", "8")
    error = capsys.readouterr().err
    assert code == 1
    assert error.startswith("abtest: ") and error.count("\n") == 1
    assert "the reviews scenario needs the demo's models" in error


def test_a_url_with_a_wrong_path_is_not_said_to_lack_the_endpoint(churn, tmp_path, capsys):
    # It said "endpoint 'churn-offers' is not served at .../stats", which it is.
    code = _simulate(f"{churn.url}/stats", tmp_path / "run", "--truth", "Baseline=0.1")

    error = capsys.readouterr().err
    assert (code, error.count("\n")) == (1, 1)
    assert error.startswith("abtest: the API refused a request: HTTP 404: ")
    assert "no route POST /stats/stats" in error


def test_a_server_that_needs_a_token_is_one_line_saying_how_to_give_it(tmp_path, capsys):
    # It printed the 401 alone, naming no option.
    (tmp_path / "churn_models.py").write_text(MODELS)
    (tmp_path / "churn.toml").write_text(CONFIG)
    runtime = Runtime(load_config(tmp_path / "churn.toml"), tmp_path / "data")
    with EmbeddedServer(runtime, token="s3cret") as server:
        code = _simulate(server.url, tmp_path / "run", "--truth", "Baseline=0.1")

    error = capsys.readouterr().err
    assert (code, error.count("\n")) == (1, 1)
    assert error.startswith("abtest: the API refused a request: HTTP 401: ")
    assert error.rstrip().endswith(
        "give --auth token (with --token or ABTEST_TOKEN) for an `abtest serve --token`, "
        "--auth api-key or --auth iam for a deployed API"
    )


@pytest.mark.parametrize(
    ("truth", "message"),
    [
        (
            "[truth]\nBaseline = 0.1\nTuned = 0.1\n",
            "s.toml: truth: none for 'Deep', which new users of 'churn-offers' get; "
            "give one for each variant",
        ),
        (
            "--truth Baseline=0.1 --truth Tuned=0.1 --truth Deep=0.2 --truth Dep=0.9",
            "--truth: 'Dep': not a variant of 'churn-offers' (variants: Baseline, Tuned, Deep)",
        ),
    ],
    ids=["a variant without truth", "a truth for no variant"],
)
def test_a_truth_that_does_not_fit_the_endpoint_stops_before_the_first_user(
    churn, tmp_path, capsys, truth, message
) -> None:
    # A variant without truth was found only when it answered, after users were served
    # (and counted); a truth for no variant was taken, its mean the regret plot's best.
    if truth.startswith("["):
        (tmp_path / "s.toml").write_text(truth)
        options = ["--scenario", str(tmp_path / "s.toml")]
    else:
        options = truth.split()

    code = _simulate(churn.url, tmp_path / "run", "--users", "30", "--seed", "19", *options)

    error = capsys.readouterr().err
    assert (code, error.count("\n")) == (2, 1)
    assert error.startswith("abtest: config error: ") and error.rstrip().endswith(message)
    logged = logged_events(churn.runtime.data_dir)
    assert not [e for e in logged if e["user_id"].startswith("sim19-")]
    assert not (tmp_path / "run").exists()


def test_truth_on_the_command_line_parses_rates_and_beta_rewards() -> None:
    assert parse_truth(["A=0.25", "B=beta:2,8"]) == {"A": Bernoulli(0.25), "B": BetaReward(2, 8)}
    for bad, reason in [
        ("A=1.5", "--truth A: a conversion rate must be in [0, 1], got 1.5"),
        ("A=beta:2", "--truth A: beta must be two positive numbers"),
        ("A", "expected VARIANT=RATE or VARIANT=beta:A,B"),
    ]:
        with pytest.raises(ConfigError, match=reason.replace("[", r"\[").replace("]", r"\]")):
            parse_truth([bad])


def test_a_scenario_file_names_its_bad_key(tmp_path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text("[truth]\nA = 0.1\nB = { beta = [2, 0] }\n")
    with pytest.raises(ConfigError, match=r"s.toml: truth.B: beta must be two positive numbers"):
        load_scenario(scenario)
    scenario.write_text("[truths]\nA = 0.1\n")
    with pytest.raises(ConfigError, match=r"truths: unknown key \(known: content_type, data, "):
        load_scenario(scenario)
    scenario.write_text('data = "x"\n[truth]\nA = 0.5\nB = { beta = [2, 8] }\n')
    world = load_scenario(scenario)
    assert (world.truth, world.data) == ({"A": Bernoulli(0.5), "B": BetaReward(2, 8)}, "x")
