"""A strategy's tunable parameters, declared once beside the strategy that uses them.

Every configuration surface (the TOML file, the endpoint tags, the deployment config,
the stores) learns names, types, defaults and ranges from these declarations, so a new
strategy with a new parameter is written in its own module and listed in the registry,
nowhere else.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from bandit.metrics import BINARY


class ParameterError(ValueError):
    """A strategy parameter is unknown or out of range; `parameter` names it."""

    def __init__(self, parameter: str, reason: str) -> None:
        super().__init__(f"{parameter}: {reason}")
        self.parameter = parameter
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Parameter:
    """One number a strategy takes: its type, default and allowed range.

    Bounds are inclusive unless `open_low` / `open_high` says otherwise. `by_reward` holds
    the defaults that differ by the endpoint's kind of reward, as (kind, default) pairs: a
    value that suits one posterior model need not suit the other (see `default_for`).
    """

    name: str
    default: float
    low: float
    high: float
    open_low: bool = False
    open_high: bool = False
    integer: bool = False
    doc: str = ""
    by_reward: tuple[tuple[str, float], ...] = ()

    def default_for(self, reward: str) -> float:
        """The default for an endpoint whose rewards are of kind `reward`."""
        return dict(self.by_reward).get(reward, self.default)

    @property
    def range(self) -> str:
        """The range as a reader writes it: `[0, 1]`, `(0, 1)`."""
        left, right = "(" if self.open_low else "[", ")" if self.open_high else "]"
        return f"{left}{_number(self.low)}, {_number(self.high)}{right}"

    def check(self, value: object) -> float | int:
        """The value, as a float (or int for an integer parameter); ParameterError otherwise."""
        kind = "a whole number" if self.integer else "a number"
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParameterError(self.name, f"must be {kind} in {self.range}, got {value!r}")
        if self.integer and value != int(value):
            raise ParameterError(self.name, f"must be {kind} in {self.range}, got {value!r}")
        above = value > self.low if self.open_low else value >= self.low
        below = value < self.high if self.open_high else value <= self.high
        if not (above and below):  # NaN fails both comparisons
            raise ParameterError(self.name, f"must be in {self.range}, got {value!r}")
        return int(value) if self.integer else float(value)


def check_parameters(
    owner: str,
    declared: tuple[Parameter, ...],
    given: Mapping[str, object],
    reward: str = BINARY,
) -> dict[str, float | int]:
    """Every declared parameter, given or defaulted (the default for rewards of kind
    `reward`), checked; an undeclared one is an error."""
    by_name = {p.name: p for p in declared}
    for name in given:
        if name not in by_name:
            expected = ", ".join(by_name) or "none"
            raise ParameterError(name, f"not a parameter of {owner} (its parameters: {expected})")
    return {
        p.name: p.check(given[p.name]) if p.name in given else p.default_for(reward)
        for p in declared
    }


def _number(value: float) -> str:
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:g}"
