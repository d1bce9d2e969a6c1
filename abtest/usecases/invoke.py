"""Invoke: assign (or recall) the user's variant, call that model variant, log the invocation."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any, NamedTuple

from abtest.errors import (
    ConflictError,
    EventLogUnavailableError,
    ModelError,
    StoreUnavailableError,
)
from abtest.events import ERROR, OK, invocation_line
from abtest.ids import new_id
from abtest.lifecycle import State
from abtest.ports import Clock, Count, EventSink, ModelEndpoint, ModelResult, Store, Telemetry
from abtest.records import Assignment, AssignmentKind
from abtest.usecases import AssignmentTtl, Ports, ttl_seconds
from abtest.usecases.endpoints import (
    CONCLUDED_STRATEGY,
    PAUSED_STRATEGY,
    EndpointCache,
    ServedEndpoint,
)

logger = logging.getLogger("abtest")

# The `strategy` reported when the request named the variant, or the store was down (the
# fallback: a draw by the last-known allocation's weights, or by the endpoint's own).
MANUAL_STRATEGY = "Manual"
FALLBACK_STRATEGY = "WeightedSampling"


@dataclass(frozen=True, slots=True)
class Invocation:
    endpoint_name: str
    data: str  # the payload exactly as the model receives it
    content_type: str = "application/json"
    user_id: str | None = None  # None: an anonymous user, given a fresh id
    inference_id: str | None = None
    endpoint_variant: str | None = None  # a manual override
    context: dict[str, str | float | bool] | None = None  # logged, for off-policy evaluation


@dataclass(frozen=True, slots=True)
class InvocationResult:
    endpoint_name: str
    user_id: str
    inference_id: str
    strategy: str
    target_variant: str | None  # None on a fallback with nothing known: the host chose
    endpoint_variant: str  # the variant that answered
    assignment: AssignmentKind
    propensity: float | None
    predictions: Any


class _Choice(NamedTuple):
    """Who picked the variant, and with what probability (a tuple: made on every request)."""

    target_variant: str | None
    strategy: str
    propensity: float | None
    kind: AssignmentKind


class Invoke:
    """POST /invocation: sticky assignments, a manual override, a fallback if the store is down."""

    def __init__(
        self,
        *,
        endpoints: EndpointCache,
        store: Store,
        models: ModelEndpoint,
        events: EventSink,
        clock: Clock,
        telemetry: Telemetry,
        assignment_ttl_seconds: AssignmentTtl,
        rng: random.Random,
    ) -> None:
        self.endpoints = endpoints
        self.store = store
        self.models = models
        self.events = events
        self.clock = clock
        self.telemetry = telemetry
        self.assignment_ttl_seconds = assignment_ttl_seconds
        self.rng = rng

    @classmethod
    def from_ports(cls, ports: Ports) -> Invoke:
        return cls(
            endpoints=ports.endpoints,
            store=ports.store,
            models=ports.models,
            events=ports.events,
            clock=ports.clock,
            telemetry=ports.telemetry,
            assignment_ttl_seconds=ports.assignment_ttl_seconds,
            rng=ports.rng,
        )

    def __call__(self, request: Invocation) -> InvocationResult:
        now = self.clock.now()
        user_id = request.user_id or new_id()
        inference_id = request.inference_id or new_id()
        choice = self._choose(request, user_id, now)
        started = self.clock.monotonic()
        try:
            result = self._call_model(request, choice.target_variant, inference_id)
        except ModelError:
            # Logged too (outcome "error"): the guardrail reads it. A failing variant the
            # endpoint's own weights picked (a fallback with nothing known) is unknown:
            # nothing to log.
            if choice.target_variant is not None:
                self._log(
                    request, now, choice, choice.target_variant, user_id, inference_id,
                    _elapsed_ms(started, self.clock.monotonic()), ERROR,
                )  # fmt: skip
            raise
        self._log(
            request, now, choice, result.variant_name, user_id, inference_id,
            _elapsed_ms(started, self.clock.monotonic()), OK,
        )  # fmt: skip
        # In field order, not by keyword: a frozen dataclass takes keywords at twice the cost.
        return InvocationResult(
            request.endpoint_name,  # endpoint_name
            user_id,
            inference_id,
            choice.strategy,
            choice.target_variant,
            result.variant_name,  # endpoint_variant
            choice.kind,  # assignment
            choice.propensity,
            result.predictions,
        )

    def _log(
        self,
        request: Invocation,
        now: float,
        choice: _Choice,
        variant: str,
        user_id: str,
        inference_id: str,
        latency_ms: float,
        outcome: str,
    ) -> None:
        # Written straight to its line: the same bytes as the event's dict, encoded.
        line = invocation_line(
            now=now,
            endpoint_name=request.endpoint_name,
            variant_name=variant,
            user_id=user_id,
            inference_id=inference_id,
            strategy=choice.strategy,
            propensity=choice.propensity,
            assignment=choice.kind,
            latency_ms=latency_ms,
            outcome=outcome,
            context=request.context or None,
        )
        try:
            self.events.put_lines([line])
        except EventLogUnavailableError as error:
            # The answer (predictions, or the model's error) exists and the event is in the
            # function's log for an operator; failing the request now would only cost the
            # user their answer.
            logger.error("invocation %s answered but not logged: %s", inference_id, error)
            self.telemetry.count(Count.UNLOGGED_INVOCATIONS, request.endpoint_name)

    def _choose(self, request: Invocation, user_id: str, now: float) -> _Choice:
        name = request.endpoint_name
        try:
            served = self.endpoints.served(name, now)
            if request.endpoint_variant is not None:
                return _manual(served, request.endpoint_variant)
            winner = served.endpoint.lifecycle.winner
            if served.endpoint.lifecycle.state is State.CONCLUDED and winner is not None:
                return self._concluded(served, winner, user_id, now)
            assignment, kind = self._assignment(served, user_id, now)
        except StoreUnavailableError as error:
            return self._fallback(request, user_id, now, error)
        return _Choice(assignment.variant_name, assignment.strategy, assignment.propensity, kind)

    def _fallback(
        self, request: Invocation, user_id: str, now: float, error: StoreUnavailableError
    ) -> _Choice:
        """No assignment can be read or kept. The endpoint as this process last read it
        still says who may serve: its winner; a returning user this process saw, their own
        variant; its champion if paused; else a draw by its allocation, never a retired or
        demoted variant, logged with the draw's propensity. Only a process that never read
        it leaves the choice to the host's own weights."""
        name = request.endpoint_name
        known = self.endpoints.last_known(name)
        if known is not None and request.endpoint_variant is not None:
            # A manual override stores nothing: the record it is checked against is enough.
            return _manual(known, request.endpoint_variant)
        self.telemetry.count(Count.FALLBACKS, name)
        if known is None:
            logger.warning("store unavailable (%s); %s served by its own weights", error, name)
            return _Choice(None, FALLBACK_STRATEGY, None, AssignmentKind.FALLBACK)
        logger.warning("store unavailable (%s); %s served as last read", error, name)
        lifecycle = known.endpoint.lifecycle
        if lifecycle.state is State.CONCLUDED and lifecycle.winner is not None:
            return _Choice(lifecycle.winner, FALLBACK_STRATEGY, 1.0, AssignmentKind.FALLBACK)
        # The user's stored assignment, as this process read or made it: what the store
        # would answer, since nothing reassigns a user but expiry, a retirement or a
        # conclusion. Served as the existing assignment it is, so it counts as when the
        # store is up.
        remembered = known.remembered(user_id, now)
        if remembered is not None:
            return _Choice(
                remembered.variant_name,
                remembered.strategy,
                remembered.propensity,
                AssignmentKind.EXISTING,
            )
        # The entry's allocation: the paused one while paused, demoted variants at 0 (never
        # drawn), retired ones absent.
        selection = known.allocation.pick(self.rng)
        return _Choice(
            selection.variant_name, FALLBACK_STRATEGY, selection.propensity, AssignmentKind.FALLBACK
        )

    def _assignment(
        self, served: ServedEndpoint, user_id: str, now: float
    ) -> tuple[Assignment, AssignmentKind]:
        endpoint = served.endpoint
        serving = served.serving
        remembered = served.remembered(user_id, now)
        if remembered is not None:
            return remembered, AssignmentKind.EXISTING  # no store read: see ServedEndpoint
        existing = self.store.get_assignment(endpoint.endpoint_name, user_id, now)
        if existing is not None and existing.variant_name in serving:
            served.remember(existing)
            return existing, AssignmentKind.EXISTING
        selection = served.allocation.pick(self.rng)
        new = Assignment(
            endpoint_name=endpoint.endpoint_name,
            user_id=user_id,
            variant_name=selection.variant_name,
            strategy=selection.strategy,
            propensity=selection.propensity,
            assigned_at=now,
            ttl=int(now + ttl_seconds(self.assignment_ttl_seconds, endpoint.endpoint_name)),
        )
        # An assignment to a variant a re-registration removed, or one retired, is replaced
        # like an expired one: conditional on its ttl, so concurrent requests still agree.
        condition_now = now if existing is None else max(now, existing.ttl)
        stored = self.store.create_assignment(new, condition_now)
        served.remember(stored)  # the store's answer, whoever made it
        if stored != new:
            return stored, AssignmentKind.EXISTING
        # A paused endpoint's champion is no draw of the experiment: its user is no trial.
        return (
            stored,
            AssignmentKind.PAUSED if new.strategy == PAUSED_STRATEGY else AssignmentKind.NEW,
        )

    def _concluded(self, served: ServedEndpoint, winner: str, user_id: str, now: float) -> _Choice:
        """The winner serves everyone. A user assigned elsewhere is reassigned to it (once),
        so their conversions credit the variant that now serves them; these invocations
        are counted, with propensity 1, the true probability of the winner now."""
        name = served.endpoint.endpoint_name
        existing = self.store.get_assignment(name, user_id, now)
        if existing is None or existing.variant_name != winner:
            reassigned = Assignment(
                endpoint_name=name,
                user_id=user_id,
                variant_name=winner,
                strategy=CONCLUDED_STRATEGY,
                propensity=1.0,
                assigned_at=now,
                ttl=int(now + ttl_seconds(self.assignment_ttl_seconds, name)),
            )
            self.store.create_assignment(
                reassigned, now if existing is None else max(now, existing.ttl)
            )
        return _Choice(winner, CONCLUDED_STRATEGY, 1.0, AssignmentKind.CONCLUDED)

    def _call_model(
        self, request: Invocation, variant: str | None, inference_id: str
    ) -> ModelResult:
        try:
            return self.models.invoke(
                request.endpoint_name, variant, request.data, request.content_type, inference_id
            )
        except Exception:
            self.telemetry.count(Count.MODEL_ERRORS, request.endpoint_name, variant)
            raise


def _elapsed_ms(started: float, ended: float) -> float:
    """The model call's duration by the injected clock's monotonic seconds, in milliseconds
    to a tenth (never negative, whatever a test's clock does)."""
    return round(max(0.0, ended - started) * 1000.0, 1)


def _manual(served: ServedEndpoint, variant: str) -> _Choice:
    variants = served.endpoint.variant_names
    if variant not in variants:
        raise ConflictError(
            f"endpoint_variant: {variant!r} is not a variant of "
            f"{served.endpoint.endpoint_name!r} (variants: {', '.join(variants)})",
            details=[{"field": "endpoint_variant", "message": "not on the endpoint"}],
        )
    return _Choice(variant, MANUAL_STRATEGY, 1.0, AssignmentKind.MANUAL)
