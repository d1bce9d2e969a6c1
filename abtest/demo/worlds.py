"""The truth a simulation plays: what each user sends, and the reward they give the answer.

`abtest simulate` works against any endpoint because the truth is the user's to give:

- per-variant reward distributions (`--truth A=0.1`, or a scenario file's `[truth]`): a
  conversion with that probability, or a reward drawn from Beta(a, b);
- a Python function `(user_id, response) -> reward in [0, 1]` (`--reward-function`);
- the demo's review world (`--scenario reviews`): the user reads one review of their batch
  and converts when the variant labelled it right.

A scenario file (TOML) holds the same:

    data = { instances = ["a text"] }     # the invocation's `data` (default {})
    content_type = "application/json"     # its content type (the default)
    [truth]                               # per variant; or reward_function = "mod:fn"
    Champion1 = 0.10                      # converts 10% of the time
    Challenger1 = { beta = [2, 8] }       # a reward drawn from Beta(2, 8)
"""

from __future__ import annotations

import json
import random
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from abtest.errors import ConfigError

REVIEWS = "reviews"


class ScenarioError(Exception):
    """The endpoint's answers do not fit the scenario (e.g. a variant with no truth)."""


@dataclass(frozen=True, slots=True)
class Visit:
    """One user's request, and how they reward the endpoint's answer to it."""

    data: Any
    content_type: str
    reward: Callable[[dict[str, Any]], float]


class World(Protocol):
    def visit(self, user_id: str, rng: random.Random) -> Visit: ...


@dataclass(frozen=True, slots=True)
class Bernoulli:
    rate: float

    def draw(self, rng: random.Random) -> float:
        return float(rng.random() < self.rate)

    @property
    def mean(self) -> float:
        return self.rate

    def __str__(self) -> str:
        return f"{self.rate:g}"


@dataclass(frozen=True, slots=True)
class BetaReward:
    a: float
    b: float

    def draw(self, rng: random.Random) -> float:
        return rng.betavariate(self.a, self.b)

    @property
    def mean(self) -> float:
        return self.a / (self.a + self.b)

    def __str__(self) -> str:
        return f"beta({self.a:g}, {self.b:g})"


Distribution = Bernoulli | BetaReward


@dataclass(frozen=True, slots=True)
class TruthWorld:
    """Every user sends the same `data`; the variant that answers draws their reward."""

    truth: Mapping[str, Distribution]
    data: Any = None
    content_type: str = "application/json"
    source: str = "--truth"  # where the truth was given, for its errors

    def check(self, endpoint_name: str, stats: Mapping[str, Any]) -> None:
        """Before the first user, the truth against the endpoint's `/stats`: a ConfigError
        for a name that is no variant of it (a typo, and a best mean no variant has for
        the regret plot) or a variant new users get that has none (the run would stop
        there, its first users already served and counted)."""
        variants = [m["variant_name"] for m in stats["variant_metrics"]]
        unknown = [name for name in self.truth if name not in variants]
        if unknown:
            raise ConfigError(
                f"{self.source}: {', '.join(map(repr, unknown))}: not a variant of "
                f"{endpoint_name!r} (variants: {', '.join(variants)})"
            )
        missing = [
            v for v, share in stats["allocation"].items() if share > 0 and v not in self.truth
        ]
        if missing:
            raise ConfigError(
                f"{self.source}: none for {', '.join(map(repr, missing))}, which new users of "
                f"{endpoint_name!r} get; give one for each variant"
            )

    @property
    def means(self) -> dict[str, float]:
        """Each variant's expected reward: what the regret plot measures against."""
        return {variant: distribution.mean for variant, distribution in self.truth.items()}

    def visit(self, user_id: str, rng: random.Random) -> Visit:
        def reward(response: dict[str, Any]) -> float:
            variant = response.get("endpoint_variant")
            if variant not in self.truth:
                raise ScenarioError(
                    f"the endpoint answered with variant {variant!r}, which has no truth "
                    f"(given: {', '.join(sorted(self.truth))}); give one for each variant"
                )
            return self.truth[variant].draw(rng)

        return Visit({} if self.data is None else self.data, self.content_type, reward)


@dataclass(frozen=True, slots=True)
class FunctionWorld:
    """The user's reward is `function(user_id, response)`."""

    function: Callable[[str, dict[str, Any]], float]
    name: str
    data: Any = None
    content_type: str = "application/json"

    def visit(self, user_id: str, rng: random.Random) -> Visit:
        def reward(response: dict[str, Any]) -> float:
            value = self.function(user_id, response)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ScenarioError(
                    f"{self.name} returned {value!r}; a reward is a number in [0, 1]"
                )
            return float(value)

        return Visit({} if self.data is None else self.data, self.content_type, reward)


