"""The simulation's figures: what they draw, read back from the matplotlib artists."""

from __future__ import annotations

import random

import numpy as np
import pytest
from scipy import stats as scipy_stats

from abtest.demo import plots
from abtest.demo.simulation import UserResult

MEANS = {"A": 0.2, "B": 0.5}


def run(n: int, seed: int = 1) -> list[UserResult]:
    """n users, the first fifth split evenly and the rest mostly on B, rewards drawn from MEANS."""
    rng = random.Random(seed)
    results = []
    for i in range(n):
        variant = rng.choice("AB") if i < n // 5 else ("B" if rng.random() < 0.9 else "A")
        reward = float(rng.random() < MEANS[variant])
        results.append(UserResult(i, f"u{i}", f"i{i}", variant, "S", "new", 0.5, reward, i))
    return results


def test_regret_is_the_cumulative_gap_to_the_best_truth_beside_an_even_split():
    results = run(400)

    figure = plots.regret(results, MEANS)

    this_run, even = figure.axes[0].get_lines()
    gaps = [0.3 if r.variant == "A" else 0.0 for r in results]
    assert this_run.get_ydata() == pytest.approx(np.cumsum(gaps))
    assert even.get_ydata()[-1] == pytest.approx(400 * 0.15)
    # The legend stands beside the panel, off the data
    assert figure.axes[0].get_legend().get_bbox_to_anchor().x0 > figure.axes[0].bbox.x1 - 1


def test_posterior_panels_are_taken_early_and_late_and_zoomed_to_the_mass():
    results = run(2000)

    figure = plots.beta_posteriors(results)

    titles = [axes.get_title() for axes in figure.axes]
    ends = [int(title.split()[1]) for title in titles]
    assert ends[0] <= 100 and ends[-1] == 2000  # early (log-spaced) and the end
    last = figure.axes[-1]
    low, high = last.get_xlim()
    masses = []
    for variant in MEANS:
        n = sum(r.variant == variant for r in results)
        wins = sum(r.reward for r in results if r.variant == variant)
        a, b = 1 + wins, 1 + n - wins
        masses.append((scipy_stats.beta.ppf(0.001, a, b), scipy_stats.beta.ppf(0.999, a, b)))
    # The late panel holds every variant's central 99.8 % ...
    assert all(low <= lo and hi <= high for lo, hi in masses)
    # ... and little else: the span of those masses, padded by a tenth on each side
    span = max(hi for _, hi in masses) - min(lo for lo, _ in masses)
    assert high - low <= 1.2 * span + 1e-9
    assert high - low < 0.6


def test_the_regret_plot_is_written_only_when_the_truth_is_known(tmp_path):
    results = run(200)
    names = {p.stem for p in plots.save_all(results, tmp_path / "a")}
    assert "regret" not in names
    names = {p.stem for p in plots.save_all(results, tmp_path / "b", MEANS)}
    assert "regret" in names
