"""The experiment as the service recorded it (`POST /history`), not as the client saw it:
allocation share, P(best) and the estimated rate with its interval, against users counted.

The simulation's own plots (`abtest.demo.plots`) stay for what only the client knows; these
show what the bandit acted on, snapshot by snapshot, with the warm-up shaded and the
legends beside the panels, off the data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

Snapshot = Mapping[str, Any]  # one entry of /history's `snapshots`


def _series(snapshots: Sequence[Snapshot], variant: str, field: str) -> np.ndarray:
    values = []
    for snapshot in snapshots:
        found = [v[field] for v in snapshot["variants"] if v["variant_name"] == variant]
        values.append(found[0] if found and found[0] is not None else np.nan)
    return np.array(values, dtype=float)


def service_history(
    snapshots: Sequence[Snapshot],
    threshold: float | None = None,
    concluded: tuple[float, str] | None = None,
) -> Figure:
    """Three panels over the invocations counted at each snapshot; `threshold` is the
    decision's P(best) bar, drawn if given; `concluded` (when, the winner) marks the
    conclusion, from which on the winner served everyone whatever the strategy's allocation."""
    if not snapshots:
        raise ValueError("no snapshot in the history: nothing was aggregated yet")
    variants = [v["variant_name"] for v in snapshots[-1]["variants"]]
    counted = np.array([sum(v["invocation_count"] for v in s["variants"]) for s in snapshots])
    figure = Figure(figsize=(9, 9), layout="constrained")
    share, best, rate = figure.subplots(3, 1, sharex=True)
    colors = {v: f"C{i}" for i, v in enumerate(variants)}

    share.stackplot(
        counted,
        *[_series(snapshots, v, "allocation") for v in variants],
        labels=variants,
        colors=[colors[v] for v in variants],
        alpha=0.8,
        step="post",
    )
    share.set(title="Allocation share of new users", ylabel="share", ylim=(0, 1))

    for v in variants:
        best.plot(counted, _series(snapshots, v, "probability_best"), color=colors[v], label=v)
    if threshold is not None:
        best.axhline(threshold, color="0.4", linestyle=":", linewidth=1, label="threshold")
    best.set(title="Probability of being best", ylabel="P(best)", ylim=(0, 1.02))

    for v in variants:
        intervals = [_interval(s, v) for s in snapshots]
        low = np.array([i[0] for i in intervals], dtype=float)
        high = np.array([i[1] for i in intervals], dtype=float)
        rate.fill_between(counted, low, high, color=colors[v], alpha=0.2, linewidth=0)
        estimate = _series(snapshots, v, "estimate")
        rate.plot(counted, estimate, color=colors[v], label=f"{v} (95 % interval shaded)")
    rate.set(title="Estimated reward rate", ylabel="rate", xlabel="invocations counted")

    warm = [c for c, s in zip(counted, snapshots, strict=True) if s["warming_up"]]
    if warm:  # until the first snapshot the strategy allocated, the initial weights did
        after = [c for c, s in zip(counted, snapshots, strict=True) if not s["warming_up"]]
        end = after[0] if after else warm[-1]
        for axes in (share, best, rate):
            axes.axvspan(0, end, color="0.6", alpha=0.2, linewidth=0, label="warm-up")
    if concluded is not None:
        at, winner = concluded
        # The snapshot of the aggregation that concluded it is the last taken before.
        before = [c for c, s in zip(counted, snapshots, strict=True) if s["taken_at"] <= at]
        mark = before[-1] if before else counted[0]
        for axes in (share, best, rate):
            axes.axvline(mark, color="tab:green", linewidth=1.5)
            axes.axvspan(mark, counted[-1], color="tab:green", alpha=0.12, linewidth=0,
                         label=f"concluded: {winner} serves everyone")  # fmt: skip
    for axes in (share, best, rate):
        axes.set_xlim(0, counted[-1])
        # Beside the panel, never over the data.
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    figure.suptitle("The experiment as the service recorded it (/history)")
    return figure


def _interval(snapshot: Snapshot, variant: str) -> tuple[float, float]:
    for v in snapshot["variants"]:
        if v["variant_name"] == variant and v["estimate_interval"] is not None:
            return tuple(v["estimate_interval"])
    return (np.nan, np.nan)


def save(
    snapshots: Sequence[Snapshot],
    out_dir: str | Path,
    threshold: float | None,
    concluded: tuple[float, str] | None = None,
) -> Path:
    path = Path(out_dir) / "service_history.png"
    service_history(snapshots, threshold, concluded).savefig(path, dpi=100)
    return path
