"""The `ab-testing:*` tags: one per declared strategy parameter, read back as written."""

from __future__ import annotations

import pytest

import bandit
from abtest.adapters.endpoint_tags import STRATEGY_TAG, WARMUP_TAG, strategy_from_tags, tags_for
from abtest.config_types import ExperimentSettings
from abtest.errors import ConfigError

EPSILON_TAG = "ab-testing:epsilon"


def read(tags: dict[str, str]) -> tuple:
    fields = strategy_from_tags(tags)
    return fields.strategy, fields.strategy_params, fields.warmup


def test_absent_tags_take_the_documented_defaults():
    assert read({}) == ("TopTwoThompson", {"beta": 0.9, "floor": 0.01}, 0)


def test_tags_are_parsed_and_other_tags_ignored():
    tags = {STRATEGY_TAG: "EpsilonGreedy", EPSILON_TAG: "0.25", WARMUP_TAG: "100", "team": "x"}
    assert read(tags) == ("EpsilonGreedy", {"epsilon": 0.25, "floor": 0.01}, 100)
    assert read({STRATEGY_TAG: "EpsilonGreedy"}) == (
        "EpsilonGreedy",
        {"epsilon": 0.1, "floor": 0.01},
        0,
    )


def test_an_epsilon_tag_on_a_strategy_without_epsilon_is_ignored_as_older_stacks_wrote_it():
    assert read({STRATEGY_TAG: "UCB1", EPSILON_TAG: "0.1"}) == ("UCB1", {"floor": 0.01}, 0)


@pytest.mark.parametrize("strategy", bandit.STRATEGY_NAMES)
def test_every_strategy_round_trips_through_its_tags(strategy):
    # Every declared parameter at a value inside its range but off its default.
    params = {p.name: (p.low + p.high) / 3 for p in bandit.strategy_parameters(strategy)}
    fields = strategy_from_tags({STRATEGY_TAG: strategy, WARMUP_TAG: "7"})
    written = tags_for(fields.model_copy(update={"strategy_params": params}))
    # An unset setting (a guardrail that is off) has no tag.
    unset = {name for name, value in ExperimentSettings().model_dump().items() if value is None}
    settings = {
        f"ab-testing:{name}" for name in ExperimentSettings.model_fields if name not in unset
    }
    assert (
        set(written) == {STRATEGY_TAG, WARMUP_TAG} | {f"ab-testing:{p}" for p in params} | settings
    )
    assert read(written) == (strategy, pytest.approx(params), 7)


def test_top_two_thompson_reads_its_beta_tag():
    tags = {STRATEGY_TAG: "TopTwoThompson", "ab-testing:beta": "0.7"}
    assert read(tags) == ("TopTwoThompson", {"beta": 0.7, "floor": 0.01}, 0)
    with pytest.raises(ConfigError, match=r"ab-testing:beta: must be in \(0, 1\), got 1"):
        read({STRATEGY_TAG: "TopTwoThompson", "ab-testing:beta": "1"})


@pytest.mark.parametrize(
    ("tags", "tag", "value"),
    [
        ({STRATEGY_TAG: "Thompson"}, STRATEGY_TAG, "Thompson"),
        ({STRATEGY_TAG: "thompsonsampling"}, STRATEGY_TAG, "thompsonsampling"),
        ({STRATEGY_TAG: "EpsilonGreedy", EPSILON_TAG: "high"}, EPSILON_TAG, "high"),
        ({STRATEGY_TAG: "EpsilonGreedy", EPSILON_TAG: "1.5"}, EPSILON_TAG, "1.5"),
        ({STRATEGY_TAG: "EpsilonGreedy", EPSILON_TAG: "-0.1"}, EPSILON_TAG, "-0.1"),
        ({STRATEGY_TAG: "EpsilonGreedy", EPSILON_TAG: "nan"}, EPSILON_TAG, "nan"),
        ({WARMUP_TAG: "-1"}, WARMUP_TAG, "-1"),
        ({WARMUP_TAG: "2.5"}, WARMUP_TAG, "2.5"),
        ({WARMUP_TAG: "lots"}, WARMUP_TAG, "lots"),
        ({WARMUP_TAG: ""}, WARMUP_TAG, "''"),
    ],
)
def test_a_bad_tag_value_is_a_config_error_naming_tag_and_value(tags, tag, value):
    with pytest.raises(ConfigError) as raised:
        strategy_from_tags(tags)
    message = str(raised.value)
    assert message.startswith(f"{tag}: "), message
    assert value in message


def test_experiment_settings_round_trip_through_their_tags_and_default_when_absent():
    settings = ExperimentSettings(
        reward="continuous",
        unit="invocation",
        attribution_window_seconds=3600,
        auto_conclude=True,
        max_error_rate=0.02,
        max_latency_p99_ms=750,
    )
    fields = strategy_from_tags({STRATEGY_TAG: "UCB1"}).model_copy(update=settings.model_dump())
    written = tags_for(fields)
    assert written["ab-testing:reward"] == "continuous"
    assert written["ab-testing:auto_conclude"] == "true"
    assert ExperimentSettings.of(strategy_from_tags(written)) == settings
    # An endpoint deployed before the settings has none of their tags.
    assert ExperimentSettings.of(strategy_from_tags({STRATEGY_TAG: "UCB1"})) == (
        ExperimentSettings()
    )


@pytest.mark.parametrize(
    ("tag", "value", "reason"),
    [
        ("ab-testing:reward", "revenue", "ab-testing:reward: Input should be 'binary' or"),
        ("ab-testing:unit", "session", "ab-testing:unit: Input should be 'user' or"),
        ("ab-testing:attribution_window_seconds", "0", "ab-testing:attribution_window_seconds"),
        ("ab-testing:auto_conclude", "maybe", "ab-testing:auto_conclude: Input should be a valid"),
    ],
)
def test_a_bad_settings_tag_is_a_config_error_naming_it(tag, value, reason):
    with pytest.raises(ConfigError, match=reason):
        strategy_from_tags({STRATEGY_TAG: "UCB1", tag: value})


def test_a_continuous_endpoints_tags_carry_its_own_default_and_keep_a_given_one():
    fields = strategy_from_tags({STRATEGY_TAG: "TopTwoThompson", "ab-testing:reward": "continuous"})
    assert fields.strategy_params == {"beta": 0.7, "floor": 0.01}
    assert tags_for(fields)["ab-testing:beta"] == "0.7"
    # Without the reward tag (binary), and with a beta tagged, nothing changes.
    assert strategy_from_tags({STRATEGY_TAG: "TopTwoThompson"}).strategy_params["beta"] == 0.9
    tagged = {STRATEGY_TAG: "TopTwoThompson", "ab-testing:reward": "continuous"}
    assert strategy_from_tags(tagged | {"ab-testing:beta": "0.9"}).strategy_params["beta"] == 0.9
