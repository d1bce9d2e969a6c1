"""The admin use cases: list endpoints, show one, and change its lifecycle (pause, resume,
conclude), each change recorded in the audit log with its actor and reason."""

from __future__ import annotations

from dataclasses import dataclass, field

from abtest import guardrails
from abtest.errors import ConflictError
from abtest.lifecycle import LOCAL_ACTOR, Action, AuditEntry, State, lost_race
from abtest.ports import Clock, Store
from abtest.records import DELETED, Endpoint, Figures
from abtest.usecases import Ports
from abtest.usecases.endpoints import (
    EndpointCache,
    figures_of,
    paused_allocation,
    refresh_figures,
    unknown_endpoint,
)


@dataclass(frozen=True, slots=True)
class LifecycleChange:
    endpoint_name: str
    action: Action
    actor: str = LOCAL_ACTOR  # who asks: the IAM principal, the token's name, or `local`
    reason: str = ""
    winner: str | None = None  # conclude only; None: the decision's current winner
    variant: str | None = None  # retire-variant and reinstate only


@dataclass(frozen=True, slots=True)
class EndpointView:
    """An endpoint as an operator sees it: its record, figures and audit log."""

    endpoint: Endpoint
    figures: Figures
    audit_log: list[AuditEntry] = field(default_factory=list)

    @property
    def allocation(self) -> dict[str, float]:
        """What a new user gets now: the strategy's, unless paused or concluded."""
        lifecycle = self.endpoint.lifecycle
        if lifecycle.state is State.CONCLUDED and lifecycle.winner is not None:
            return {lifecycle.winner: 1.0}
        if lifecycle.state is State.PAUSED:
            return paused_allocation(self.endpoint).probabilities
        return self.figures.allocation


@dataclass(frozen=True, slots=True)
class EndpointList:
    endpoints: list[Endpoint]


def _registered(store: Store, name: str) -> Endpoint:
    endpoint = store.get_endpoint(name)
    if endpoint is None or endpoint.status == DELETED:
        raise unknown_endpoint(name)
    return endpoint


class ShowEndpoint:
    """POST /admin/show: the record, its allocation and decision, and the audit log."""

    def __init__(self, *, store: Store) -> None:
        self.store = store

    @classmethod
    def from_ports(cls, ports: Ports) -> ShowEndpoint:
        return cls(store=ports.store)

    def __call__(self, endpoint_name: str) -> EndpointView:
        endpoint = _registered(self.store, endpoint_name)
        return EndpointView(endpoint, figures_of(endpoint), self.store.audit_log(endpoint_name))


class ListEndpoints:
    """POST /admin/list: every registered endpoint (deleted ones left out)."""

    def __init__(self, *, store: Store) -> None:
        self.store = store

    @classmethod
    def from_ports(cls, ports: Ports) -> ListEndpoints:
        return cls(store=ports.store)

    def __call__(self, _: object = None) -> EndpointList:
        records = (self.store.get_endpoint(name) for name in self.store.endpoint_names())
        return EndpointList([e for e in records if e is not None and e.status != DELETED])


class ChangeLifecycle:
    """POST /admin/pause, resume, conclude, retire-variant, reinstate: one compare-and-set
    each, so of two racing changes one is stored and the other answered 409; counters are
    never written."""

    def __init__(self, *, store: Store, endpoints: EndpointCache, clock: Clock) -> None:
        self.store = store
        self.endpoints = endpoints
        self.clock = clock

    @classmethod
    def from_ports(cls, ports: Ports) -> ChangeLifecycle:
        return cls(store=ports.store, endpoints=ports.endpoints, clock=ports.clock)

    def __call__(self, change: LifecycleChange) -> EndpointView:
        name = change.endpoint_name
        endpoint = _registered(self.store, name)
        before = endpoint.lifecycle
        winner = None
        if change.action is Action.RETIRE_VARIANT:
            after = before.retiring(name, self._retirable(endpoint, change.variant))
        elif change.action is Action.REINSTATE:
            variant = self._demoted(endpoint, change.variant)
            counts = next(v.counts for v in endpoint.variants if v.variant_name == variant)
            after = before.reinstating(name, variant, guardrails.baseline(counts))
        else:
            if change.action is Action.CONCLUDE:
                winner = self._winner(endpoint, change.winner)
            after = before.moved(name, change.action, winner)  # 409 if illegal
        details: dict[str, str | int] = {
            "from": str(before.state),
            "to": str(after.state),
            "version": after.version,
        }
        if winner is not None:
            details["winner"] = winner
        if change.variant is not None:
            details["variant"] = change.variant
        entry = AuditEntry(self.clock.now(), change.actor, change.action, change.reason, details)
        if not self.store.change_lifecycle(name, before, after, entry):
            raise lost_race(name)
        refresh_figures(self.store, name)  # a retired variant leaves the allocation
        self.endpoints.forget(name)
        changed = _registered(self.store, name)
        return EndpointView(changed, figures_of(changed), self.store.audit_log(name))

    def _retirable(self, endpoint: Endpoint, variant: str | None) -> str:
        """A serving variant that is not the last one; 409 naming `variant` otherwise."""
        serving = [v.variant_name for v in endpoint.serving_variants]
        if variant not in serving:
            raise ConflictError(
                f"variant: {variant!r} is not a serving variant of {endpoint.endpoint_name!r} "
                f"(serving: {', '.join(serving)})",
                details=[{"field": "variant", "message": "not serving"}],
            )
        if len(serving) == 1:
            raise ConflictError(
                f"variant: {variant!r} is the last serving variant; conclude instead",
                details=[{"field": "variant", "message": "the last one serving"}],
            )
        return variant

    def _demoted(self, endpoint: Endpoint, variant: str | None) -> str:
        """A variant a guardrail demotes now; 409 naming `variant` otherwise. It is
        reinstated at its counters as they are: it serves again until the calls after this
        breach a guardrail on their own (earlier evidence does not count twice)."""
        demoted = figures_of(endpoint).demoted
        if variant not in demoted:
            raise ConflictError(
                f"variant: {variant!r} is not demoted on {endpoint.endpoint_name!r} "
                f"(demoted: {', '.join(demoted) or 'none'})",
                details=[{"field": "variant", "message": "not demoted"}],
            )
        return variant

    def _winner(self, endpoint: Endpoint, named: str | None) -> str:
        """The variant named, or the decision's current winner; 409 if there is none."""
        if named is not None:
            if named not in endpoint.variant_names:
                raise ConflictError(
                    f"winner: {named!r} is not a variant of {endpoint.endpoint_name!r} "
                    f"(variants: {', '.join(endpoint.variant_names)})",
                    details=[{"field": "winner", "message": "not on the endpoint"}],
                )
            return named
        decision = figures_of(endpoint).decision
        winner = decision.get("winner")
        if winner is None:
            reason = decision.get("reason", "no winner")
            raise ConflictError(
                f"winner: the decision names none yet ({reason}); name one to conclude anyway",
                details=[{"field": "winner", "message": f"no winner yet ({reason})"}],
            )
        return str(winner)
