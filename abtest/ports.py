"""The interfaces the use cases talk to. Adapters implement them; the use cases know no AWS."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from abtest.lifecycle import AuditEntry, Lifecycle
from abtest.records import (
    Assignment,
    CountsByEndpoint,
    Endpoint,
    EndpointConfig,
    EventKey,
    Figures,
    RejectedLine,
    VariantConfig,
)


class Clock(Protocol):
    def now(self) -> float:
        """Epoch seconds, read at the time of each call (never frozen at import)."""
        ...

    def monotonic(self) -> float:
        """Seconds that never step, for durations: a wall clock set forward by NTP during a
        model call would count the step as the call's latency (and the guardrail's)."""
        ...


class Store(Protocol):
    """Assignments and metrics records. Raises StoreUnavailableError when unreachable.

    Concurrency is the store's job: first assignments are conditional writes,
    counters change only by atomic increments, aggregation is one transaction
    per delivered object (idempotency record included).
    """

    def get_assignment(self, endpoint_name: str, user_id: str, now: float) -> Assignment | None:
        """The user's assignment, or None if there is none or it has expired (ttl <= now)."""
        ...

    def create_assignment(self, assignment: Assignment, now: float) -> Assignment:
        """Store `assignment` only if the user has none (or an expired one); return the stored one.

        Two concurrent first requests of one user both get the winner's assignment back.
        """
        ...

    def get_endpoint(self, endpoint_name: str) -> Endpoint | None:
        """The metrics record (deleted ones included, with status DELETED), or None."""
        ...

    def register_endpoint(self, config: EndpointConfig, now: float) -> Endpoint:
        """Upsert: keep every variant's counters, add new ones at zero. A variant the config
        no longer lists is kept, retired (`Lifecycle.registered`, audit-logged, in the same
        write), unless a person added it: its logged events still count. The rest of the
        lifecycle (state, retired and added variants, weights) is kept as it is."""
        ...

    def deregister_endpoint(self, endpoint_name: str, now: float) -> None:
        """Mark the record DELETED (kept for its statistics; no longer served)."""
        ...

    def conversion_logged(
        self, endpoint_name: str, user_id: str, inference_id: str, now: float
    ) -> bool:
        """True if this conversion's event is already in the log (marked or claimed, unexpired)."""
        ...

    def mark_conversion_logged(
        self, endpoint_name: str, user_id: str, inference_id: str, ttl: int, now: float
    ) -> None:
        """Remember that the conversion's event is in the log, so a repeat is answered duplicate.

        Written after the event, never before: a failure in between leaves no marker, the
        client's retry logs the event again, and aggregation counts it once. Idempotent, so
        a retry after a lost response changes nothing. Keeps a claim made by aggregation.
        """
        ...

    def claim_events(
        self, object_key: str, keys: Sequence[EventKey], ttl: int, now: float
    ) -> set[EventKey]:
        """Mark each conversion as counted by `object_key` unless another object counted it.

        Returns the keys `object_key` may count: claimed now, or by an earlier delivery of
        the same object (so a redelivered object counts them again, once, with its counts).
        """
        ...

    def apply_counts(self, object_key: str, counts: CountsByEndpoint, now: float) -> bool:
        """Atomically add `counts` and record `object_key`; False, changing nothing, on a repeat.

        Deltas for endpoints or variants the store does not know are ignored.
        """
        ...

    def save_figures(self, endpoint_name: str, figures: Figures) -> bool:
        """Store `figures` with the record, only if the record is still the one they were
        worked out from (`figures.basis`); False, changing nothing, otherwise (whoever
        changed it works out its own). `get_endpoint` returns them as `Endpoint.figures`."""
        ...

    def change_lifecycle(
        self,
        endpoint_name: str,
        expected: Lifecycle,
        new: Lifecycle,
        entry: AuditEntry,
        new_variant: VariantConfig | None = None,
    ) -> bool:
        """Store `new` as `Endpoint.lifecycle` and append `entry` to the audit log, in one
        write, only if the stored lifecycle is still `expected` (compare-and-set); False,
        changing nothing, if it is not or the endpoint is unknown. Counters are not
        written, so an aggregation at the same time loses nothing and is not lost.
        `new_variant` (add-variant) joins the variants in the same write, last, at zero
        (a variant of that name already there keeps its counters)."""
        ...

    def audit_log(self, endpoint_name: str) -> list[AuditEntry]:
        """The endpoint's lifecycle changes, oldest first (the newest `AUDIT_RETENTION`)."""
        ...

    def endpoint_names(self) -> list[str]:
        """Every endpoint with a record (deleted ones included), sorted."""
        ...


