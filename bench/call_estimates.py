"""Estimators of the difference at the call that know the runs' horizon and looks.

    python bench/call_estimates.py              # 500 runs a row
    python bench/call_estimates.py --runs 100   # quick look

The estimate at the call sits on the boundary, so the look a call comes at carries nearly
all it says about the truth, and the bias over the calls depends on where the runs are cut
(BENCHMARKS.md, "What is left at the call"). Given the cut, the law of the call is known:
with looks every batch of 1,000 trials and unit information per batch, the z-statistic's sum
S_j = z_j sqrt(j) is a Brownian motion with drift delta (the truth in standard errors of one
batch), stopped the first time |S_j| reaches b_j = c(x_j) sqrt(j), the decision's own
boundary (bandit.stopping.boundary, x_j = 1,000 j rho²). Its sub-density of an upward call at
look j with sum s is computed once at delta = 0 by numerical recursion (Armitage, McPherson,
Rowe, J. R. Stat. Soc. A 132, 1969) and tilted: exp(delta s - delta² j / 2) is the likelihood
ratio of the path. On that law, for runs cut at J looks, each estimator of delta is a table
over (j, s):

- naive: s / j, the estimate as reported (the first table checks the law with it);
- whitehead: Whitehead's adjustment as bandit.stopping makes it (the root nearest below
  the estimate of E_delta[S_T / T | upward call by J] = s / j), here with the true looks and
  the true horizon;
- cmle: the conditional MLE, argmax of delta s - delta² j / 2 - log P_delta(upward call by J)
  (Fan, DeMets, Lan, J. Biopharm. Stat. 14, 2004);
- stagewise: median-unbiased under the stage-wise ordering (Tsiatis, Rosner, Mehta,
  Biometrics 40, 1984; Emerson, Fleming, Biometrika 77, 1990): P_delta(upward call before j,
  or at j with a larger sum) = 1/2; it needs the looks up to the call only, no horizon;
- compromise: g_j + (s - b_j) / j with g least squares for a conditional bias near 0 over
  delta in [0.25, 0.9] (the rows' range), a penalty EPSILON on the mean square error (with
  runs cut at 100,000 users a conditionally unbiased g has a large variance: printed too).

They are applied to the calls of bench/decisions.py's lift rows (same seeds; the runs go on
to 400,000 users and the calls by 100,000 are that bench's), the estimate being
delta_hat sqrt(j) se with se the reported standard error at the call.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import decisions
import numpy as np
from scipy.signal import fftconvolve

from bandit.estimates import TIGHTEST_AT, rho_squared
from bandit.simulate import Experiment
from bandit.stopping import ASSUMED_LOOKS, boundary

ALPHA = 0.05  # the call's level with two variants
CUTS = (100, 400)  # looks (batches of decisions.BATCH users) the runs are cut at
GRID = 0.02  # the recursion's spacing of the sum (a batch's sum has sd 1)
OVERSHOOT = 8.0  # sums this far past the boundary carry no mass worth keeping
DELTAS = np.arange(-1.0, 2.0, 0.0025)  # the drifts the estimators search over
EPSILON = 0.1  # the compromise's weight on mean square error against bias
FRONTIER = (0.03, 0.1, 0.3, 1.0)
FIT_RANGE = (0.25, 0.9)


def boundaries(looks: int) -> np.ndarray:
    """b_j on the sum's scale, j = 1..looks."""
    r2 = rho_squared(TIGHTEST_AT)
    return np.array(
        [boundary(decisions.BATCH * j * r2, ALPHA) * math.sqrt(j) for j in range(1, looks + 1)]
    )


class Law:
    """The upward calls by `looks` looks: look j, sum s and their mass at drift 0."""

    def __init__(self, looks: int) -> None:
        self.looks = looks
        self.b = boundaries(looks)
        edge = self.b.max() + 10.0
        s = np.arange(-edge, edge + GRID / 2, GRID)
        k = np.arange(-9.0, 9.0 + GRID / 2, GRID)
        kernel = np.exp(-0.5 * k * k) / math.sqrt(2.0 * math.pi) * GRID
        density = np.exp(-0.5 * s * s) / math.sqrt(2.0 * math.pi)
        js, ss, mass = [], [], []
        for j in range(1, looks + 1):
            if j > 1:  # the paths still going on, one batch further
                density = fftconvolve(density, kernel, mode="same")
            up = (s >= self.b[j - 1]) & (s < self.b[j - 1] + OVERSHOOT)
            js.append(np.full(up.sum(), j))
            ss.append(s[up])
            mass.append(density[up] * GRID)
            density = np.where(np.abs(s) < self.b[j - 1], density, 0.0)
        self.j, self.s, self.mass = np.concatenate(js), np.concatenate(ss), np.concatenate(mass)
        self.starts = np.searchsorted(self.j, np.arange(1, looks + 2))

    def weights(self, delta: float) -> np.ndarray:
        """The mass of each upward call under drift delta (unnormalised: sums to P(up))."""
        return self.mass * np.exp(delta * self.s - 0.5 * delta * delta * self.j)

    def at(self, table: np.ndarray, look: int, s: float) -> float:
        """An estimator's table read at a call (interpolated in the sum)."""
        a, b = self.starts[look - 1], self.starts[look]
        return float(np.interp(s, self.s[a:b], table[a:b]))

    def bias(self, table: np.ndarray, delta: float) -> tuple[float, float]:
        """E_delta[table - delta | upward call by the cut] and its root mean square."""
        w = self.weights(delta)
        w /= w.sum()
        return float(w @ (table - delta)), float(math.sqrt(w @ (table - delta) ** 2))


