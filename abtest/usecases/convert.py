"""Convert: credit a reward to the variant the user is assigned to, once per inference_id."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from abtest.errors import BadRequestError, NotFoundError, StoreUnavailableError
from abtest.events import conversion_event, reward_problem
from abtest.ids import new_id
from abtest.ports import Clock, Count, EventSink, Store, Telemetry
from abtest.usecases import AssignmentTtl, Ports, ttl_seconds
from abtest.usecases.endpoints import UNRANDOMIZED_STRATEGIES, EndpointCache

logger = logging.getLogger("abtest")


@dataclass(frozen=True, slots=True)
class Conversion:
    endpoint_name: str
    user_id: str
    inference_id: str | None = None  # None: cannot be recognised as a repeat, always counts
    reward: float = 1.0


@dataclass(frozen=True, slots=True)
class ConversionResult:
    endpoint_name: str
    user_id: str
    inference_id: str
    endpoint_variant: str
    strategy: str
    reward: float
    duplicate: bool
    late: bool = False  # later than the attribution window: logged, not counted


class Convert:
    """POST /conversion. A user with no assignment gets a 404, never a fresh pick."""

    def __init__(
        self,
        *,
        endpoints: EndpointCache,
        store: Store,
        events: EventSink,
        clock: Clock,
        telemetry: Telemetry,
        assignment_ttl_seconds: AssignmentTtl,
    ) -> None:
        self.endpoints = endpoints
        self.store = store
        self.events = events
        self.clock = clock
        self.telemetry = telemetry
        self.assignment_ttl_seconds = assignment_ttl_seconds

    @classmethod
    def from_ports(cls, ports: Ports) -> Convert:
        return cls(
            endpoints=ports.endpoints,
            store=ports.store,
            events=ports.events,
            clock=ports.clock,
            telemetry=ports.telemetry,
            assignment_ttl_seconds=ports.assignment_ttl_seconds,
        )

    def __call__(self, request: Conversion) -> ConversionResult:
        now = self.clock.now()
        name, user_id = request.endpoint_name, request.user_id
        settings = self.endpoints.served(name, now).endpoint.settings
        problem = reward_problem(request.reward, settings.reward)
        if problem:
            raise BadRequestError.field("reward", problem)
        assignment = self.store.get_assignment(name, user_id, now)
        if assignment is None:
            raise NotFoundError(
                f"user_id: {user_id!r} has no assignment on {name!r}; invoke before converting",
                details=[{"field": "user_id", "message": "no assignment on this endpoint"}],
            )
        inference_id = request.inference_id or new_id()
        late = now - assignment.assigned_at > settings.attribution_window_seconds
        # The event first, the marker after: a failure between them leaves no marker, so
        # the client's retry logs the event again and aggregation counts it once. The
        # other order loses the conversion (the retry would be told it is a duplicate).
        keyed = request.inference_id is not None
        duplicate = keyed and self.store.conversion_logged(name, user_id, inference_id, now)
        if duplicate:
            self.telemetry.count(Count.DUPLICATE_CONVERSIONS, name, assignment.variant_name)
        else:
            # EventLogUnavailableError propagates: a 503, and the client's retry counts once.
            self.events.put(
                [
                    conversion_event(
                        now=now,
                        endpoint_name=name,
                        variant_name=assignment.variant_name,
                        user_id=user_id,
                        inference_id=inference_id,
                        strategy=assignment.strategy,
                        reward=float(request.reward),
                        assigned_at=assignment.assigned_at,
                        # None: a paused or concluded endpoint assigned it, not the
                        # experiment's draw, so aggregation counts no trial's conversion.
                        propensity=None
                        if assignment.strategy in UNRANDOMIZED_STRATEGIES
                        else assignment.propensity,
                        late=late,
                    )
                ]
            )
            if keyed:
                self._mark_logged(name, user_id, inference_id, now)
        return ConversionResult(
            endpoint_name=name,
            user_id=user_id,
            inference_id=inference_id,
            endpoint_variant=assignment.variant_name,
            strategy=assignment.strategy,
            reward=float(request.reward),
            duplicate=duplicate,
            late=late,
        )

    def _mark_logged(self, name: str, user_id: str, inference_id: str, now: float) -> None:
        ttl = int(now + ttl_seconds(self.assignment_ttl_seconds, name))
        try:
            self.store.mark_conversion_logged(name, user_id, inference_id, ttl, now)
        except StoreUnavailableError as error:
            # The event is in the log, so the answer stands; a repeat is logged again and
            # aggregation still counts it once.
            logger.warning("conversion %s logged but not marked: %s", inference_id, error)
