"""The demo's plot of the service's history: the snapshots' points, the warm-up shaded, the
legends beside the panels."""

from __future__ import annotations

import numpy as np
import pytest

from abtest.demo.history_plots import service_history


def snapshot(counted: int, share: float, best: float, warming: bool) -> dict:
    def variant(name: str, mine: float, p: float, rate: float) -> dict:
        return {
            "variant_name": name,
            "invocation_count": round(counted * mine),
            "allocation": mine,
            "probability_best": p,
            "estimate": rate,
            "estimate_interval": [rate - 0.05, rate + 0.05],
        }

    return {
        "taken_at": 1000.0 + counted,
        "warming_up": warming,
        "variants": [
            variant("Champion1", 1 - share, 1 - best, 0.7),
            variant("Challenger1", share, best, 0.85),
        ],
    }


SNAPSHOTS = [
    snapshot(100, 0.5, 0.6, True),
    snapshot(200, 0.5, 0.8, True),
    snapshot(400, 0.8, 0.97, False),
    snapshot(800, 0.9, 0.999, False),
]


def test_panels_plot_the_snapshots_with_the_warm_up_shaded_and_legends_outside() -> None:
    figure = service_history(SNAPSHOTS, threshold=0.95)
    share, best, rate = figure.axes
    best_lines = {line.get_label(): line for line in best.get_lines()}
    assert list(best_lines["Challenger1"].get_xdata()) == [100, 200, 400, 800]
    assert list(best_lines["Challenger1"].get_ydata()) == [0.6, 0.8, 0.97, 0.999]
    assert list(best_lines["threshold"].get_ydata()) == [0.95, 0.95]
    rate_lines = {line.get_label(): line for line in rate.get_lines()}
    assert np.allclose(rate_lines["Challenger1 (95 % interval shaded)"].get_ydata(), 0.85)
    figure.canvas.draw()
    for axes in (share, best, rate):
        # the warm-up: from the start to the first snapshot the strategy allocated (400)
        (span,) = [p for p in axes.patches if p.get_label() == "warm-up"]
        assert span.get_x() == 0 and span.get_x() + span.get_width() == pytest.approx(400)
        legend = axes.get_legend().get_window_extent()
        assert legend.x0 >= axes.get_window_extent().x1  # beside the data, not over it


def test_an_empty_history_says_so() -> None:
    with pytest.raises(ValueError, match="nothing was aggregated"):
        service_history([])


def test_the_conclusion_is_marked_from_the_snapshot_that_called_it() -> None:
    # GIVEN the experiment concluded just after the snapshot of 400 invocations was taken
    figure = service_history(SNAPSHOTS, threshold=0.95, concluded=(1000.0 + 400.5, "Challenger1"))
    figure.canvas.draw()
    for axes in figure.axes:
        # THEN from there to the end it is shaded as the winner's, with a line where it began
        (span,) = [
            p for p in axes.patches if p.get_label() == "concluded: Challenger1 serves everyone"
        ]
        assert span.get_x() == pytest.approx(400)
        assert span.get_x() + span.get_width() == pytest.approx(800)
        assert any(list(line.get_xdata()) == [400, 400] for line in axes.get_lines())
