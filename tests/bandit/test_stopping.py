"""The bias-adjusted estimate at the call (bandit.stopping) on simulated stopped paths."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from bandit.estimates import Estimate, rho_squared
from bandit.stats import WINNER, decision
from bandit.stopping import adjusted_difference, adjusted_estimate, boundary
from tests.bandit.helpers import metrics

ALPHA = 0.05
LOOKS_TO_HERE = 30  # the spacing: one look per 1/30 of the trials of x_now below
X_NOW = 30_000 * rho_squared(40_000)  # the mixing ratio after 30 looks of 1,000 trials


def stopped_paths(u: float, runs: int, seed: int) -> list[tuple[float, int]]:
    """Gaussian sums in standard errors of the 30th look, stopped the first time 0 leaves
    the sequence upward at looks 1, 2, ... (up to 120): (z-statistic over that look's se
    scaled to the 30th's, i.e. the estimate / se_30, and the look), upward calls only."""
    rng = random.Random(seed)
    out = []
    for _ in range(runs):
        s = 0.0
        for j in range(1, 4 * LOOKS_TO_HERE + 1):
            t = j / LOOKS_TO_HERE
            s += u / LOOKS_TO_HERE + rng.gauss() * math.sqrt(1.0 / LOOKS_TO_HERE)
            edge = boundary(X_NOW * t, ALPHA) * math.sqrt(t)
            if s >= edge:
                out.append((s / t, j))
                break
            if s <= -edge:
                break
    return out


@pytest.mark.slow(seconds=6)
def test_the_adjusted_estimate_recovers_the_truth_where_the_raw_one_is_biased() -> None:
    # A true difference of 2.5 standard errors (of the 30th look): most runs are called
    # between looks 15 and 60. Each run's estimate is adjusted as the service would, with
    # its own look count and information (the se at look j is se_30 / sqrt(j / 30)).
    u = 2.5
    runs = stopped_paths(u, 300, seed=7)
    assert len(runs) > 250
    raw, adjusted = [], []
    # In look order: the service keeps the paths of 8 look counts, and these runs have 84
    # (in the runs' own order, rebuilding them was 40 % of the test's time).
    for estimate, j in sorted(runs, key=lambda run: run[1]):
        t = j / LOOKS_TO_HERE
        se = 1.0 / math.sqrt(t)  # in units of se_30
        raw.append(estimate)
        adjusted.append(adjusted_difference(estimate, se, X_NOW * t, ALPHA, j))
    # Monte Carlo standard error of each mean from the runs' own spread; 3 of them.
    raw_se = statistics.stdev(raw) / math.sqrt(len(raw))
    adjusted_se = statistics.stdev(adjusted) / math.sqrt(len(adjusted))
    assert statistics.fmean(raw) - u > 3 * raw_se  # the winner's curse is there
    assert abs(statistics.fmean(adjusted) - u) < 3 * adjusted_se


def test_an_estimate_inside_the_sequence_is_returned_as_it_is() -> None:
    c = boundary(X_NOW, ALPHA)
    assert adjusted_difference(0.9 * c, 1.0, X_NOW, ALPHA, 30) == 0.9 * c
    assert adjusted_difference(0.0, 0.0, X_NOW, ALPHA, 30) == 0.0


def test_the_adjustment_pulls_toward_0_rises_with_the_estimate_and_is_odd() -> None:
    c = boundary(X_NOW, ALPHA)
    values = [c + 0.01, c + 0.5, c + 1.0, c + 2.0, c + 4.0]
    adjusted = [adjusted_difference(v, 1.0, X_NOW, ALPHA, 30) for v in values]
    assert all(0.0 < a < v for a, v in zip(adjusted, values, strict=True))
    assert adjusted == sorted(adjusted)
    assert adjusted_difference(-values[1], 1.0, X_NOW, ALPHA, 30) == -adjusted[1]


def test_it_is_deterministic_and_reads_the_estimate_as_the_decision_has_it() -> None:
    estimate = Estimate(0.01, 0.003**2, 30_000)
    first = adjusted_estimate(estimate, ALPHA, 30)
    assert first == adjusted_estimate(estimate, ALPHA, 30)
    assert first == adjusted_difference(0.01, 0.003, X_NOW, ALPHA, 30)
    assert 0.0 < first < 0.01


def test_a_called_winner_reports_the_adjusted_difference_and_nothing_else_does() -> None:
    # 10.0 % against 12.2 % on 5,000 users each: just past the sequence (p 0.019 < 0.05).
    called = decision(metrics(("Champion", 5000, 500), ("Challenger", 5000, 610)))
    assert (called.winner, called.reason) == ("Challenger", WINNER)
    champion, challenger = called.as_dict()["variants"]
    assert champion["difference_adjusted"] is None
    assert 0.0 < challenger["difference_adjusted"] < challenger["difference_estimate"]
    not_yet = decision(metrics(("Champion", 5000, 500), ("Challenger", 5000, 540)))
    assert not_yet.winner is None
    assert [f.difference_adjusted for f in not_yet.variants] == [None, None]


def test_a_champion_that_wins_adjusts_every_challengers_difference_toward_0() -> None:
    won = decision(metrics(("Champion", 5000, 600), ("B", 5000, 480), ("C", 5000, 490)))
    assert (won.winner, won.reason) == ("Champion", WINNER)
    for f in won.variants[1:]:
        assert f.difference_estimate < f.difference_adjusted < 0.0
