"""An experiment's lifecycle: its state, the moves between states, and the audit log.

An endpoint is `running` (its strategy allocates), `paused` (new users get the champion,
or the fixed weights of a WeightedSampling endpoint; existing users keep their variant)
or `concluded` (the named winner serves everyone). The state is stored with the endpoint
and changed only by a compare-and-set on the whole `Lifecycle` (its `version` grows by
one a change), so of two racing changes one wins and the other is told 409.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from abtest.errors import ConflictError


class State(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    CONCLUDED = "concluded"


class Action(StrEnum):
    """What a person can do to an endpoint; each is recorded in the audit log."""

    PAUSE = "pause"
    RESUME = "resume"
    CONCLUDE = "conclude"
    RETIRE_VARIANT = "retire-variant"  # no move: the variant stops serving
    REINSTATE = "reinstate"  # no move: a variant a guardrail demoted serves again


# The state each action leads to, from each state; an action missing here is illegal there.
MOVES: dict[State, dict[Action, State]] = {
    State.RUNNING: {Action.PAUSE: State.PAUSED, Action.CONCLUDE: State.CONCLUDED},
    State.PAUSED: {Action.RESUME: State.RUNNING, Action.CONCLUDE: State.CONCLUDED},
    State.CONCLUDED: {},  # final: a new experiment is a new endpoint
}

# The actor of changes made on the embedded server without a token.
LOCAL_ACTOR = "local"
# Audit entries kept per endpoint (the oldest go first): changes are made by people, so
# this is years of them, and it bounds the DynamoDB item that holds them.
AUDIT_RETENTION = 500


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """An endpoint's state. A record written before lifecycles existed is running, version 0."""

    state: State = State.RUNNING
    winner: str | None = None  # set when concluded
    version: int = 0
    # Variants that serve no one any more; their counters stay, and their events count.
    retired: tuple[str, ...] = ()
    # Variants a person reinstated after a guardrail demoted them, each with its guardrail
    # counters at that moment: only calls since count toward demoting it again.
    reinstated: dict[str, dict[str, int]] = field(default_factory=dict, hash=False)

    @property
    def allowed_actions(self) -> tuple[Action, ...]:
        """What a person can do now: the moves from this state, and retiring a variant
        until the experiment is concluded. Clients (the dashboard) offer exactly these."""
        moves = tuple(MOVES[self.state])
        if self.state is State.CONCLUDED:
            return moves
        return (*moves, Action.RETIRE_VARIANT, Action.REINSTATE)

    def moved(self, endpoint_name: str, action: Action, winner: str | None = None) -> Lifecycle:
        """The lifecycle after `action`, or a 409 naming the state and the allowed moves."""
        allowed = MOVES[self.state]
        if action not in allowed:
            moves = ", ".join(allowed) or "none (concluded is final)"
            raise ConflictError(
                f"{endpoint_name!r} is {self.state}: cannot {action}; allowed: {moves}",
                details=[{"field": "state", "message": f"{self.state}; allowed: {moves}"}],
            )
        return replace(self, state=allowed[action], winner=winner, version=self.version + 1)

    def retiring(self, endpoint_name: str, variant: str) -> Lifecycle:
        """The lifecycle with `variant` retired; 409 once concluded (the winner serves all)."""
        if self.state is State.CONCLUDED:
            raise ConflictError(
                f"{endpoint_name!r} is concluded: cannot retire a variant; allowed: none",
                details=[{"field": "state", "message": "concluded; allowed: none"}],
            )
        return replace(self, retired=(*self.retired, variant), version=self.version + 1)

    def reinstating(self, endpoint_name: str, variant: str, baseline: dict[str, int]) -> Lifecycle:
        """The lifecycle with `variant` reinstated at its guardrail counters `baseline`; 409
        once concluded (the winner serves all)."""
        if self.state is State.CONCLUDED:
            raise ConflictError(
                f"{endpoint_name!r} is concluded: cannot reinstate a variant; allowed: none",
                details=[{"field": "state", "message": "concluded; allowed: none"}],
            )
        reinstated = {**self.reinstated, variant: dict(baseline)}
        return replace(self, reinstated=reinstated, version=self.version + 1)

    def to_json(self) -> str:
        value = asdict(self)
        if not self.reinstated:  # absent: a lifecycle stored before reinstatements reads equal
            del value["reinstated"]
        return json.dumps(value, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> Lifecycle:
        if not text:
            return cls()
        value = json.loads(text)
        retired = tuple(value.get("retired", ()))
        reinstated = {
            name: {k: int(v) for k, v in counts.items()}
            for name, counts in value.get("reinstated", {}).items()
        }
        return cls(
            State(value["state"]), value.get("winner"), int(value["version"]), retired, reinstated
        )


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One lifecycle change: when, who (IAM principal, token name or `local`), what, why."""

    at: float
    actor: str
    action: str
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict, hash=False)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> AuditEntry:
        return cls(**json.loads(text))


def lost_race(endpoint_name: str) -> ConflictError:
    """The 409 of the loser of two concurrent changes."""
    return ConflictError(
        f"{endpoint_name!r} was changed by someone else meanwhile; read it and try again",
        details=[{"field": "state", "message": "changed concurrently"}],
    )
