"""Properties every allocation has, for any metrics hypothesis can think of."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from bandit import STRATEGY_NAMES, VariantMetrics, select
from tests.bandit.helpers import strategy_at


@st.composite
def variant_metrics(draw) -> tuple[VariantMetrics, ...]:
    names = draw(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=8, unique=True))
    rows = []
    for name in names:
        invocations = draw(st.integers(0, 10**7))
        rows.append(
            VariantMetrics(
                name,
                draw(st.sampled_from([0.0, 0.5, 1.0, 3.0]) | st.floats(0.0, 1e6)),
                invocations,
                draw(st.integers(0, invocations + 5)),
                # reward sums may exceed invocations (clipped) or be fractional
                draw(st.floats(0.0, invocations * 1.2 + 2.0)),
            )
        )
    return tuple(rows)


@settings(max_examples=60, deadline=None)
@given(
    ms=variant_metrics(),
    name=st.sampled_from(STRATEGY_NAMES),
    fraction=st.floats(0.0, 1.0, exclude_min=True, exclude_max=True),
    seed=st.integers(0, 2**32),
)
def test_allocation_is_a_probability_distribution_over_the_known_variants(ms, name, fraction, seed):
    strategy = strategy_at(name, fraction)
    alloc = strategy.allocation(ms)
    assert list(alloc) == [m.variant_name for m in ms]
    assert all(p >= 0.0 for p in alloc.values())
    assert abs(sum(alloc.values()) - 1.0) <= 1e-9
    rng = random.Random(seed)
    pick = strategy.choose(ms, rng)
    assert alloc[pick] > 0.0
    sel = select(strategy, ms, rng, warmup=seed % 50)
    assert sel.variant_name in alloc
    assert sel.propensity > 0.0
