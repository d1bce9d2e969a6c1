"""The admin routes' request and response bodies: the experiment's lifecycle, read and
changed by an operator (`abtest endpoints`, the dashboard). Apart from the application's
routes' bodies, so that a function serving those imports none of these.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, ClassVar

from pydantic import Field, StrictFloat, StrictStr

from abtest.config_types import NAME_PATTERN
from abtest.http.bodies import EXAMPLE_ENDPOINT, Body, RequestBody, example
from abtest.http.stats_bodies import VariantMetricsBody, variant_bodies
from abtest.lifecycle import Action
from abtest.records import Endpoint
from abtest.usecases.admin import EndpointList, EndpointView, LifecycleChange

MAX_REASON_LENGTH = 1000


class ListRequest(RequestBody):
    model_config = example()

    def to_core(self, actor: str) -> None:
        return None


class EndpointRequest(RequestBody):
    model_config = example(endpoint_name=EXAMPLE_ENDPOINT)

    endpoint_name: StrictStr = Field(min_length=1, max_length=63, pattern=NAME_PATTERN)

    def to_core(self, actor: str) -> str:
        return self.endpoint_name


class _ChangeRequest(RequestBody):
    endpoint_name: StrictStr = Field(min_length=1, max_length=63, pattern=NAME_PATTERN)
    reason: StrictStr = Field(
        default="", max_length=MAX_REASON_LENGTH, description="Why, for the audit log"
    )
    action: ClassVar[Action]

    def to_core(self, actor: str) -> LifecycleChange:
        return LifecycleChange(self.endpoint_name, self.action, actor, self.reason)


class PauseRequest(_ChangeRequest):
    model_config = example(endpoint_name=EXAMPLE_ENDPOINT, reason="model retraining")
    action = Action.PAUSE


class ResumeRequest(_ChangeRequest):
    model_config = example(endpoint_name=EXAMPLE_ENDPOINT)
    action = Action.RESUME


class ConcludeRequest(_ChangeRequest):
    model_config = example(endpoint_name=EXAMPLE_ENDPOINT, winner="Challenger1")
    action = Action.CONCLUDE

    winner: StrictStr | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        description="The variant that serves every user from now on; "
        "omitted: the decision's current winner (409 if it names none)",
    )

    def to_core(self, actor: str) -> LifecycleChange:
        return LifecycleChange(self.endpoint_name, self.action, actor, self.reason, self.winner)


def _existing_variant(description: str) -> Any:
    """The `variant` field of a change to one existing variant, saying what the change does."""
    return Field(min_length=1, max_length=63, description=description)


class _VariantChangeRequest(_ChangeRequest):
    """A change of one existing variant; the subclass declares `variant` with what it does."""

    model_config = example(endpoint_name=EXAMPLE_ENDPOINT, variant="Challenger1")

    variant: StrictStr

    def to_core(self, actor: str) -> LifecycleChange:
        return LifecycleChange(
            self.endpoint_name, self.action, actor, self.reason, variant=self.variant
        )


class RetireVariantRequest(_VariantChangeRequest):
    action = Action.RETIRE_VARIANT

    variant: StrictStr = _existing_variant(
        "Stops serving: its users get another variant on their next request; "
        "its counters stay and its events still count"
    )


class AddVariantRequest(_ChangeRequest):
    model_config = example(
        endpoint_name=EXAMPLE_ENDPOINT,
        variant="Challenger2",
        model="abtest.demo.reviews:challenger",
        reason="a second challenger",
    )
    action = Action.ADD_VARIANT

    variant: StrictStr = Field(
        min_length=1,
        max_length=63,
        pattern=NAME_PATTERN,
        description="The new variant: it starts at zero and warms up alone (its own `warmup` "
        "trials at its warm-up share) while the others keep their counters and allocation",
    )
    model: StrictStr | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="Embedded server: what it calls for the variant, as the config's `model` "
        "('package.module:function' or an http(s):// URL). AWS: not taken, the variant must "
        "already be a production variant of the SageMaker endpoint",
    )
    # StrictFloat takes an integer too (not a boolean), and the document then gives its
    # bounds: on a union of float and int, pydantic wrote them as "ge" and "le", which JSON
    # Schema does not know, so the document allowed any number.
    initial_weight: StrictFloat = Field(
        default=1.0, ge=0, le=1e6, description="Its weight, as the config's `initial_weight`"
    )

    def to_core(self, actor: str) -> LifecycleChange:
        return LifecycleChange(
            self.endpoint_name,
            self.action,
            actor,
            self.reason,
            variant=self.variant,
            model=self.model,
            initial_weight=self.initial_weight,
        )


class WeightsRequest(_ChangeRequest):
    model_config = example(
        endpoint_name=EXAMPLE_ENDPOINT, weights={"Champion1": 3, "Challenger1": 1}
    )
    action = Action.WEIGHTS

    weights: dict[
        Annotated[StrictStr, Field(min_length=1, max_length=63)],
        Annotated[StrictFloat, Field(ge=0, le=1e6)],  # bounds documented (initial_weight)
    ] = Field(
        min_length=1,
        max_length=100,
        description="WeightedSampling's weights by serving variant (the ones left out keep "
        "theirs); new users are allocated in proportion from now on, also while paused",
    )

    def to_core(self, actor: str) -> LifecycleChange:
        return LifecycleChange(
            self.endpoint_name, self.action, actor, self.reason, weights=dict(self.weights)
        )


class ReinstateRequest(_VariantChangeRequest):
    action = Action.REINSTATE

    variant: StrictStr = _existing_variant(
        "A variant a guardrail demoted: it serves again, and only its calls from "
        "now on count toward demoting it again (409 if it is not demoted)"
    )


class AuditEntryBody(Body):
    at: float = Field(description="Epoch seconds")
    actor: str
    action: str
    reason: str
    details: dict[str, Any]


class EndpointSummaryBody(Body):
    endpoint_name: str
    state: str
    winner: str | None
    strategy: str
    variants: list[str]
    retired: list[str] = Field(description="Variants that serve no one any more")
    promotion: str | None = Field(
        default=None,
        description="Concluded on SageMaker: `pending` until the endpoint's production-variant "
        "weights are the winner's (conclude again to finish), then `done`; null where the "
        "model host keeps no weights (the embedded server) or before a conclusion",
    )

    @classmethod
    def of(cls, endpoint: Endpoint) -> EndpointSummaryBody:
        promotion = endpoint.lifecycle.promotion
        return cls(
            endpoint_name=endpoint.endpoint_name,
            state=endpoint.lifecycle.state,
            winner=endpoint.lifecycle.winner,
            strategy=endpoint.strategy,
            variants=list(endpoint.variant_names),
            retired=list(endpoint.lifecycle.retired),
            promotion=None if promotion is None else str(promotion),
        )


class EndpointListResponse(Body):
    endpoints: list[EndpointSummaryBody]

    @classmethod
    def of(cls, result: EndpointList) -> EndpointListResponse:
        return cls(endpoints=[EndpointSummaryBody.of(e) for e in result.endpoints])


class EndpointResponse(EndpointSummaryBody):
    version: int = Field(description="Grows by one with every lifecycle change")
    allowed_actions: list[str] = Field(
        description="The admin actions legal in this state (the others answer 409)"
    )
    strategy_params: dict[str, float | int]
    warmup: int
    variant_metrics: list[VariantMetricsBody]
    allocation: dict[str, float] = Field(
        description="What a new user gets now: the champion while paused, the winner once "
        "concluded, else the strategy's"
    )
    decision: dict[str, Any]
    audit_log: list[AuditEntryBody]
    weights: dict[str, float] = Field(
        description="Each variant's weight: set by hand (`weights`), else the configured one"
    )
    added: dict[str, str | None] = Field(
        description="Variants added while it ran, with their model (null: the endpoint's own)"
    )

    @classmethod
    def of(cls, result: EndpointView) -> EndpointResponse:  # type: ignore[override]
        endpoint = result.endpoint
        return cls(
            **EndpointSummaryBody.of(endpoint).model_dump(),
            version=endpoint.lifecycle.version,
            allowed_actions=list(result.allowed_actions),
            strategy_params=endpoint.strategy_params,
            warmup=endpoint.warmup,
            variant_metrics=variant_bodies(endpoint, result.figures.demoted),
            allocation=result.allocation,
            decision=result.decision,
            audit_log=[AuditEntryBody(**asdict(e)) for e in result.audit_log],
            weights=endpoint.weights,
            added=endpoint.lifecycle.added_models,
        )
