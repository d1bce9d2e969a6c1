"""The endpoint config file: good files load, bad ones fail at start naming file, key and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from abtest.config_types import ExperimentSettings
from abtest.demo import DEMO_CONFIG
from abtest.embedded.config import load_config
from abtest.errors import ConfigError
from abtest.records import VariantConfig
from tests.embedded.helpers import write_config

REPO = Path(__file__).resolve().parents[2]

GOOD = """
[endpoint]
name = "reviews-helpfulness"
strategy = "EpsilonGreedy"
epsilon = 0.2
warmup = 10

[event_log]
buffer_interval_seconds = 5
buffer_size_bytes = 4096

[[variants]]
name = "Champion1"
initial_weight = 3
model = "abtest.demo.reviews:champion"

[[variants]]
name = "Challenger1"
initial_weight = 1.0
model = "http://127.0.0.1:9000/invocations"
"""


def test_a_good_file_loads_with_its_values(tmp_path: Path) -> None:
    path = tmp_path / "endpoint.toml"
    path.write_text(GOOD)
    config = load_config(path)
    endpoint = config.endpoint
    assert (
        endpoint.endpoint_name,
        endpoint.strategy,
        endpoint.strategy_params,
        endpoint.warmup,
    ) == (
        "reviews-helpfulness",
        "EpsilonGreedy",
        {"epsilon": 0.2, "floor": 0.01},
        10,
    )
    assert (config.event_log.buffer_interval_seconds, config.event_log.buffer_size_bytes) == (
        5,
        4096,
    )
    assert [(v.name, v.initial_weight, v.is_url) for v in endpoint.variants] == [
        ("Champion1", 3.0, False),
        ("Challenger1", 1.0, True),
    ]
    described = endpoint.endpoint_config()
    assert described.variants == (
        VariantConfig("Champion1", 3.0),
        VariantConfig("Challenger1", 1.0),
    )
    assert described.strategy == "EpsilonGreedy"


def test_omitted_keys_take_the_documented_defaults(tmp_path: Path) -> None:
    path = tmp_path / "endpoint.toml"
    path.write_text('[endpoint]\nname = "e1"\n[[variants]]\nname = "A"\nmodel = "m:f"\n')
    config = load_config(path)
    endpoint = config.endpoint
    assert (endpoint.strategy, endpoint.strategy_params, endpoint.warmup) == (
        "TopTwoThompson",
        {"beta": 0.9, "floor": 0.01},
        0,
    )
    assert config.event_log.buffer_interval_seconds == 60
    assert config.event_log.buffer_size_bytes == 1024 * 1024
    assert endpoint.variants[0].initial_weight == 1.0
    assert endpoint.assignment_ttl_seconds == 90 * 24 * 3600
    assert endpoint.endpoint_config().settings == ExperimentSettings(
        reward="binary", unit="user", attribution_window_seconds=7 * 24 * 3600
    )


def test_the_experiment_settings_reach_the_endpoint_record(tmp_path: Path) -> None:
    path = tmp_path / "endpoint.toml"
    path.write_text(
        '[endpoint]\nname = "e1"\nreward = "continuous"\nunit = "invocation"\n'
        'attribution_window_seconds = 3600\n[[variants]]\nname = "A"\nmodel = "m:f"\n'
    )
    assert load_config(path).endpoint.endpoint_config().settings == ExperimentSettings(
        reward="continuous", unit="invocation", attribution_window_seconds=3600
    )


def test_the_shipped_example_and_the_demo_config_load(tmp_path: Path) -> None:
    example = load_config(REPO / "abtest" / "demo" / "reviews.toml")
    demo_path = tmp_path / "demo.toml"
    demo_path.write_text(DEMO_CONFIG)
    demo = load_config(demo_path)
    # the demo is the example with a shorter seal interval
    assert example.endpoint.endpoint_config() == demo.endpoint.endpoint_config()
    assert demo.event_log.buffer_interval_seconds < example.event_log.buffer_interval_seconds


@pytest.mark.parametrize(
    ("replace", "by", "key", "reason"),
    [
        (
            'strategy = "EpsilonGreedy"',
            'strategy = "Greedy"',
            "endpoint.strategy",
            "unknown strategy",
        ),
        ("epsilon = 0.2", "epsilon = 1.5", "endpoint.epsilon", "must be in [0, 1], got 1.5"),
        ("epsilon = 0.2", "epsilon = true", "endpoint.epsilon", "valid number"),
        (
            "epsilon = 0.2",
            "strategy_params = { epsilon = -1 }",
            "endpoint.strategy_params.epsilon",
            "must be in [0, 1], got -1",
        ),
        (
            "epsilon = 0.2",
            "strategy_params = { epsilon = 0.2, beta = 0.5 }",
            "endpoint.strategy_params.beta",
            "not a parameter of EpsilonGreedy",
        ),
        (
            "epsilon = 0.2",
            "epsilon = 0.2\nstrategy_params = { epsilon = 0.3 }",
            "endpoint.strategy_params.epsilon",
            "given twice",
        ),
        ("warmup = 10", "warmup = -1", "endpoint.warmup", "greater than or equal to 0, got -1"),
        ("warmup = 10", 'warmup = "ten"', "endpoint.warmup", "valid integer, got 'ten'"),
        ("warmup = 10", 'warmup = 10\nreward = "revenue"', "endpoint.reward", "'binary' or"),
        ("warmup = 10", 'warmup = 10\nunit = "session"', "endpoint.unit", "'user' or"),
        (
            "warmup = 10",
            "warmup = 10\nattribution_window_seconds = 0",
            "endpoint.attribution_window_seconds",
            "greater than 0",
        ),
        ('name = "reviews-helpfulness"', 'name = "reviews helpfulness"', "endpoint.name", "name"),
        (
            "buffer_interval_seconds = 5",
            "buffer_interval_seconds = 0",
            "event_log.buffer_interval_seconds",
            "greater than 0",
        ),
        (
            "buffer_size_bytes = 4096",
            "buffer_size_bytes = 1.5",
            "event_log.buffer_size_bytes",
            "valid integer",
        ),
        (
            "initial_weight = 3",
            "initial_weight = -3",
            "variants[0].initial_weight",
            "greater than or equal to 0",
        ),
        (
            'model = "abtest.demo.reviews:champion"',
            'model = "champion"',
            "variants[0].model",
            "neither",
        ),
        (
            'model = "abtest.demo.reviews:champion"',
            'model = "http://127.0.0.1:port/"',
            "variants[0].model",
            "is not a URL: Invalid port",
        ),
        ('name = "Challenger1"', 'name = "Champion1"', "variants[1].name", "used by another"),
        (
            "warmup = 10",
            "warmup = 10\nwarm_up = 5",
            "endpoint.warm_up",
            "unknown key (known: assignment_ttl_seconds, attribution_window_seconds, "
            "auto_conclude, epsilon, max_error_rate, max_latency_p99_ms, model_timeout_seconds, "
            "name, planned_sample_size, reward, strategy, strategy_params, unit, warmup)",
        ),
        ("[event_log]", "[eventlog]", "eventlog", "unknown key (known: endpoint, event_log"),
        (
            "warmup = 10",
            "warmup = 10\nmax_error_rate = 1.5",
            "endpoint.max_error_rate",
            "Input should be less than 1",
        ),
        (
            "warmup = 10",
            "warmup = 10\nmax_latency_p99_ms = 0",
            "endpoint.max_latency_p99_ms",
            "Input should be greater than 0",
        ),
        (
            'model = "http',
            'mdoel = "http',
            "variants[1].model",
            "missing; variants[1].mdoel: unknown key (known: initial_weight, inline, model, name)",
        ),
        ('name = "Champion1"', "name = 3", "variants[0].name", "valid string, got 3"),
    ],
)
def test_a_bad_value_names_the_file_the_key_and_the_reason(
    tmp_path: Path, replace: str, by: str, key: str, reason: str
) -> None:
    assert replace in GOOD
    path = tmp_path / "endpoint.toml"
    path.write_text(GOOD.replace(replace, by, 1))
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: {key}: ")
    assert reason in message


@pytest.mark.parametrize(
    ("lines", "strategy", "params"),
    [
        (
            'strategy = "EpsilonGreedy"\nstrategy_params = { epsilon = 0.3 }',
            "EpsilonGreedy",
            {"epsilon": 0.3, "floor": 0.01},
        ),
        (
            'strategy = "EpsilonGreedy"\nepsilon = 0.3',
            "EpsilonGreedy",
            {"epsilon": 0.3, "floor": 0.01},
        ),
        ('strategy = "EpsilonGreedy"', "EpsilonGreedy", {"epsilon": 0.1, "floor": 0.01}),
        ('strategy = "ThompsonSampling"\nepsilon = 0.3', "ThompsonSampling", {"floor": 0.01}),
        (
            'strategy = "TopTwoThompson"\nstrategy_params = { beta = 0.75 }',
            "TopTwoThompson",
            {"beta": 0.75, "floor": 0.01},
        ),
        ('strategy = "TopTwoThompson"', "TopTwoThompson", {"beta": 0.9, "floor": 0.01}),
    ],
)
def test_strategy_params_and_the_older_epsilon_key_both_configure_the_strategy(
    tmp_path: Path, lines: str, strategy: str, params: dict
) -> None:
    path = tmp_path / "endpoint.toml"
    path.write_text(f'[endpoint]\nname = "e1"\n{lines}\n[[variants]]\nname = "A"\nmodel = "m:f"\n')
    endpoint = load_config(path).endpoint
    assert (endpoint.strategy, endpoint.strategy_params) == (strategy, params)
    assert endpoint.endpoint_config().strategy_params == params


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[endpoint\nname = 1", "not valid TOML"),
        ('[[variants]]\nname = "A"\nmodel = "m:f"\n', "endpoint: missing"),
        ('[endpoint]\nname = "e1"\n', "variants: missing"),
        (
            '[endpoint]\nname = "e1"\n[[variants]]\nname = "A"\nmodel = "m:f"\n'
            '[[endpoints]]\nname = "e2"\n',
            r"endpoint: beside \[\[endpoints\]\]; a file holds one endpoint \(\[endpoint\] and "
            r"\[\[variants\]\]\) or several",
        ),
        (
            '[endpoint]\nname = "e1"\n'
            '[[variants]]\nname = "A"\nmodel = "m:f"\ninitial_weight = 0\n',
            "all be 0",
        ),
    ],
)
def test_missing_tables_and_broken_toml_are_reported(
    tmp_path: Path, text: str, reason: str
) -> None:
    path = tmp_path / "endpoint.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=reason) as raised:
        load_config(path)
    assert str(path) in str(raised.value)


def test_a_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml")


def test_a_model_that_cannot_be_imported_fails_at_start(tmp_path: Path) -> None:
    from abtest.embedded.wiring import Runtime

    path = write_config(
        tmp_path,
        variants={"A": "abtest.demo.reviews:champion", "B": "abtest.demo.reviews:no_such_model"},
    )
    with pytest.raises(ConfigError) as raised:
        Runtime(path, tmp_path / "data")
    message = str(raised.value)
    assert str(path) in message
    assert "variants[1].model" in message
    assert "no_such_model" in message


@pytest.mark.parametrize("under", ["", "data"], ids=["the data dir", "a folder above it"])
def test_a_file_where_the_data_dir_goes_is_one_line_naming_it(
    tmp_path: Path, capsys, monkeypatch, under
) -> None:
    # It was "cannot create data dir: [Errno 17] File exists: '...'", which named no culprit.
    from abtest.cli import main

    blocker = tmp_path / "data"
    blocker.write_text("")
    data_dir = blocker / under if under else blocker

    code = main(["serve", "--config", str(write_config(tmp_path)), "--data-dir", str(data_dir)])

    assert code == 2
    assert capsys.readouterr().err == (
        f"abtest: config error: {data_dir}: cannot make the data dir: {blocker} is a file, "
        "not a folder\n"
    )


@pytest.mark.parametrize(
    ("variants", "options", "reason"),
    [
        ({"A": "abtest.demo.reviews:no_such_model"}, (), "variants[0].model"),
        (None, ("--host", "0.0.0.0"), "--host 0.0.0.0 is reachable from other machines"),
        # `--token "$TOKEN"` with TOKEN unset: taken as no token (on loopback, served so)
        (None, ("--host", "0.0.0.0", "--token", ""), "the token is empty; give a secret string"),
    ],
    ids=["a model that does not import", "a public host without a token", "an empty token"],
)
def test_serve_refused_at_start_leaves_no_data_dir_behind(
    tmp_path: Path, capsys, monkeypatch, variants, options, reason
) -> None:
    # A typo in the config (or a host needing a token) made an empty `abtest-data/` first.
    from abtest.cli import main

    monkeypatch.delenv("ABTEST_TOKEN", raising=False)
    config = write_config(tmp_path, variants=variants)
    data_dir = tmp_path / "data"

    code = main(["serve", "--config", str(config), "--data-dir", str(data_dir), *options])

    err = capsys.readouterr().err
    assert (code, err.count("\n")) == (2, 1)
    assert err.startswith("abtest: config error: ") and reason in err
    assert not data_dir.exists()


@pytest.mark.parametrize(
    ("extra", "params"),
    [
        ('reward = "continuous"\n', {"beta": 0.7, "floor": 0.01}),
        ("", {"beta": 0.9, "floor": 0.01}),
        ('reward = "binary"\n', {"beta": 0.9, "floor": 0.01}),
        ('reward = "continuous"\nstrategy_params = { beta = 0.9 }\n', {"beta": 0.9, "floor": 0.01}),
    ],
)
def test_a_new_endpoint_gets_the_defaults_of_its_reward_kind(tmp_path: Path, extra, params):
    # TopTwoThompson's beta is 0.7 for continuous rewards (bench/decisions.py): the file
    # without strategy_params registers the value the strategy runs with.
    path = write_config(tmp_path, strategy="TopTwoThompson", extra_endpoint=extra)
    assert load_config(path).endpoint.endpoint_config().strategy_params == params
