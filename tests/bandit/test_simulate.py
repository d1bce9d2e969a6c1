"""The simulation the regret benchmark runs: environment, feedback modes, and the bound."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bandit import get_strategy
from bandit.simulate import BernoulliBandit, kl_bernoulli, lai_robbins_bound, run


def test_kl_bernoulli():
    assert kl_bernoulli(0.3, 0.3) == 0.0
    p, q = 0.05, 0.06
    assert kl_bernoulli(p, q) == pytest.approx(
        p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))
    )
    assert kl_bernoulli(0.0, 0.5) == pytest.approx(math.log(2))


def test_lai_robbins_bound_sums_over_suboptimal_arms():
    means, horizon = (0.10, 0.12, 0.15), 100_000
    expected = math.log(horizon) * (
        0.05 / kl_bernoulli(0.10, 0.15) + 0.03 / kl_bernoulli(0.12, 0.15)
    )
    assert lai_robbins_bound(means, horizon) == pytest.approx(expected)
    assert lai_robbins_bound((0.2, 0.2), horizon) == 0.0


def test_environment_rejects_non_probabilities():
    with pytest.raises(ValueError):
        BernoulliBandit((0.5, 1.5))


def test_regret_is_the_sum_of_gaps_of_the_picks():
    bandit = BernoulliBandit((0.2, 0.5, 0.4))
    result = run(get_strategy("WeightedSampling"), bandit, 3000, seed=1)
    assert sum(result.pulls) == 3000
    expected = 0.3 * result.pulls[0] + 0.1 * result.pulls[2]
    assert result.regret == pytest.approx(expected)
    assert np.all(np.diff(result.cumulative_regret) >= 0)
    # Uniform assignment: regret = T * mean gap, within 4 standard errors of the pick counts.
    sd = math.sqrt(3000 * np.var([0.3, 0.0, 0.1]))
    assert abs(result.regret - 3000 * 0.4 / 3) <= 4 * sd


@pytest.mark.parametrize("name", ["EpsilonGreedy", "UCB1", "ThompsonSampling"])
def test_learning_strategies_beat_uniform_assignment(name):
    bandit = BernoulliBandit((0.2, 0.5))
    uniform = run(get_strategy("WeightedSampling"), bandit, 4000, seed=2).regret
    learned = run(get_strategy(name), bandit, 4000, seed=2)
    assert learned.regret < 0.25 * uniform
    assert learned.pulls[1] > learned.pulls[0]


def test_instant_thompson_uses_the_sampling_fast_path_and_batched_uses_select():
    bandit = BernoulliBandit((0.2, 0.5))
    assert (
        run(get_strategy("ThompsonSampling", {"floor": 0.0}), bandit, 100, seed=0).path == "sample"
    )
    batched = run(
        get_strategy("ThompsonSampling", {"floor": 0.0}), bandit, 100, seed=0, batch_size=10
    )
    assert batched.path == "select"
    assert run(get_strategy("UCB1", {"floor": 0.0}), bandit, 100, seed=0).path == "select"


def test_batched_feedback_holds_metrics_for_a_whole_batch():
    """UCB1 is deterministic given the metrics: after the uniform warm-up batch, each batch
    of users goes entirely to one arm (the herding the benchmark shows)."""
    bandit = BernoulliBandit((0.3, 0.6, 0.5))
    batch = 200
    result = run(get_strategy("UCB1", {"floor": 0.0}), bandit, 2000, seed=5, batch_size=batch)
    gaps = np.diff(np.concatenate([[0.0], result.cumulative_regret]))
    for start in range(batch, 2000, batch):
        assert len(set(np.round(gaps[start : start + batch], 12))) == 1
    assert len(set(np.round(gaps[:batch], 12))) == 3  # warm-up batch: weighted sampling


def test_runs_are_reproducible_by_seed():
    bandit = BernoulliBandit((0.1, 0.12))
    first = run(get_strategy("ThompsonSampling", {"floor": 0.0}), bandit, 2000, seed=9)
    again = run(get_strategy("ThompsonSampling", {"floor": 0.0}), bandit, 2000, seed=9)
    assert first.pulls == again.pulls
    assert first.regret == again.regret


def test_an_experiment_counts_regret_as_the_expected_loss_of_each_assignment():
    # 50/50 on rates 0.1 / 0.2: the loser gets Binomial(n, 1/2) users, each costing 0.1.
    from bandit.simulate import run_experiment

    n = 20_000
    result = run_experiment(
        get_strategy("WeightedSampling"), BernoulliBandit((0.1, 0.2)), seed=3, horizon=n, stop=False
    )
    sd = 0.1 * math.sqrt(n / 4)
    assert abs(result.regret - 0.1 * n / 2) <= 4 * sd
    assert result.winner == 1 and result.users is not None and result.users <= n


def test_the_default_allocation_calls_a_clear_winner_and_then_serves_only_it():
    from bandit import DEFAULT_STRATEGY
    from bandit.simulate import run_experiment

    for seed in range(8):
        result = run_experiment(
            get_strategy(DEFAULT_STRATEGY), BernoulliBandit((0.05, 0.15)), seed=seed, horizon=30_000
        )
        assert (result.winner, result.users is not None) == (1, True)
        # After the call the regret stops growing: at most the whole experiment's worth.
        assert result.regret <= 0.10 * result.users
