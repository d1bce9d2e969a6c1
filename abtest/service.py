"""The experiment logic, written once over the ports: invoke, convert, stats, aggregate, register.

Knows no AWS and no HTTP. Entry points (Lambda handlers, the embedded server)
parse a request into a model from `abtest.http.bodies`, call one method here, and
shape the response.
"""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass, field

import bandit
from abtest import aggregation
from abtest.adapters.telemetry import CountingTelemetry
from abtest.clock import SystemClock
from abtest.errors import ConflictError, NotFoundError, StoreUnavailableError
from abtest.events import conversion_event, invocation_event
from abtest.http.bodies import (
    ConversionRequest,
    ConversionResponse,
    InvocationRequest,
    InvocationResponse,
    StatsRequest,
    StatsResponse,
    VariantMetricsBody,
)
from abtest.ports import (
    Clock,
    EndpointCatalog,
    EventArchive,
    EventSink,
    ModelEndpoint,
    Store,
    Telemetry,
)
from abtest.records import DELETED, AggregationResult, Assignment, Endpoint

logger = logging.getLogger("abtest")

MANUAL = "Manual"


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    assignment_ttl_seconds: int = 90 * 24 * 3600
    # Metrics change only when aggregation runs (every buffer interval), so a
    # short per-process cache saves a store read on every request.
    metrics_cache_seconds: float = 5.0


@dataclass(slots=True)
class _Cached:
    endpoint: Endpoint | None
    read_at: float
    strategy: bandit.Strategy | None = field(default=None)


