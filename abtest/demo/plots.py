"""The simulation's figures, as in the article: reward, reward rate, Beta posteriors, traffic.

Figures are built with `matplotlib.figure.Figure` (no pyplot, no global backend), so
they render as PNG files from the CLI and inline in a notebook alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from scipy import stats as scipy_stats

from abtest.demo.simulation import UserResult


def _variants(results: Sequence[UserResult]) -> list[str]:
    return sorted({r.variant for r in results})


def cumulative_reward(results: Sequence[UserResult]) -> Figure:
    figure = Figure(figsize=(8, 4.5))
    axes = figure.subplots()
    users = np.arange(1, len(results) + 1)
    for variant in _variants(results):
        rewards = np.array([r.reward if r.variant == variant else 0 for r in results])
        axes.plot(users, np.cumsum(rewards), label=variant)
    axes.set(title="Cumulative reward per variant", xlabel="users", ylabel="rewards")
    axes.legend()
    return figure


def reward_rate(results: Sequence[UserResult]) -> Figure:
    """Each variant's running reward rate (its accuracy as users saw it), and the overall one."""
    figure = Figure(figsize=(8, 4.5))
    axes = figure.subplots()
    users = np.arange(1, len(results) + 1)
    for variant in _variants(results):
        mine = np.array([r.variant == variant for r in results])
        rewards = np.cumsum([r.reward if r.variant == variant else 0 for r in results])
        counts = np.cumsum(mine)
        with np.errstate(invalid="ignore", divide="ignore"):
            axes.plot(users, np.where(counts > 0, rewards / counts, np.nan), label=variant)
    overall = np.cumsum([r.reward for r in results]) / users
    axes.plot(users, overall, color="black", linestyle="--", label="all users")
    axes.set(title="Reward rate", xlabel="users", ylabel="reward rate", ylim=(0, 1))
    axes.legend()
    return figure


def _checkpoints(total: int, count: int) -> list[int]:
    """Where things happen: log-spaced user counts (early looks close together, where the
    posteriors move most), ending at the last user."""
    if total <= 1:
        return [max(total, 1)]
    first = max(1, total // 50)
    return sorted({round(v) for v in np.geomspace(first, total, count)})


def beta_posteriors(results: Sequence[UserResult], checkpoints: int = 4) -> Figure:
    """Beta(1 + rewards, 1 + misses) per variant at log-spaced points (early and late), each
    panel zoomed to where the posteriors' mass is, the legend below it, off the curves."""
    figure = Figure(figsize=(4 * checkpoints, 4.6))
    ends = _checkpoints(len(results), checkpoints)
    grid = figure.subplots(1, len(ends), sharey=False, squeeze=False)[0]
    for axes, end in zip(grid, ends, strict=True):
        seen = results[:end]
        shapes = {}
        for variant in _variants(results):
            n = sum(r.variant == variant for r in seen)
            wins = sum(r.reward for r in seen if r.variant == variant)
            shapes[variant] = (n, 1 + wins, 1 + n - wins)
        # The central 99.8 % of every variant's posterior, padded by a tenth.
        low = min(scipy_stats.beta.ppf(0.001, a, b) for _, a, b in shapes.values())
        high = max(scipy_stats.beta.ppf(0.999, a, b) for _, a, b in shapes.values())
        pad = 0.1 * (high - low)
        x = np.linspace(max(0.0, low - pad), min(1.0, high + pad), 400)
        for variant, (n, a, b) in shapes.items():
            axes.plot(x, scipy_stats.beta.pdf(x, a, b), label=f"{variant} ({n} users)")
        axes.set(title=f"after {end} users", xlabel="reward rate", yticks=[], xlim=(x[0], x[-1]))
        axes.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=1)
    figure.suptitle("Beta posteriors of the reward rate")
    figure.tight_layout()
    return figure


def regret(results: Sequence[UserResult], means: Mapping[str, float]) -> Figure:
    """Cumulative expected regret against the oracle (the best true mean for every user),
    beside a fixed even split's, when the truth is known (`--truth`)."""
    figure = Figure(figsize=(8, 4.5))
    axes = figure.subplots()
    best = max(means.values())
    users = np.arange(1, len(results) + 1)
    gaps = np.array([best - means[r.variant] for r in results])
    axes.plot(users, np.cumsum(gaps), label="this run (expected regret)")
    even = best - float(np.mean(list(means.values())))
    axes.plot(users, users * even, color="grey", linestyle="--", label="an even split")
    axes.set(title="Regret against always serving the best variant", xlabel="users",
             ylabel="cumulative regret (rewards)")  # fmt: skip
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    return figure


def traffic_share(results: Sequence[UserResult], windows: int = 20) -> Figure:
    """Share of new users per variant in consecutive windows: the bandit moving traffic."""
    figure = Figure(figsize=(8, 4.5))
    axes = figure.subplots()
    size = max(1, len(results) // windows)
    starts = list(range(0, len(results), size))
    shares = {
        variant: [np.mean([r.variant == variant for r in results[s : s + size]]) for s in starts]
        for variant in _variants(results)
    }
    # Each window's shares hold from its first user to the next window's (a step plot).
    edges = [*starts, len(results)]
    values = [[*share, share[-1]] for share in shares.values()]
    axes.stackplot(edges, *values, labels=list(shares), step="post", alpha=0.8)
    axes.set_xlim(0, len(results))
    axes.set(title="Traffic share per variant", xlabel="users", ylabel="share", ylim=(0, 1))
    axes.legend(loc="upper left")
    return figure


def save_all(
    results: Sequence[UserResult], out_dir: str | Path, means: Mapping[str, float] | None = None
) -> list[Path]:
    """Write the figures as PNG files (the regret against the oracle too when each
    variant's true mean is known); returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    builders = [
        ("cumulative_reward", cumulative_reward),
        ("reward_rate", reward_rate),
        ("beta_posteriors", beta_posteriors),
        ("traffic_share", traffic_share),
    ]
    if means is not None and {r.variant for r in results} <= set(means):
        builders.append(("regret", lambda rs: regret(rs, means)))
    paths = []
    for name, build in builders:
        path = out / f"{name}.png"
        build(results).savefig(path, dpi=100)
        paths.append(path)
    return paths