def whitehead(law: Law) -> np.ndarray:
    """Whitehead's adjustment conditional on an upward call by the cut, at every call."""
    naive = law.s / law.j
    means = np.array([(w @ naive) / w.sum() for w in map(law.weights, DELTAS)])
    out = np.empty(len(naive))
    for i, (value, j) in enumerate(zip(naive, law.j, strict=True)):
        # as bandit.stopping: step down from the estimate to the first drift whose
        # expectation falls below it, at most 6 standard errors of the call
        floor = value - 6.0 / math.sqrt(j)
        below = (floor <= DELTAS) & (value >= DELTAS) & (means < value)
        out[i] = DELTAS[below].max() if below.any() else floor
    return out


def cmle(law: Law) -> np.ndarray:
    """The conditional MLE given an upward call by the cut, at every call."""
    log_p = np.log([w.sum() for w in map(law.weights, DELTAS)])
    out = np.empty(len(law.j))
    for a in range(0, len(out), 4000):
        j, s = law.j[a : a + 4000, None], law.s[a : a + 4000, None]
        loglik = DELTAS * s - 0.5 * DELTAS**2 * j - log_p
        out[a : a + 4000] = DELTAS[loglik.argmax(axis=1)]
    return out


def stagewise(law: Law) -> np.ndarray:
    """The stage-wise median-unbiased estimate at every call (drifts searched upward)."""
    out = np.full(len(law.j), np.nan)
    first = law.starts[law.j - 1]
    for delta in np.concatenate([DELTAS, np.arange(2.0, 14.0, 0.01)]):
        w = law.weights(delta)
        per_look = np.bincount(law.j - 1, weights=w, minlength=law.looks)
        before = np.concatenate([[0.0], np.cumsum(per_look)])[law.j - 1]
        running = np.cumsum(w)
        above = per_look[law.j - 1] - (running - np.concatenate([[0.0], running])[first])
        reached = np.isnan(out) & (before + above >= 0.5)
        out[reached] = delta
    return out


def compromise(law: Law, epsilon: float, smooth: float = 1e-4) -> np.ndarray:
    """g_j + overshoot / j, g minimising the squared conditional bias plus epsilon times the
    mean square error over FIT_RANGE (`smooth` on g's second differences keeps it
    determined where calls are rare)."""
    deltas = np.linspace(*FIT_RANGE, 120)
    over = (law.s - law.b[law.j - 1]) / law.j
    probs, overs = [], []
    for w in map(law.weights, deltas):
        w = w / w.sum()
        probs.append(np.bincount(law.j - 1, weights=w, minlength=law.looks))
        overs.append(w @ over)
    probs = np.array(probs)
    rows, targets = [probs], [deltas - np.array(overs)]
    for p, delta in zip(probs, deltas, strict=True):
        rows.append(np.sqrt(epsilon) * np.diag(np.sqrt(p)))
        targets.append(np.sqrt(epsilon * p) * delta)
    second = np.diff(np.eye(law.looks), 2, axis=0)
    rows.append(math.sqrt(smooth) * second)
    targets.append(np.zeros(law.looks - 2))
    g, *_ = np.linalg.lstsq(np.vstack(rows), np.concatenate(targets), rcond=None)
    return g[law.j - 1] + over


def summary(errors: list[float]) -> tuple[float, float, float]:
    """Mean error, its Monte Carlo se and the RMSE."""
    mean = statistics.fmean(errors)
    se = statistics.stdev(errors) / math.sqrt(len(errors))
    return mean, se, math.sqrt(statistics.fmean(e * e for e in errors))


def errors(law: Law, table: np.ndarray, calls: list[Experiment]) -> list[float]:
    """Each call's estimate by `table` minus the truth: delta_hat sqrt(j) se."""
    out = []
    for o in calls:
        look = o.users // decisions.BATCH
        z = (o.error + o.truth) / o.se
        out.append(law.at(table, look, z * math.sqrt(look)) * math.sqrt(look) * o.se - o.truth)
    return out


