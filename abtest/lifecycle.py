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
    ADD_VARIANT = "add-variant"  # no move: a challenger joins, warming up alone
    WEIGHTS = "weights"  # no move: WeightedSampling's weights, set by hand
    REINSTATE = "reinstate"  # no move: a variant a guardrail demoted serves again
    # Not a request of its own: the second step of a conclusion, recorded once the model
    # host (SageMaker's production-variant weights) routes everyone to the winner too.
    PROMOTE = "promote"


class Promotion(StrEnum):
    """Whether the model host routes everyone to the winner too, once concluded where the host
    keeps weights of its own (SageMaker): callers who bypass the API then get the winner."""

    PENDING = "pending"  # concluded here; the host not yet told (conclude again to finish)
    DONE = "done"  # the host's weights are the winner's 1, every other variant's 0


# The state each action leads to, from each state; an action missing here is illegal there.
MOVES: dict[State, dict[Action, State]] = {
    State.RUNNING: {Action.PAUSE: State.PAUSED, Action.CONCLUDE: State.CONCLUDED},
    State.PAUSED: {Action.RESUME: State.RUNNING, Action.CONCLUDE: State.CONCLUDED},
    State.CONCLUDED: {},  # final: a new experiment is a new endpoint
}

# How a 409 names a change of the variants it refuses, where the action's name reads badly.
_CHANGES = {Action.RETIRE_VARIANT: "retire a variant", Action.REINSTATE: "reinstate a variant"}
# The actor of changes made on the embedded server without a token.
LOCAL_ACTOR = "local"
# The actor of a conclusion aggregation made on its own (the endpoint's `auto_conclude`).
AUTO_CONCLUDE_ACTOR = "auto-conclude"
# The actor of changes registration makes: a variant gone from, or new in, the config,
# and a winner's pending promotion it finishes.
REGISTRATION_ACTOR = "registration"
# The actions that change the variants, not the state: legal until the experiment concludes.
VARIANT_ACTIONS = (Action.RETIRE_VARIANT, Action.ADD_VARIANT, Action.WEIGHTS, Action.REINSTATE)
# Lifecycle fields written only when set, so a record written before they existed keeps the
# same JSON (the compare-and-set compares the stored text).
_WRITTEN_WHEN_SET = ("added", "weights", "promotion", "reinstated")
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
    # Concluded where the model host keeps weights: whether it routes to the winner yet.
    promotion: Promotion | None = None
    # Variants added while the experiment ran, each with its `model` (None: the endpoint's
    # own, a SageMaker production variant): registration keeps them, the config lacks them.
    added: tuple[tuple[str, str | None], ...] = ()
    # WeightedSampling's weights set by hand, by variant; they override the configured ones.
    weights: tuple[tuple[str, float], ...] = ()
    # Variants a person reinstated after a guardrail demoted them, each with its guardrail
    # counters at that moment: only calls since count toward demoting it again.
    reinstated: dict[str, dict[str, int]] = field(default_factory=dict, hash=False)

    @property
    def allowed_actions(self) -> tuple[Action, ...]:
        """What a person can do now: the moves from this state, and changing the variants
        until the experiment is concluded, or concluding again while the winner's promotion
        is pending (it finishes it). Clients (the dashboard) offer exactly these."""
        if self.promotion is Promotion.PENDING:
            return (Action.CONCLUDE,)
        moves = tuple(MOVES[self.state])
        return moves if self.state is State.CONCLUDED else (*moves, *VARIANT_ACTIONS)

    @property
    def added_models(self) -> dict[str, str | None]:
        return dict(self.added)

    def moved(
        self,
        endpoint_name: str,
        action: Action,
        winner: str | None = None,
        promotion: Promotion | None = None,
    ) -> Lifecycle:
        """The lifecycle after `action`, or a 409 naming the state and the allowed moves;
        `promotion` is PENDING for a conclusion the model host must follow."""
        self._movable(endpoint_name, action)
        allowed = MOVES[self.state]
        return replace(
            self,
            state=allowed[action],
            winner=winner,
            version=self.version + 1,
            promotion=promotion if action is Action.CONCLUDE else None,
        )

    def check(self, endpoint_name: str, action: Action) -> None:
        """A 409 naming the state unless `action` is legal in it. Checked before the
        action's own input, so that a change no input could make is refused as such, not
        as if another winner or variant would do (a conclusion of a concluded endpoint
        was told to name a winner)."""
        if action in VARIANT_ACTIONS:
            self._not_concluded(endpoint_name, _CHANGES.get(action, action))
        else:
            self._movable(endpoint_name, action)

    def _movable(self, endpoint_name: str, action: Action) -> None:
        """A 409 naming the state and the allowed moves unless `action` is one of them."""
        allowed = MOVES[self.state]
        if action not in allowed:
            moves = self._pending_move or ", ".join(allowed) or "none (concluded is final)"
            raise ConflictError(
                f"{endpoint_name!r} is {self.state}: cannot {action}; allowed: {moves}",
                details=[{"field": "state", "message": f"{self.state}; allowed: {moves}"}],
            )

    @property
    def _pending_move(self) -> str:
        """The one move a 409 names while the winner's promotion is pending, else ''."""
        if self.promotion is Promotion.PENDING:
            return f"{Action.CONCLUDE} again, to finish promoting the winner"
        return ""

    def promoted(self) -> Lifecycle:
        """The pending promotion done: the model host routes everyone to the winner."""
        assert self.promotion is Promotion.PENDING, self
        return replace(self, promotion=Promotion.DONE, version=self.version + 1)

    def retiring(self, endpoint_name: str, variant: str) -> Lifecycle:
        """The lifecycle with `variant` retired; 409 once concluded (the winner serves all)."""
        self._not_concluded(endpoint_name, _CHANGES[Action.RETIRE_VARIANT])
        return replace(self, retired=(*self.retired, variant), version=self.version + 1)

    def adding(self, endpoint_name: str, variant: str, model: str | None) -> Lifecycle:
        """The lifecycle with `variant` added (its model with it); 409 once concluded."""
        self._not_concluded(endpoint_name, Action.ADD_VARIANT)
        return replace(self, added=(*self.added, (variant, model)), version=self.version + 1)

    def weighted(self, endpoint_name: str, weights: dict[str, float]) -> Lifecycle:
        """The lifecycle with `weights` set (others kept as they were); 409 once concluded."""
        self._not_concluded(endpoint_name, Action.WEIGHTS)
        merged = dict(self.weights) | weights
        return replace(self, weights=tuple(sorted(merged.items())), version=self.version + 1)

    def registered(self, variant_names: tuple[str, ...], stored: tuple[str, ...]) -> Lifecycle:
        """The lifecycle after registration found `variant_names` in the config or catalog,
        with `stored` the variants the record has: a stored variant the config dropped, and
        no person added, is retired (never deleted: its counters and events stay its own);
        a variant new to a record that had some is added (it warms up alone, as one added
        through the admin API: a new production variant on SageMaker arrives this way).
        Itself if nothing changes."""
        kept = {*variant_names, *self.added_models, *self.retired}
        dropped = tuple(name for name in stored if name not in kept)
        new = tuple((name, None) for name in variant_names if stored and name not in stored)
        if not dropped and not new:
            return self
        return replace(
            self,
            retired=(*self.retired, *dropped),
            added=(*self.added, *new),
            version=self.version + 1,
        )

    def _not_concluded(self, endpoint_name: str, change: str) -> None:
        """A 409 for a change of the variants once concluded (the winner serves all), naming
        the one move left while the winner's promotion is pending."""
        if self.state is State.CONCLUDED:
            moves = self._pending_move or "none"
            raise ConflictError(
                f"{endpoint_name!r} is concluded: cannot {change}; allowed: {moves}",
                details=[{"field": "state", "message": f"concluded; allowed: {moves}"}],
            )

    def reinstating(self, endpoint_name: str, variant: str, baseline: dict[str, int]) -> Lifecycle:
        """The lifecycle with `variant` reinstated at its guardrail counters `baseline`; 409
        once concluded (the winner serves all)."""
        self._not_concluded(endpoint_name, _CHANGES[Action.REINSTATE])
        reinstated = {**self.reinstated, variant: dict(baseline)}
        return replace(self, reinstated=reinstated, version=self.version + 1)

    def to_json(self) -> str:
        """The stored form, compared whole by the stores' compare-and-set: fields added
        later are written only when set, so an old record keeps exactly its old text."""
        value = asdict(self)
        for name in _WRITTEN_WHEN_SET:
            if not value[name]:
                del value[name]
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
            State(value["state"]),
            value.get("winner"),
            int(value["version"]),
            retired,
            promotion=Promotion(value["promotion"]) if value.get("promotion") else None,
            added=tuple((name, model) for name, model in value.get("added", ())),
            weights=tuple((name, float(w)) for name, w in value.get("weights", ())),
            reinstated=reinstated,
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


def registration_entries(before: Lifecycle, after: Lifecycle, now: float) -> list[AuditEntry]:
    """The audit entries of registration retiring the variants the config or catalog dropped
    and adding the ones it lists for the first time (`Lifecycle.registered`)."""
    changes = (
        (
            Action.RETIRE_VARIANT,
            [name for name in after.retired if name not in before.retired],
            "gone from the endpoint's config: retired, its counters and events kept",
        ),
        (
            Action.ADD_VARIANT,
            [name for name in after.added_models if name not in before.added_models],
            "new in the endpoint's config: added, warming up alone",
        ),
    )
    details = {"from": str(before.state), "to": str(after.state), "version": after.version}
    return [
        AuditEntry(now, REGISTRATION_ACTOR, action, reason, {"variants": names, **details})
        for action, names, reason in changes
        if names
    ]
