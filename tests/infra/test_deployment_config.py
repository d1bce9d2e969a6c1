"""The per-stage deployment config: the shipped ones load, bad ones name the key and reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra.deployment_config import (
    DeploymentConfigError,
    config_for_stage,
    load_deployment_config,
)
from tests.infra.synth import REPO


def write(tmp_path: Path, body: Any, name: str = "dev.json") -> Path:
    path = tmp_path / name
    path.write_text(body if isinstance(body, str) else json.dumps(body))
    return path


def test_shipped_configs_load() -> None:
    dev = config_for_stage("dev")
    assert (dev.strategy, dev.challenger_variant_count, dev.pins_every_version) == (
        "TopTwoThompson",
        1,
        False,
    )
    prod = config_for_stage("prod")
    assert prod.pins_every_version
    assert [c.variant_name for c in prod.challenger_variant_config] == [
        "Challenger1",
        "Challenger2",
    ]


def test_the_articles_example_config_is_accepted(tmp_path: Path) -> None:
    config = load_deployment_config(
        write(
            tmp_path,
            {
                "stage_name": "prod",
                "strategy": "EpsilonGreedy",
                "warmup": 100,
                "epsilon": 0.1,
                "instance_count": 2,
                "instance_type": "ml.c5.large",
                "champion_variant_config": {
                    "model_package_version": 1,
                    "variant_name": "Champion",
                    "instance_count": 3,
                    "instance_type": "ml.m5.xlarge",
                },
                "challenger_variant_config": [
                    {
                        "model_package_version": 1,
                        "variant_name": "Challenger1",
                        "instance_type": "ml.c5.xlarge",
                    },
                    {
                        "model_package_version": 2,
                        "variant_name": "Challenger2",
                        "instance_count": 1,
                    },
                ],
            },
        )
    )
    assert config.champion_variant_config and config.champion_variant_config.instance_count == 3


@pytest.mark.parametrize(
    ("body", "key", "reason"),
    [
        ({}, "stage_name", "missing"),
        ({"stage_name": "dev", "strategy": "Random"}, "strategy", "unknown strategy 'Random'"),
        ({"stage_name": "dev", "epsilon": 1.5}, "epsilon", "must be in [0, 1], got 1.5"),
        (
            {"stage_name": "dev", "strategy": "TopTwoThompson", "strategy_params": {"beta": 0}},
            "strategy_params.beta",
            "must be in (0, 1), got 0",
        ),
        (
            {"stage_name": "dev", "strategy_params": {"epsilon": 0.1}},
            "strategy_params.epsilon",
            "not a parameter of TopTwoThompson",
        ),
        (
            {
                "stage_name": "dev",
                "champion_variant_config": {"model_package_version": 1, "variant_name": "Champ_1"},
            },
            "champion_variant_config.variant_name",
            "not a name",
        ),
        ({"stage_name": "dev", "warmup": -1}, "warmup", "greater than or equal to 0"),
        ({"stage_name": "dev", "instance_type": "m5.large"}, "instance_type", "pattern"),
        ({"stage_name": "dev", "instance_cuont": 2}, "instance_cuont", "unknown key"),
        (
            {"stage_name": "dev", "challenger_variant_config": [{"variant_name": "C1"}]},
            "challenger_variant_config[0].model_package_version",
            "missing",
        ),
        (
            {"stage_name": "dev", "champion_variant_config": {"model_package_version": 0}},
            "champion_variant_config.model_package_version",
            "greater than or equal to 1",
        ),
        (
            {
                "stage_name": "dev",
                "challenger_variant_count": 3,
                "challenger_variant_config": [{"model_package_version": 1}],
            },
            "challenger_variant_count",
            "names 1 versions",
        ),
    ],
)
def test_bad_config_names_the_key_and_the_reason(
    tmp_path: Path, body: dict, key: str, reason: str
) -> None:
    with pytest.raises(DeploymentConfigError) as err:
        load_deployment_config(write(tmp_path, body))
    assert key in str(err.value)
    assert reason in str(err.value)


@pytest.mark.parametrize(
    ("keys", "strategy", "params"),
    [
        (
            {"strategy": "EpsilonGreedy", "epsilon": 0.2},
            "EpsilonGreedy",
            {"epsilon": 0.2, "floor": 0.01},
        ),
        (
            {"strategy": "EpsilonGreedy", "strategy_params": {"epsilon": 0.3}},
            "EpsilonGreedy",
            {"epsilon": 0.3, "floor": 0.01},
        ),
        ({"strategy": "ThompsonSampling", "epsilon": 0.1}, "ThompsonSampling", {"floor": 0.01}),
        (
            {"strategy": "TopTwoThompson", "strategy_params": {"beta": 0.6}},
            "TopTwoThompson",
            {"beta": 0.6, "floor": 0.01},
        ),
        ({"strategy": "TopTwoThompson"}, "TopTwoThompson", {"beta": 0.9, "floor": 0.01}),
    ],
)
def test_strategy_params_and_the_original_epsilon_key_both_work(
    tmp_path: Path, keys: dict, strategy: str, params: dict
) -> None:
    config = load_deployment_config(write(tmp_path, {"stage_name": "dev", **keys}))
    assert (config.strategy, config.strategy_params) == (strategy, params)


def test_not_json_and_missing_file_are_clear(tmp_path: Path) -> None:
    with pytest.raises(DeploymentConfigError, match="not JSON"):
        load_deployment_config(write(tmp_path, "{stage_name: dev"))
    with pytest.raises(DeploymentConfigError, match="cannot read"):
        load_deployment_config(tmp_path / "missing.json")


def test_file_for_one_stage_must_say_that_stage(tmp_path: Path) -> None:
    write(tmp_path, {"stage_name": "dev"}, name="prod.json")
    with pytest.raises(DeploymentConfigError, match="stage_name: is 'dev', expected 'prod'"):
        config_for_stage("prod", tmp_path)


def test_the_experiment_settings_are_read_and_become_the_endpoints_tags(tmp_path: Path) -> None:
    from abtest.adapters.endpoint_tags import tags_for
    from abtest.config_types import ExperimentSettings

    keys = {"reward": "continuous", "unit": "invocation", "attribution_window_seconds": 86400}
    config = load_deployment_config(
        write(tmp_path, {"stage_name": "dev", **keys, "auto_conclude": True})
    )
    assert ExperimentSettings.of(config) == ExperimentSettings(**keys, auto_conclude=True)
    assert {k: v for k, v in tags_for(config).items() if k.removeprefix("ab-testing:") in keys} == {
        f"ab-testing:{k}": str(v) for k, v in keys.items()
    }
    assert tags_for(config)["ab-testing:auto_conclude"] == "true"
    with pytest.raises(DeploymentConfigError, match="reward: Input should be 'binary' or"):
        load_deployment_config(write(tmp_path, {"stage_name": "dev", "reward": "revenue"}))


def test_a_continuous_stage_deploys_top_two_with_its_continuous_default(tmp_path: Path) -> None:
    from abtest.adapters.endpoint_tags import tags_for

    config = load_deployment_config(write(tmp_path, {"stage_name": "dev", "reward": "continuous"}))
    assert (config.strategy, config.strategy_params) == (
        "TopTwoThompson",
        {"beta": 0.7, "floor": 0.01},
    )
    assert tags_for(config)["ab-testing:beta"] == "0.7"
    binary = load_deployment_config(write(tmp_path, {"stage_name": "dev"}))
    assert binary.strategy_params == {"beta": 0.9, "floor": 0.01}


def test_a_bad_file_is_named_from_the_repositorys_top(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a person finds it under the checkout, wherever synth runs from."""
    config_dir = tmp_path / "infra" / "config"
    config_dir.mkdir(parents=True)
    body = {"stage_name": "prod", "strategy": "EpsilonGreedy", "epsilon": 1.5}
    write(config_dir, body, "prod.json")
    monkeypatch.setattr("infra.deployment_config.REPO", tmp_path, raising=False)
    with pytest.raises(DeploymentConfigError) as err:
        config_for_stage("prod", config_dir)
    assert str(err.value) == "infra/config/prod.json: epsilon: must be in [0, 1], got 1.5"


@pytest.mark.slow(seconds=3)  # the CDK app's own process
def test_the_app_stops_on_bad_settings_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_"))}
    env.update(
        CDK_CONTEXT_JSON=json.dumps({"stage_name": "prod", "api_memory_mb": 64}),
        CDK_OUTDIR=str(tmp_path),
    )
    result = subprocess.run(
        [sys.executable, "app.py"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "error: bad cdk.json context: api_memory_mb: "
        "Input should be greater than or equal to 128, got 64"
    )
    assert not list(tmp_path.glob("*.template.json"))
