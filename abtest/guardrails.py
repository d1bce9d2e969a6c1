"""The guardrails: each variant's error rate and latency, read from its counters, and the
variants demoted for breaching an endpoint's `max_error_rate` or `max_latency_p99_ms`.

What counts: every model call logged with an outcome and a latency (the experiment's,
manual and fallback ones alike: they call the same model). A variant is demoted only on
evidence, an always-valid test at 0.1 % (`bandit.guardrail`), never on one bad call:

- errors: the test that its share of failed calls is above `max_error_rate`;
- latency: at least `MIN_LATENCY_CALLS` calls, and the test that the share of its calls
  slower than `max_latency_p99_ms` is above 1 % (its p99 is above the limit). Only calls
  in buckets wholly above the limit count as slower (`slow_calls`), so the test errs
  toward keeping the variant; a limit at a bucket bound (`LATENCY_BOUNDS_MS`) is exact.

Demotion is worked out with the figures, from the counters, so it follows the evidence in
both directions and needs no write of its own. A person can reinstate a demoted variant
(`Action.REINSTATE`): the lifecycle keeps its guardrail counters as they were then, and
only the calls after that count toward demoting it again.
"""

from __future__ import annotations

import math

from abtest.config_types import ExperimentSettings
from abtest.records import (
    LATENCY_BOUNDS_MS,
    LATENCY_COUNTERS,
    Endpoint,
    VariantCounters,
    VariantCounts,
)
from bandit.guardrail import exceeds, lower_bound

# The counters the guardrails read; a reinstatement keeps them as they were.
GUARDRAIL_COUNTERS = ("model_errors", *LATENCY_COUNTERS)
# A p99 says nothing on fewer calls, and a cold model's first calls are slow for reasons
# of its own: the latency guardrail waits for this many.
MIN_LATENCY_CALLS = 100
# The share of calls a p99 allows above it.
SLOW_SHARE = 0.01
# The quantiles /stats shows.
QUANTILES = (0.5, 0.95, 0.99)


def model_calls(counts: VariantCounts) -> int:
    """Calls logged with their latency and outcome (each is in one latency bucket)."""
    return sum(getattr(counts, name) for name in LATENCY_COUNTERS)


def error_rate(counts: VariantCounts) -> float | None:
    """Failed calls over calls, None before any call was logged with its outcome."""
    calls = model_calls(counts)
    return counts.model_errors / calls if calls else None


def latency_quantile(counts: VariantCounts, q: float) -> float | None:
    """The upper bound (ms) of the bucket holding the `q`-quantile of the calls' latency:
    the quantile is at most this, and above the bound below it (a factor 2 to 2.5). None
    without calls, or when it lies beyond the last bound (`LATENCY_BOUNDS_MS[-1]`)."""
    buckets = [getattr(counts, name) for name in LATENCY_COUNTERS]
    calls = sum(buckets)
    if not calls:
        return None
    rank = math.ceil(q * calls)  # the rank-th smallest call is the q-quantile
    seen = 0
    for bound, n in zip(LATENCY_BOUNDS_MS, buckets, strict=False):
        seen += n
        if seen >= rank:
            return float(bound)
    return None


def slow_calls(counts: VariantCounts, limit_ms: float) -> int:
    """Calls certainly slower than `limit_ms`: those in buckets whose lower bound is at or
    above it (the first bucket's lower bound is 0)."""
    lower_bounds = (0, *LATENCY_BOUNDS_MS)
    return sum(
        getattr(counts, name)
        for name, low in zip(LATENCY_COUNTERS, lower_bounds, strict=True)
        if low >= limit_ms
    )


def fresh(counts: VariantCounts, baseline: dict[str, int] | None) -> VariantCounts:
    """The guardrail counters since a reinstatement kept `baseline` (all of them without)."""
    if not baseline:
        return counts
    return VariantCounts(
        **{name: getattr(counts, name) - baseline.get(name, 0) for name in GUARDRAIL_COUNTERS}
    )


def baseline(counts: VariantCounts) -> dict[str, int]:
    """What a reinstatement keeps: the guardrail counters now."""
    return {name: getattr(counts, name) for name in GUARDRAIL_COUNTERS}


def breach(counts: VariantCounts, settings: ExperimentSettings) -> str | None:
    """Why `counts` breach a guardrail with evidence, or None."""
    calls = model_calls(counts)
    limit = settings.max_error_rate
    if limit is not None and exceeds(counts.model_errors, calls, limit):
        return (
            f"error rate {counts.model_errors / calls:.1%} over {calls} calls: at least "
            f"{lower_bound(counts.model_errors, calls):.1%} (99.9 % always-valid bound) "
            f"> max_error_rate {limit:g}"
        )
    limit_ms = settings.max_latency_p99_ms
    if limit_ms is not None and calls >= MIN_LATENCY_CALLS:
        slow = slow_calls(counts, limit_ms)
        if exceeds(slow, calls, SLOW_SHARE):
            return (
                f"{slow / calls:.1%} of {calls} calls slower than {limit_ms:g} ms: at least "
                f"{lower_bound(slow, calls):.1%} (99.9 % always-valid bound) > 1 %, "
                f"so p99 > max_latency_p99_ms {limit_ms:g}"
            )
    return None


def demoted(endpoint: Endpoint) -> dict[str, str]:
    """The serving variants demoted, with why: those breaching a guardrail on the evidence
    since their last reinstatement. Never all of them: should every serving variant breach,
    the champion (the first) keeps serving, since new users must get some variant."""
    settings = endpoint.settings
    if settings.max_error_rate is None and settings.max_latency_p99_ms is None:
        return {}
    reinstated = endpoint.lifecycle.reinstated
    serving: tuple[VariantCounters, ...] = endpoint.serving_variants
    reasons = {}
    for variant in serving:
        why = breach(fresh(variant.counts, reinstated.get(variant.variant_name)), settings)
        if why is not None:
            reasons[variant.variant_name] = why
    if serving and len(reasons) == len(serving):
        reasons.pop(serving[0].variant_name)
    return reasons