@dataclass(frozen=True, slots=True)
class ReviewsWorld:
    """The demo's world: a batch of held-out reviews; the reward is one label being right."""

    batch_size: int = 20
    reviews: Any = None  # abtest.demo.reviews.Reviews; default: the held-out set

    def visit(self, user_id: str, rng: random.Random) -> Visit:
        from abtest.demo.reviews import held_out_reviews, predicted_labels

        reviews = self.reviews if self.reviews is not None else held_out_reviews()
        picked = [rng.randrange(len(reviews)) for _ in range(self.batch_size)]
        read = rng.randrange(len(picked))  # the review this user reads and votes on
        label = reviews.labels[picked[read]]

        def reward(response: dict[str, Any]) -> float:
            try:
                right = predicted_labels(response["predictions"])[read] == label
            except (KeyError, IndexError, TypeError) as error:
                raise ScenarioError(
                    "the reviews scenario needs the demo's models (BlazingText-style "
                    f"predictions), but the endpoint answered {str(response)[:120]} "
                    f"({type(error).__name__}); give the truth with --truth, --scenario FILE "
                    "or --reward-function"
                ) from None
            return float(right)

        data = json.dumps(
            {"instances": [reviews.texts[i] for i in picked], "configuration": {"k": 1}}
        )
        return Visit(data, "application/json", reward)


def parse_truth(items: list[str]) -> dict[str, Distribution]:
    """`--truth VARIANT=RATE` or `--truth VARIANT=beta:A,B`, once per variant."""
    truth: dict[str, Distribution] = {}
    for item in items:
        variant, sep, value = item.partition("=")
        if not sep or not variant:
            raise ConfigError(f"--truth {item!r}: expected VARIANT=RATE or VARIANT=beta:A,B")
        if variant in truth:
            raise ConfigError(f"--truth: variant {variant!r} given twice")
        if value.startswith("beta:"):
            a, _, b = value.removeprefix("beta:").partition(",")
            truth[variant] = _distribution(f"--truth {variant}", {"beta": [_number(a), _number(b)]})
        else:
            truth[variant] = _distribution(f"--truth {variant}", _number(value))
    return truth


def load_scenario(path: str | Path) -> World:
    """A scenario file (see the module's docstring); raises ConfigError("<file>: <key>: ...")."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            raw = tomllib.load(file)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    known = {"data", "content_type", "truth", "reward_function"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{path}: {unknown[0]}: unknown key (known: {', '.join(sorted(known))})")
    content_type = raw.get("content_type", "application/json")
    if not isinstance(content_type, str) or not content_type:
        raise ConfigError(f"{path}: content_type: must be a media type, got {content_type!r}")
    data = raw.get("data")
    if ("truth" in raw) == ("reward_function" in raw):
        raise ConfigError(f"{path}: give exactly one of [truth] and reward_function")
    if "reward_function" in raw:
        reference = raw["reward_function"]
        if not isinstance(reference, str):
            raise ConfigError(f"{path}: reward_function: must be 'module:function'")
        return function_world(reference, path.resolve().parent, data, content_type)
    table = raw["truth"]
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"{path}: truth: must be a table with one entry per variant")
    truth = {name: _distribution(f"{path}: truth.{name}", value) for name, value in table.items()}
    return TruthWorld(truth, data, content_type, source=f"{path}: truth")


def function_world(
    reference: str, near: Path, data: Any = None, content_type: str = "application/json"
) -> FunctionWorld:
    """The world of a reward function `module:function`, found next to `near` too."""
    from abtest.adapters.local_models import load_callable

    return FunctionWorld(load_callable(reference, near=near), reference, data, content_type)


def _distribution(where: str, value: Any) -> Distribution:
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not 0 <= value <= 1:
            raise ConfigError(f"{where}: a conversion rate must be in [0, 1], got {value!r}")
        return Bernoulli(float(value))
    if isinstance(value, dict) and set(value) == {"beta"}:
        shape = value["beta"]
        if (
            isinstance(shape, list)
            and len(shape) == 2
            and all(isinstance(x, int | float) and not isinstance(x, bool) and x > 0 for x in shape)
        ):
            return BetaReward(float(shape[0]), float(shape[1]))
        raise ConfigError(f"{where}: beta must be two positive numbers [a, b], got {shape!r}")
    raise ConfigError(
        f"{where}: expected a conversion rate in [0, 1] or {{ beta = [a, b] }}, got {value!r}"
    )


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text  # reported by _distribution with the key it belongs to
