"""The `ab-testing:*` SageMaker endpoint tags: the strategy, each of its parameters, the warm-up,
each experiment setting (`ab-testing:reward`, `ab-testing:unit`,
`ab-testing:attribution_window_seconds`, `ab-testing:auto_conclude`,
`ab-testing:max_error_rate`, ...: a tag per `ExperimentSettings` field, none for one left unset).

The deployment stack writes these tags (`tags_for`); registration reads them
(`strategy_from_tags`). A tag per declared parameter, `ab-testing:<parameter>`, so a new
strategy parameter needs no change here. A bad value is a ConfigError naming the tag:
guessing a default would run the wrong experiment silently.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError

import bandit
from abtest.config_types import ExperimentSettings, StrategyFields, describe_errors
from abtest.errors import ConfigError

PREFIX = "ab-testing:"
STRATEGY_TAG = f"{PREFIX}strategy"
WARMUP_TAG = f"{PREFIX}warmup"


def tags_for(strategy: StrategyFields) -> dict[str, str]:
    """The tags that describe `strategy` (every declared parameter, defaults included)."""
    return {
        STRATEGY_TAG: strategy.strategy,
        **{f"{PREFIX}{name}": str(value) for name, value in strategy.strategy_params.items()},
        WARMUP_TAG: str(strategy.warmup),
        **{
            f"{PREFIX}{name}": _text(value)
            # An unset setting (a guardrail that is off) has no tag.
            for name, value in ExperimentSettings.of(strategy).model_dump(exclude_none=True).items()
        },
    }


def _text(value: object) -> str:
    """A tag's value: a flag as JSON and TOML spell it (`true`), the rest as Python prints it."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def strategy_from_tags(tags: Mapping[str, str]) -> StrategyFields:
    """The strategy keys from the tags; absent tags take the documented defaults.

    Only the parameters the tagged strategy declares are read: endpoints deployed before
    strategy parameters carry `ab-testing:epsilon` whatever their strategy.
    """
    data: dict[str, object] = {}
    if STRATEGY_TAG in tags:
        data["strategy"] = tags[STRATEGY_TAG].strip()
    strategy = data.get("strategy", bandit.DEFAULT_STRATEGY)
    declared = bandit.STRATEGIES[strategy].parameters if strategy in bandit.STRATEGIES else ()
    data["strategy_params"] = {
        p.name: _number(tags[f"{PREFIX}{p.name}"]) for p in declared if f"{PREFIX}{p.name}" in tags
    }
    if WARMUP_TAG in tags:
        data["warmup"] = tags[WARMUP_TAG]
    # Endpoints deployed before experiment settings have none of these: the defaults.
    data |= {
        name: tags[f"{PREFIX}{name}"].strip()
        for name in ExperimentSettings.model_fields
        if f"{PREFIX}{name}" in tags
    }
    try:
        return StrategyFields.model_validate(data)
    except ValidationError as error:
        raise ConfigError(describe_errors(error, _tag)) from None


def _tag(loc: tuple[str | int, ...]) -> str:
    """The tag an error is about: `("strategy_params", "epsilon")` -> `ab-testing:epsilon`."""
    return f"{PREFIX}{loc[-1]}"


def _number(text: str) -> object:
    """A tag's text as the number it spells; unchanged if it spells none, for bandit to refuse."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
