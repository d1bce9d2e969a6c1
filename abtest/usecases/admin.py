"""The admin use cases: list endpoints, show one, and change its lifecycle (pause, resume,
conclude; retire, add, weight or reinstate a variant), each change recorded in the audit log
with its actor and reason; a conclusion also promotes the winner in the model host
(SageMaker's weights)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import bandit
from abtest import guardrails
from abtest.errors import AbtestError, BadRequestError, ConflictError
from abtest.lifecycle import LOCAL_ACTOR, Action, AuditEntry, Lifecycle, Promotion, lost_race
from abtest.ports import Clock, EndpointCatalog, ModelHost, Store
from abtest.records import DELETED, Endpoint, Figures, VariantConfig
from abtest.usecases import Ports
from abtest.usecases.endpoints import (
    EndpointCache,
    allocation_now,
    decision_now,
    figures_of,
    refresh_figures,
    unknown_endpoint,
)

logger = logging.getLogger("abtest")
# The keys of each change's structured log line, which the AWS dashboard's widget queries.
LIFECYCLE_LOG_FIELDS = (
    "endpoint_name",
    "lifecycle_action",
    "state",
    "winner",
    "promotion",
    "actor",
    "version",
)


@dataclass(frozen=True, slots=True)
class LifecycleChange:
    endpoint_name: str
    action: Action
    actor: str = LOCAL_ACTOR  # who asks: the IAM principal, the token's name, or `local`
    reason: str = ""
    winner: str | None = None  # conclude only; None: the decision's current winner
    variant: str | None = None  # retire-variant, add-variant and reinstate only
    model: str | None = None  # add-variant only: what the embedded server calls for it
    initial_weight: float = 1.0  # add-variant only: its weight in warm-up
    weights: dict[str, float] | None = None  # weights only: by variant
    # Only from this lifecycle version (what the caller decided on), else a lost race (409):
    # auto-conclude acts on what it read, never on a state a person changed meanwhile.
    if_version: int | None = None


@dataclass(frozen=True, slots=True)
class EndpointView:
    """An endpoint as an operator sees it: its record, figures and audit log."""

    endpoint: Endpoint
    figures: Figures
    audit_log: list[AuditEntry] = field(default_factory=list)

    @property
    def allocation(self) -> dict[str, float]:
        """What a new user gets now: the strategy's, unless paused or concluded."""
        return allocation_now(self.endpoint, self.figures)

    @property
    def decision(self) -> dict[str, Any]:
        """The decision, its advice for the state the experiment is in."""
        return decision_now(self.endpoint, self.figures)

    @property
    def allowed_actions(self) -> tuple[Action, ...]:
        """The endpoint's (`Endpoint.allowed_actions`), but reinstating only while a
        guardrail demotes a variant: what clients (the dashboard) offer."""
        demoted = self.figures.demoted
        return tuple(
            a for a in self.endpoint.allowed_actions if a is not Action.REINSTATE or demoted
        )


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
    """POST /admin/pause, resume, conclude, retire-variant, weights, reinstate: one
    compare-and-set each, so of two racing changes one is stored and the other answered
    409; counters are never written.

    Concluding where the model host keeps weights of its own (SageMaker) takes two steps,
    so that no failure, and no crash between them, leaves a state that says more than is
    true: (1) store `concluded` with the winner and promotion `pending` (the API serves the
    winner from then on); (2) set the host's weights (winner 1, others 0), then store
    promotion `done`. A failed or throttled weight update answers its error (503 or 502,
    naming the call and what SageMaker said) and leaves the promotion pending, shown to
    all; concluding again (with the same winner, or none) skips step 1 and finishes it,
    and the host's promotion is idempotent, so a retry after any crash is safe.

    The other order (weights first, then the state, undoing the weights if the write
    fails) was rejected: a crash between the two would leave SageMaker routing everyone
    to a winner while the API, still `running`, goes on allocating, with nothing showing
    that anything is left to do; and the undo is itself a call that can fail.
    """

    def __init__(
        self, *, store: Store, endpoints: EndpointCache, clock: Clock, model_host: ModelHost
    ) -> None:
        self.store = store
        self.endpoints = endpoints
        self.clock = clock
        self.model_host = model_host

    @classmethod
    def from_ports(cls, ports: Ports) -> ChangeLifecycle:
        return cls(
            store=ports.store,
            endpoints=ports.endpoints,
            clock=ports.clock,
            model_host=ports.model_host,
        )

    def __call__(self, change: LifecycleChange) -> EndpointView:
        name = change.endpoint_name
        endpoint = _registered(self.store, name)
        before = endpoint.lifecycle
        if change.if_version is not None and before.version != change.if_version:
            raise lost_race(name)
        if change.action is Action.CONCLUDE and before.promotion is Promotion.PENDING:
            return self._promote(before, self._pending_winner(endpoint, change.winner), change)
        before.check(name, change.action)  # the state first: 409 whatever the input
        winner = None
        new_variant = None
        details: dict[str, Any] = {}
        if change.action is Action.RETIRE_VARIANT:
            after = before.retiring(name, self._retirable(endpoint, change.variant))
        elif change.action is Action.ADD_VARIANT:
            after, new_variant = self._adding(endpoint, change)
            details["model"] = change.model
        elif change.action is Action.WEIGHTS:
            weights = self._weights(endpoint, change.weights or {})
            after = before.weighted(name, weights)
            details["weights"] = weights
        elif change.action is Action.REINSTATE:
            variant = self._demoted(endpoint, change.variant)
            counts = next(v.counts for v in endpoint.variants if v.variant_name == variant)
            after = before.reinstating(name, variant, guardrails.baseline(counts))
        else:
            promotion = None
            if change.action is Action.CONCLUDE:
                winner = self._winner(endpoint, change.winner)
                promotion = Promotion.PENDING if self.model_host.keeps_weights else None
            after = before.moved(name, change.action, winner, promotion)  # 409 if illegal
        details |= {"from": str(before.state), "to": str(after.state), "version": after.version}
        if winner is not None:
            details["winner"] = winner
        if after.promotion is not None:
            details["promotion"] = str(after.promotion)
        if change.variant is not None:
            details["variant"] = change.variant
        entry = AuditEntry(self.clock.now(), change.actor, change.action, change.reason, details)
        if not self.store.change_lifecycle(name, before, after, entry, new_variant):
            raise lost_race(name)
        _log_change(name, after, entry)
        refresh_figures(self.store, name)  # a retired, added or weighted variant moves it
        self.endpoints.forget(name)
        if after.promotion is Promotion.PENDING:
            return self._promote(after, winner, change)
        return self._view(name)

    def _view(self, name: str) -> EndpointView:
        # Read through the cache: the changed record is at once the one this process's
        # requests serve by, and the one its fallback serves by should the store go down.
        changed = self.endpoints.served(name, self.clock.now()).endpoint
        return EndpointView(changed, figures_of(changed), self.store.audit_log(name))

    def _promote(
        self, concluded: Lifecycle, winner: str | None, change: LifecycleChange
    ) -> EndpointView:
        """Step 2 of a conclusion: the host's weights, then promotion `done` (see the class)."""
        name = change.endpoint_name
        assert winner is not None and concluded.promotion is Promotion.PENDING
        try:
            weights = self.model_host.promote(name, winner)
        except AbtestError as error:
            raise type(error)(
                f"{error.message}; {name!r} is concluded with winner {winner!r}, its promotion "
                "in the model host pending: conclude again to finish it",
                details=[*error.details, {"field": "promotion", "message": "pending"}],
            ) from error
        done = concluded.promoted()
        details = {
            "winner": winner,
            "promotion": str(done.promotion),
            "version": done.version,
            "weights": weights,  # what the host routes by now
        }
        entry = AuditEntry(self.clock.now(), change.actor, Action.PROMOTE, change.reason, details)
        # Lost, only another conclusion finishing the same promotion can have moved it on
        # (concluded is final): done either way, or the loser of a race is told so.
        if (
            not self.store.change_lifecycle(name, concluded, done, entry)
            and _registered(self.store, name).lifecycle.promotion is not Promotion.DONE
        ):
            raise lost_race(name)
        _log_change(name, done, entry)
        self.endpoints.forget(name)
        return self._view(name)

    def _pending_winner(self, endpoint: Endpoint, named: str | None) -> str | None:
        """Concluding again while the promotion is pending finishes it, for the stored winner
        only: 409 naming it if another is named."""
        winner = endpoint.lifecycle.winner
        if named is not None and named != winner:
            raise ConflictError(
                f"winner: {endpoint.endpoint_name!r} is concluded with winner {winner!r}, its "
                f"promotion pending; conclude again with {winner!r} (or none) to finish it",
                details=[{"field": "winner", "message": f"concluded with {winner!r}"}],
            )
        return winner

    def _adding(
        self, endpoint: Endpoint, change: LifecycleChange
    ) -> tuple[Lifecycle, VariantConfig]:
        raise NotImplementedError("AddVariant adds: it can make the variant callable")

    def _weights(self, endpoint: Endpoint, weights: dict[str, float]) -> dict[str, float]:
        """`weights` if the endpoint allocates by them: 409 naming `strategy` otherwise, 400
        naming `weights` for a variant not serving or a result of all zeros."""
        if endpoint.strategy != bandit.WeightedSampling.name:
            raise ConflictError(
                f"strategy: {endpoint.endpoint_name!r} allocates by {endpoint.strategy}, "
                f"not by weights (only {bandit.WeightedSampling.name} does)",
                details=[{"field": "strategy", "message": endpoint.strategy}],
            )
        serving = [v.variant_name for v in endpoint.serving_variants]
        unknown = [name for name in weights if name not in serving]
        if unknown:
            raise BadRequestError.field(
                "weights",
                f"{', '.join(map(repr, unknown))}: not a serving variant "
                f"(serving: {', '.join(serving)})",
            )
        result = endpoint.weights | weights
        if not any(result[name] > 0 for name in serving):
            raise BadRequestError.field("weights", "the serving variants' weights are all 0")
        return weights

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
        """The variant named, or the decision's current winner; 409 if there is none, or
        the one named is retired (its model may be gone with the config that dropped it:
        the concluded endpoint, which cannot move on, would fail every call)."""
        if named is not None:
            if named not in endpoint.variant_names:
                raise ConflictError(
                    f"winner: {named!r} is not a variant of {endpoint.endpoint_name!r} "
                    f"(variants: {', '.join(endpoint.variant_names)})",
                    details=[{"field": "winner", "message": "not on the endpoint"}],
                )
            if named in endpoint.lifecycle.retired:
                serving = ", ".join(v.variant_name for v in endpoint.serving_variants)
                raise ConflictError(
                    f"winner: {named!r} is retired on {endpoint.endpoint_name!r}: it serves no "
                    f"one, so it cannot serve everyone (serving: {serving})",
                    details=[{"field": "winner", "message": "retired"}],
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


def _log_change(name: str, lifecycle: Lifecycle, entry: AuditEntry) -> None:
    """One structured line per stored change: on AWS the dashboard's lifecycle widget
    queries these (Logs Insights); the audit log (`/admin/show`) remains the record."""
    logger.info(
        "lifecycle of %s: %s by %s, now %s",
        name,
        entry.action,
        entry.actor,
        lifecycle.state,
        extra=dict(
            zip(
                LIFECYCLE_LOG_FIELDS,
                (
                    name,
                    str(entry.action),
                    str(lifecycle.state),
                    lifecycle.winner,
                    None if lifecycle.promotion is None else str(lifecycle.promotion),
                    entry.actor,
                    lifecycle.version,
                ),
                strict=True,
            )
        ),
    )


class AddVariant(ChangeLifecycle):
    """POST /admin/add-variant: a challenger joins a running or paused experiment, at zero,
    warming up alone (`abtest.usecases.endpoints`); the others keep their counters. Its
    model is made callable first (`EndpointCatalog.prepare_variant`), and the variant, its
    model, the lifecycle and the audit entry are one compare-and-set."""

    def __init__(
        self,
        *,
        store: Store,
        endpoints: EndpointCache,
        clock: Clock,
        model_host: ModelHost,
        catalog: EndpointCatalog,
    ) -> None:
        super().__init__(store=store, endpoints=endpoints, clock=clock, model_host=model_host)
        self.catalog = catalog

    @classmethod
    def from_ports(cls, ports: Ports) -> AddVariant:
        return cls(
            store=ports.store,
            endpoints=ports.endpoints,
            clock=ports.clock,
            model_host=ports.model_host,
            catalog=ports.catalog,
        )

    def _adding(
        self, endpoint: Endpoint, change: LifecycleChange
    ) -> tuple[Lifecycle, VariantConfig]:
        name, variant = endpoint.endpoint_name, change.variant
        assert variant is not None  # the request requires it
        if variant in endpoint.variant_names:
            state = "retired" if variant in endpoint.lifecycle.retired else "serving"
            raise ConflictError(
                f"variant: {variant!r} is already a variant of {name!r} ({state}); "
                "a new challenger needs a new name",
                details=[{"field": "variant", "message": f"already there ({state})"}],
            )
        after = endpoint.lifecycle.adding(name, variant, change.model)  # 409 once concluded
        self.catalog.prepare_variant(name, variant, change.model)
        return after, VariantConfig(variant, change.initial_weight)
