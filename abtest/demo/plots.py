"""The simulation's figures, as in the article: reward, reward rate, Beta posteriors, traffic.

Figures are built with `matplotlib.figure.Figure` (no pyplot, no global backend), so
they render as PNG files from the CLI and inline in a notebook alike.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def beta_posteriors(results: Sequence[UserResult], checkpoints: int = 4) -> Figure:
    """Beta(1 + rewards, 1 + misses) per variant after a few fractions of the users."""
    figure = Figure(figsize=(4 * checkpoints, 4))
    grid = figure.subplots(1, checkpoints, sharey=False, squeeze=False)[0]
    x = np.linspace(0, 1, 400)
    ends = sorted({max(1, round(len(results) * (i + 1) / checkpoints)) for i in range(checkpoints)})
    for axes, end in zip(grid, ends, strict=False):
        seen = results[:end]
        for variant in _variants(results):
            n = sum(r.variant == variant for r in seen)
            wins = sum(r.reward for r in seen if r.variant == variant)
            axes.plot(x, scipy_stats.beta.pdf(x, 1 + wins, 1 + n - wins), label=f"{variant} ({n})")
        axes.set(title=f"after {end} users", xlabel="reward rate")
        axes.legend(fontsize="small")
    figure.suptitle("Beta posteriors of the reward rate")
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


def save_all(results: Sequence[UserResult], out_dir: str | Path) -> list[Path]:
    """Write the four figures as PNG files; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, build in (
        ("cumulative_reward", cumulative_reward),
        ("reward_rate", reward_rate),
        ("beta_posteriors", beta_posteriors),
        ("traffic_share", traffic_share),
    ):
        path = out / f"{name}.png"
        build(results).savefig(path, dpi=100)
        paths.append(path)
    return paths
