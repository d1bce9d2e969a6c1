"""The doubly robust estimator's reward model on request context: a logistic regression
per variant, fitted on the log itself, chunk by chunk.

Rewards are in [0, 1]; the logistic link keeps predictions there, and the quasi-binomial
likelihood fits fractional rewards as well as conversions (McCullagh, Nelder, "Generalized
Linear Models", 1989). Each event is weighted by 1 / propensity, so that the fit is
consistent for the whole population although the bandit chose who saw which variant.
Newton steps (iteratively reweighted least squares) need one pass over the log each; a
small ridge keeps a variant with few events (or a feature it never saw) well posed.
"""

from __future__ import annotations

import numpy as np

from bandit.offpolicy import Log, OffPolicyError, RewardModel, Rows

RIDGE = 1.0
MAX_ITERATIONS = 25
TOLERANCE = 1e-8


def fit_reward_model(rows: Rows, *, ridge: float = RIDGE) -> RewardModel:
    """Per variant, coefficients of intercept + features; predicts a chunk's rewards."""
    k = len(rows.variants)
    beta: np.ndarray | None = None
    for _ in range(MAX_ITERATIONS):
        hessian = gradient = None
        for chunk in rows.chunks():
            if chunk.features is None:
                raise OffPolicyError("the reward model needs the log's features")
            x = _design(chunk)
            if beta is None:
                beta = np.zeros((k, x.shape[1]))
            if hessian is None:
                hessian = np.zeros((k, x.shape[1], x.shape[1]))
                gradient = np.zeros((k, x.shape[1]))
            a = chunk.actions
            mean = _sigmoid(np.einsum("ij,ij->i", x, beta[a]))
            weight = 1.0 / chunk.propensities
            for j in np.unique(a):
                mine = a == j
                xj, wj, mj = x[mine], weight[mine], mean[mine]
                hessian[j] += (xj * (wj * mj * (1.0 - mj))[:, None]).T @ xj
                gradient[j] += xj.T @ (wj * (chunk.rewards[mine] - mj))
        if beta is None or hessian is None or gradient is None:
            raise OffPolicyError("the log has no events to fit a reward model on")
        penalty = ridge * np.eye(beta.shape[1])
        step = np.stack(
            [np.linalg.solve(hessian[j] + penalty, gradient[j] - ridge * beta[j]) for j in range(k)]
        )
        beta = beta + step
        if float(np.max(np.abs(step))) < TOLERANCE:
            break
    fitted = beta

    def predict(chunk: Log) -> np.ndarray:
        return _sigmoid(_design(chunk) @ fitted.T)

    return predict


def _design(chunk: Log) -> np.ndarray:
    features = chunk.features if chunk.features is not None else np.empty((len(chunk), 0))
    return np.hstack([np.ones((len(chunk), 1)), features])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # = 1 / (1 + e^-x), without overflow