class Service:
    def __init__(
        self,
        store: Store,
        events: EventSink | None = None,
        models: ModelEndpoint | None = None,
        catalog: EndpointCatalog | None = None,
        clock: Clock | None = None,
        settings: ServiceSettings | None = None,
        telemetry: Telemetry | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.events = events
        self.models = models
        self.catalog = catalog
        self.clock = clock or SystemClock()
        self.settings = settings or ServiceSettings()
        self.telemetry = telemetry or CountingTelemetry()
        self.rng = rng or random.Random()
        self._cache: dict[str, _Cached] = {}

    # -- request path ---------------------------------------------------------------

    def invoke(self, request: InvocationRequest) -> InvocationResponse:
        now = self.clock.now()
        name = request.endpoint_name
        user_id = request.user_id or uuid.uuid4().hex
        inference_id = request.inference_id or uuid.uuid4().hex
        target: str | None
        propensity: float | None
        try:
            cached = self._endpoint(name, now)
            if request.endpoint_variant is not None:
                if request.endpoint_variant not in cached.endpoint.variant_names:
                    raise ConflictError(
                        f"endpoint_variant: {request.endpoint_variant!r} is not a variant of "
                        f"{name!r} (variants: {', '.join(cached.endpoint.variant_names)})",
                        details=[{"field": "endpoint_variant", "message": "not on the endpoint"}],
                    )
                target, strategy, propensity, kind = request.endpoint_variant, MANUAL, 1.0, "manual"
            else:
                assignment, kind = self._assignment(cached, user_id, now)
                target, strategy = assignment.variant_name, assignment.strategy
                propensity = assignment.propensity
        except StoreUnavailableError as error:
            # No assignment can be read or kept: the endpoint's own weights route, and we say so.
            logger.warning("store unavailable (%s); %s served by its own weights", error, name)
            self.telemetry.count("Fallbacks", name)
            target, strategy, propensity, kind = None, "WeightedSampling", None, "fallback"
        result = self._call_model(request, target, inference_id)
        self._log(
            invocation_event(
                now=now,
                endpoint_name=name,
                variant_name=result.variant_name,
                user_id=user_id,
                inference_id=inference_id,
                strategy=strategy,
                propensity=propensity,
                assignment=kind,
            )
        )
        return InvocationResponse(
            endpoint_name=name,
            user_id=user_id,
            inference_id=inference_id,
            strategy=strategy,
            target_variant=target,
            endpoint_variant=result.variant_name,
            assignment=kind,
            propensity=propensity,
            predictions=result.predictions,
        )

    def convert(self, request: ConversionRequest) -> ConversionResponse:
        now = self.clock.now()
        name, user_id = request.endpoint_name, request.user_id
        self._endpoint(name, now)
        assignment = self.store.get_assignment(name, user_id, now)
        if assignment is None:
            raise NotFoundError(
                f"user_id: {user_id!r} has no assignment on {name!r}; invoke before converting",
                details=[{"field": "user_id", "message": "no assignment on this endpoint"}],
            )
        inference_id = request.inference_id or uuid.uuid4().hex
        duplicate = False
        if request.inference_id is not None:
            ttl = int(now + self.settings.assignment_ttl_seconds)
            duplicate = not self.store.record_conversion(name, user_id, inference_id, ttl, now)
        if duplicate:
            self.telemetry.count("DuplicateConversions", name, assignment.variant_name)
        else:
            self._log(
                conversion_event(
                    now=now,
                    endpoint_name=name,
                    variant_name=assignment.variant_name,
                    user_id=user_id,
                    inference_id=inference_id,
                    strategy=assignment.strategy,
                    reward=float(request.reward),
                )
            )
        return ConversionResponse(
            endpoint_name=name,
            user_id=user_id,
            inference_id=inference_id,
            endpoint_variant=assignment.variant_name,
            strategy=assignment.strategy,
            reward=float(request.reward),
            duplicate=duplicate,
        )

    def stats(self, request: StatsRequest) -> StatsResponse:
        endpoint = self.store.get_endpoint(request.endpoint_name)
        if endpoint is None:
            raise _unknown_endpoint(request.endpoint_name)
        metrics = endpoint.variant_metrics
        return StatsResponse(
            endpoint_name=endpoint.endpoint_name,
            strategy=endpoint.strategy,
            epsilon=endpoint.strategy_params.get("epsilon"),
            strategy_params=endpoint.strategy_params,
            warmup=endpoint.warmup,
            status=endpoint.status,
            variant_metrics=[
                VariantMetricsBody(endpoint_name=endpoint.endpoint_name, **_metrics_fields(m))
                for m in metrics
            ],
            allocation=current_allocation(endpoint),
            decision=_decision(metrics),
        )

    # -- background path ------------------------------------------------------------

    def aggregate(self, archive: EventArchive, object_key: str) -> AggregationResult:
        result = aggregation.aggregate(self.store, archive, object_key, self.clock.now())
        for endpoint_name in result.counts:
            self._cache.pop(endpoint_name, None)
        return result

    def register(self, endpoint_name: str) -> Endpoint:
        if self.catalog is None:
            raise RuntimeError("this service was built without an endpoint catalog")
        config = self.catalog.describe(endpoint_name)
        bandit.get_strategy(config.strategy, config.strategy_params)  # fail before writing
        endpoint = self.store.register_endpoint(config, self.clock.now())
        self._cache.pop(endpoint_name, None)
        logger.info(
            "registered %s: strategy=%s strategy_params=%s warmup=%s variants=%s",
            endpoint_name,
            config.strategy,
            config.strategy_params,
            config.warmup,
            [v.name for v in config.variants],
        )
        return endpoint

    def deregister(self, endpoint_name: str) -> None:
        self.store.deregister_endpoint(endpoint_name, self.clock.now())
        self._cache.pop(endpoint_name, None)
        logger.info("deregistered %s: no longer served, statistics kept", endpoint_name)

    # -- internals ------------------------------------------------------------------

    def _endpoint(self, name: str, now: float) -> _Cached:
        """The endpoint's metrics record, read at most once per cache interval."""
        cached = self._cache.get(name)
        if cached is None or now - cached.read_at >= self.settings.metrics_cache_seconds:
            endpoint = self.store.get_endpoint(name)
            strategy = configured_strategy(endpoint) if endpoint else None
            cached = self._cache[name] = _Cached(endpoint, now, strategy)
        if cached.endpoint is None or cached.endpoint.status == DELETED:
            raise _unknown_endpoint(name)
        return cached

    def _assignment(self, cached: _Cached, user_id: str, now: float) -> tuple[Assignment, str]:
        endpoint = cached.endpoint
        assert endpoint is not None and cached.strategy is not None
        existing = self.store.get_assignment(endpoint.endpoint_name, user_id, now)
        if existing is not None and existing.variant_name in endpoint.variant_names:
            return existing, "existing"
        selection = bandit.select(
            cached.strategy, endpoint.variant_metrics, self.rng, warmup=endpoint.warmup
        )
        new = Assignment(
            endpoint_name=endpoint.endpoint_name,
            user_id=user_id,
            variant_name=selection.variant_name,
            strategy=selection.strategy,
            propensity=selection.propensity,
            assigned_at=now,
            ttl=int(now + self.settings.assignment_ttl_seconds),
        )
        # An assignment to a variant a re-registration removed is replaced like an
        # expired one: conditional on its ttl, so concurrent requests still agree.
        condition_now = now if existing is None else max(now, existing.ttl)
        stored = self.store.create_assignment(new, condition_now)
        return stored, "new" if stored == new else "existing"

    def _call_model(self, request: InvocationRequest, variant: str | None, inference_id: str):
        if self.models is None:
            raise RuntimeError("this service was built without model endpoints")
        try:
            return self.models.invoke(
                request.endpoint_name,
                variant,
                request.payload(),
                request.content_type,
                inference_id,
            )
        except Exception:
            self.telemetry.count("ModelErrors", request.endpoint_name, variant)
            raise

    def _log(self, event: dict) -> None:
        if self.events is None:
            raise RuntimeError("this service was built without an event sink")
        self.events.put([event])


def configured_strategy(endpoint: Endpoint) -> bandit.Strategy:
    return bandit.get_strategy(endpoint.strategy, endpoint.strategy_params)


def current_allocation(endpoint: Endpoint) -> dict[str, float]:
    """The probabilities a new user would be assigned with now (warm-up included)."""
    strategy = bandit.deciding_strategy(
        configured_strategy(endpoint), endpoint.variant_metrics, endpoint.warmup
    )
    return strategy.allocation(endpoint.variant_metrics)


def _decision(metrics: tuple[bandit.VariantMetrics, ...]) -> dict:
    # Imported here: statistics are for /stats, not for the invocation path's cold start.
    from bandit.stats import decision

    return decision(metrics).as_dict()


def _metrics_fields(metrics: bandit.VariantMetrics) -> dict:
    return {
        "variant_name": metrics.variant_name,
        "initial_variant_weight": metrics.initial_variant_weight,
        "invocation_count": metrics.invocation_count,
        "conversion_count": metrics.conversion_count,
        "reward_sum": metrics.reward_sum,
    }


def _unknown_endpoint(name: str) -> NotFoundError:
    return NotFoundError(
        f"endpoint_name: {name!r} is not a registered endpoint",
        details=[{"field": "endpoint_name", "message": "not registered"}],
    )
