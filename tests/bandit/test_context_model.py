"""The doubly robust estimator's reward model on request context: it learns the context's
effect, and then DR is tighter than IPS without losing the truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from bandit.context_model import RIDGE, fit_reward_model
from bandit.offpolicy import Log, evaluate


def context_log(n: int, seed: int) -> tuple[Log, np.ndarray]:
    """Two variants drawn 70/30; a binary feature (mobile) moves the reward more than the
    variant does. Returns the log and the true reward probabilities (events x variants)."""
    rng = np.random.default_rng(seed)
    mobile = (rng.random(n) < 0.5).astype(float)
    truth = np.column_stack([0.1 + 0.6 * mobile, 0.2 + 0.6 * mobile])
    served = (rng.random(n) < 0.3).astype(int)
    propensities = np.where(served == 1, 0.3, 0.7)
    rewards = (rng.random(n) < truth[np.arange(n), served]).astype(float)
    log = Log(("a", "b"), served, rewards, propensities, mobile[:, None])
    return log, truth


def test_the_model_learns_each_variants_reward_per_context():
    log, truth = context_log(20_000, seed=0)
    predicted = fit_reward_model(log)(log)
    assert np.max(np.abs(predicted - truth)) < 0.03


def test_the_fit_is_the_optimum_of_the_weighted_penalised_likelihood():
    # An independent reference: scipy's BFGS on the objective written out, per variant.
    log, _ = context_log(3000, seed=3)
    predicted = fit_reward_model(log)(log)
    for j in (0, 1):
        mine = log.actions == j
        x = np.column_stack([np.ones(mine.sum()), log.features[mine]])
        w, r = 1.0 / log.propensities[mine], log.rewards[mine]

        def loss(b, x=x, w=w, r=r):
            eta = x @ b
            return -np.sum(w * (r * eta - np.logaddexp(0.0, eta))) + 0.5 * RIDGE * b @ b

        def gradient(b, x=x, w=w, r=r):
            return -x.T @ (w * (r - 1.0 / (1.0 + np.exp(-(x @ b))))) + RIDGE * b

        best = minimize(loss, np.zeros(2), jac=gradient, method="BFGS", options={"gtol": 1e-10})
        reference = 1.0 / (1.0 + np.exp(-(x @ best.x)))
        assert np.max(np.abs(predicted[mine, j] - reference)) < 1e-6


def test_with_context_dr_keeps_the_truth_and_narrows_the_interval():
    log, truth = context_log(4000, seed=1)
    model = fit_reward_model(log)
    # The context explains what the variant does not: less residual for the weights to
    # inflate, most where the weights are heavy (b, served 30 %).
    for variant, j, ratio in (("a", 0, 0.97), ("b", 1, 0.9)):
        _, ips, _, dr = evaluate(log, variant, reward_model=model)
        plain_dr = evaluate(log, variant)[3]
        assert dr.low < truth[:, j].mean() < dr.high
        assert dr.std_error < ratio * ips.std_error
        assert dr.std_error < ratio * plain_dr.std_error


def test_a_log_without_features_cannot_fit_one():
    log, _ = context_log(10, seed=2)
    bare = Log(log.variants, log.actions, log.rewards, log.propensities)
    with pytest.raises(ValueError, match="needs the log's features"):
        fit_reward_model(bare)