class EventSink(Protocol):
    def put(self, events: list[Mapping[str, Any]]) -> None:
        """Deliver events, one JSON object each; never silently dropped (retried, dead-lettered)."""
        ...

    def put_lines(self, lines: list[bytes]) -> None:
        """Deliver events already written as lines (`abtest.events.encode`, or a line writer
        of its, one JSON object and its newline each), as `put` delivers them."""
        ...


class RejectedLines(Protocol):
    def write(self, line: RejectedLine) -> None:
        """Keep one more rejected line (written on, never held: memory stays flat)."""
        ...


class EventArchive(Protocol):
    """Where delivered event objects live (S3 bucket, or a local folder of sealed files)."""

    def read_blocks(self, object_key: str) -> Iterator[bytes]:
        """Stream the object (gzip or plain) as blocks of whole lines, without loading it whole.

        Blocks, not lines: aggregation scans a block in one call, which is where its speed
        comes from. Each block ends at a line end, except perhaps the object's last.
        """
        ...

    def open_rejected(self, object_key: str) -> AbstractContextManager[RejectedLines]:
        """Where to keep the lines aggregation cannot use, beside the object, for a human.

        Lines are written as aggregation finds them, so an object of another format, all
        of it rejected, costs no more memory than a good one. The rejected-lines object
        exists once the block exits without error and if any line was written; an error
        leaves none (or the one a previous, complete attempt wrote).
        """
        ...


@dataclass(frozen=True, slots=True)
class ModelResult:
    variant_name: str  # the variant that actually answered
    predictions: Any


class ModelEndpoint(Protocol):
    def invoke(
        self,
        endpoint_name: str,
        variant_name: str | None,
        data: str,
        content_type: str,
        inference_id: str,
    ) -> ModelResult:
        """Call the variant; with variant_name None the endpoint's own weights choose.

        Raises ModelError naming the variant on failure, NotFoundError if the endpoint is unknown.
        """
        ...


class ModelHost(Protocol):
    """Where the variants run, as far as it routes traffic itself: SageMaker's
    production-variant weights answer callers who bypass the API (and its fallback, in a
    process that never read the endpoint)."""

    @property
    def keeps_weights(self) -> bool:
        """True if the host routes by weights of its own, so a winner must be promoted there
        (SageMaker); False if every call goes through this API (the embedded server)."""
        ...

    def promote(self, endpoint_name: str, winner: str) -> dict[str, float]:
        """Route all the endpoint's own traffic to `winner` (weight 1, every other variant 0)
        and return those weights. Idempotent: weights already (being) set are not set again.

        Raises ModelHostUnavailableError if it cannot now (throttled, unreachable, the
        endpoint updating), ModelHostError if it never will (no such variant, no permission).
        """
        ...


class EndpointCatalog(Protocol):
    """Where registration learns an endpoint's variants, weights and strategy parameters.

    On AWS: SageMaker DescribeEndpoint + the `ab-testing:*` tags; embedded: the config file.
    """

    def describe(self, endpoint_name: str) -> EndpointConfig:
        """Raises NotFoundError if there is no such endpoint, ConfigError on a bad tag or key."""
        ...

    def prepare_variant(self, endpoint_name: str, variant_name: str, model: str | None) -> None:
        """Make sure a variant added while the experiment runs can be called from now on.

        On AWS it must be a production variant of the SageMaker endpoint already (else a
        ConflictError naming `variant`) and takes no `model` (BadRequestError naming it);
        embedded, `model` is required, checked and loaded (BadRequestError naming `model`).
        """
        ...


class Count(StrEnum):
    """What the service counts for people: CloudWatch metrics on AWS, `/health` locally."""

    FALLBACKS = "Fallbacks"  # invocations answered while the store was down (the fallback)
    MODEL_ERRORS = "ModelErrors"  # model variants that failed (answered 502)
    DUPLICATE_CONVERSIONS = "DuplicateConversions"  # repeated conversions, counted once
    # Invocations answered whose event reached neither the event log nor its queue.
    UNLOGGED_INVOCATIONS = "UnloggedInvocations"
    # Delivered objects aggregation rejected most lines of (`AggregationResult.mostly_rejected`).
    MOSTLY_REJECTED_OBJECTS = "MostlyRejectedObjects"


class VariantMetric(StrEnum):
    """Per-variant counts aggregation publishes for the AWS dashboard (`infra/monitoring.py`),
    each a `VariantCounts` field summed over a delivered object."""

    INVOCATIONS = "Invocations"
    CONVERSIONS = "Conversions"
    REWARD = "Reward"


class Telemetry(Protocol):
    """Operational counters: CloudWatch EMF metrics on AWS, in-memory counts embedded."""

    def count(
        self, name: Count, endpoint_name: str | None, variant_name: str | None = None
    ) -> None:
        """Count one; `endpoint_name` None for what belongs to no endpoint (a whole object)."""
        ...
