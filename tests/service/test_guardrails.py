"""Reading the guardrail counters: quantiles from the buckets, the calls certainly slower
than a limit, and what a reinstatement leaves to count."""

from __future__ import annotations

from abtest import guardrails
from abtest.config_types import ExperimentSettings
from abtest.records import LATENCY_BOUNDS_MS, LATENCY_COUNTERS, VariantCounts, latency_counter


def test_each_latency_falls_in_the_bucket_whose_bounds_hold_it():
    assert latency_counter(0) == latency_counter(1) == "latency_le_1ms"
    assert latency_counter(1.01) == "latency_le_2ms"
    assert latency_counter(500) == "latency_le_500ms"
    assert latency_counter(500.1) == "latency_le_1000ms"
    assert latency_counter(LATENCY_BOUNDS_MS[-1] + 1) == LATENCY_COUNTERS[-1]


def test_quantiles_are_the_upper_bound_of_the_bucket_holding_them():
    counts = VariantCounts(latency_le_5ms=90, latency_le_200ms=9, latency_le_2000ms=1)

    assert guardrails.latency_quantile(counts, 0.5) == 5.0
    assert guardrails.latency_quantile(counts, 0.95) == 200.0
    assert guardrails.latency_quantile(counts, 0.99) == 200.0  # the 99th of 100 calls
    assert guardrails.latency_quantile(counts, 1.0) == 2000.0
    assert guardrails.latency_quantile(VariantCounts(), 0.5) is None
    beyond = VariantCounts(**{LATENCY_COUNTERS[-1]: 1})
    assert guardrails.latency_quantile(beyond, 0.5) is None


def test_only_calls_in_buckets_wholly_above_the_limit_count_as_slower():
    counts = VariantCounts(latency_le_500ms=7, latency_le_1000ms=3, latency_le_2000ms=1)

    assert guardrails.slow_calls(counts, 500) == 4  # exact at a bound
    assert guardrails.slow_calls(counts, 300) == 4  # (200, 500] may be under 300: left out
    assert guardrails.slow_calls(counts, 1500) == 0  # (1000, 2000] may be under 1500


def test_a_reinstatement_counts_only_the_calls_since():
    now = VariantCounts(model_errors=30, latency_le_5ms=150, invocation_count=150)
    kept = guardrails.baseline(VariantCounts(model_errors=20, latency_le_5ms=100))

    since = guardrails.fresh(now, kept)

    assert (since.model_errors, guardrails.model_calls(since)) == (10, 50)
    settings = ExperimentSettings(max_error_rate=0.05)
    assert guardrails.breach(now, settings) is not None
    assert guardrails.breach(since, settings) is None  # 10 of 50: not yet evidence


def test_no_guardrail_set_no_breach_whatever_the_counts():
    counts = VariantCounts(model_errors=100, latency_le_50000ms=100)
    assert guardrails.breach(counts, ExperimentSettings()) is None