def cell(values: list[float]) -> str:
    mean, se, rms = summary(values)
    return f"{mean:+.2g} ± {se:.2g} ({mean / se:+.1f}), {rms:.3g}"


def name(key: tuple) -> str:
    return f"{key[1]} {key[2]} {decisions.label(*key[3])}"


def law_table(law: Law, found: dict[tuple, list[Experiment]], runs: int) -> list[str]:
    """The law against the bench: each row at its delta (the median over its calls)."""
    lines = [
        "| row | delta | decided: law / bench | mean look: law / bench | z bias: law / bench |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, calls in found.items():
        looks = [o.users // decisions.BATCH for o in calls]
        delta = statistics.median(
            o.truth / (o.se * math.sqrt(n)) for o, n in zip(calls, looks, strict=True)
        )
        w = law.weights(delta)
        z_bias = (w @ (law.s / np.sqrt(law.j) - delta * np.sqrt(law.j))) / w.sum()
        lines.append(
            f"| {name(key)} | {delta:.3f} | {w.sum():.3f} / {len(calls) / runs:.3f} "
            f"| {(w @ law.j) / w.sum():.1f} / {statistics.fmean(looks):.1f} "
            f"| {z_bias:+.3f} / {statistics.fmean(o.error / o.se for o in calls):+.3f} |"
        )
    return lines


def estimator_table(law: Law, found: dict[tuple, list[Experiment]]) -> list[str]:
    tables = {
        "whitehead": whitehead(law),
        "cmle": cmle(law),
        "stagewise": stagewise(law),
        f"compromise {EPSILON:g}": compromise(law, EPSILON),
    }
    lines = [
        "| row | calls | today's adjusted | " + " | ".join(tables) + " |",
        "|---|---:|" + "---:|" * (len(tables) + 1),
    ]
    for key, calls in found.items():
        cells = [cell([o.adjusted_error for o in calls])]
        cells += [cell(errors(law, table, calls)) for table in tables.values()]
        lines.append(f"| {name(key)} | {len(calls)} | " + " | ".join(cells) + " |")
    return lines


def frontier_table(law: Law, found: dict[tuple, list[Experiment]]) -> list[str]:
    """The compromise by its weight on mean square error: bias in Monte Carlo se, RMSE as a
    ratio to today's adjusted estimate's."""
    lines = ["| epsilon | " + " | ".join(map(name, found)) + " |", "|---|" + "---:|" * len(found)]
    for epsilon in FRONTIER:
        table = compromise(law, epsilon)
        cells = []
        for calls in found.values():
            mean, se, rms = summary(errors(law, table, calls))
            cells.append(
                f"{mean / se:+.1f}, {rms / summary([o.adjusted_error for o in calls])[2]:.2f}x"
            )
        lines.append(f"| {epsilon:g} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    started = time.perf_counter()
    decisions.HORIZON = CUTS[-1] * decisions.BATCH
    decisions.ADJUST_LOOKS = ASSUMED_LOOKS  # today's adjusted estimate, as the service has it
    specs = [
        (("lift", reward, lift, strategy), strategy, means, True, reward)
        for reward in decisions.REWARDS
        for lift, means in decisions.LIFTS.items()
        for strategy in (decisions.FIFTY_FIFTY, decisions.default_allocation(reward))
    ]
    rows = decisions.simulate_rows(specs, args.runs, args.workers)
    print(f"{args.runs} runs a row, simulated in {time.perf_counter() - started:,.0f} s")
    for cut in CUTS:
        law = Law(cut)
        found = {
            key: [o for o in row.at_call() if o.users <= cut * decisions.BATCH]
            for key, row in rows.items()
        }
        print(f"\nRuns cut at {cut * decisions.BATCH:,} users ({cut} looks): the law\n")
        print("\n".join(law_table(law, found, args.runs)))
        exact = compromise(law, 0.0, smooth=0.01)
        spread = ", ".join(f"{law.bias(exact, d)[1]:.2f} at {d}" for d in (0.35, 0.5, 0.75))
        naive = ", ".join(f"{law.bias(law.s / law.j, d)[1]:.2f}" for d in (0.35, 0.5, 0.75))
        print(f"\nExactly unbiased g: root mean square error {spread} (naive {naive})")
        print("\nError at the call (mean ± Monte Carlo se (in se), RMSE)\n")
        print("\n".join(estimator_table(law, found)))
        print("\nThe compromise by epsilon\n")
        print("\n".join(frontier_table(law, found)))
    print(f"\ntotal {time.perf_counter() - started:,.0f} s")


if __name__ == "__main__":
    main()
