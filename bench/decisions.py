"""How soon, and how rightly, an experiment reaches a decision under each allocation.

    python bench/decisions.py               # 500 runs per row (make bench)
    python bench/decisions.py --runs 50     # quick look

Each run (`bandit.simulate.run_experiment`) serves up to 100,000 users in batches of 1,000
(as when the event log is delivered every minute). Before a batch the allocation is the
product's own, as `/stats` reports it; after it the rule of `/stats`' decision is asked for
a winner. Once one is called every later user gets the winner; the regret counted is the
expected one, sum over users of (best rate - rate of their variant). Runs have fixed seeds
and are spread over a process pool.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
import zlib
from dataclasses import dataclass
from multiprocessing import Pool

import numpy as np

from bandit import DEFAULT_STRATEGY, check_params, get_strategy
from bandit.simulate import BernoulliBandit, Experiment, run_experiment

BATCH = 1_000
HORIZON = 100_000
WARMUP = 0  # the endpoint config's default
# The regret benchmark's instances (bench/regret.py), champion first.
REGRET_INSTANCES = {
    "a: 0.05 / 0.06": (0.05, 0.06),
    "b: 0.10 / 0.12 / 0.15": (0.10, 0.12, 0.15),
    "c: 0.01, 0.02 .. 0.10": tuple(round(0.01 * i, 2) for i in range(1, 11)),
}
LIFTS = {"0.05 / +20 %": (0.05, 0.06), "0.20 / +10 %": (0.20, 0.22)}
FIFTY_FIFTY = ("WeightedSampling", ())


def run_once(
    strategy_name: str, params: tuple, means: tuple[float, ...], seed: tuple[int, int], stop: bool
) -> Experiment:
    return run_experiment(
        get_strategy(strategy_name, dict(params)),
        BernoulliBandit(means),
        seed=seed,
        horizon=HORIZON,
        batch_size=BATCH,
        warmup=WARMUP,
        stop=stop,
    )


def _task(task: tuple) -> tuple[tuple, Experiment]:
    key, strategy_name, params, means, seed, stop = task
    return key, run_once(strategy_name, params, means, seed, stop)


@dataclass(frozen=True, slots=True)
class Row:
    outcomes: list[Experiment]
    means: tuple[float, ...]

    @property
    def runs(self) -> int:
        return len(self.outcomes)

    def rate(self, wrong: bool) -> tuple[float, float]:
        best = int(np.argmax(self.means))
        hits = sum(
            o.winner is not None and (o.winner != best if wrong else True) for o in self.outcomes
        )
        p = hits / self.runs
        return p, math.sqrt(p * (1.0 - p) / self.runs)

    def median_users(self) -> float:
        """Median users to a correct decision; runs without one count as never (inf)."""
        best = int(np.argmax(self.means))
        users = [
            o.users if o.winner == best and o.users is not None else math.inf for o in self.outcomes
        ]
        return statistics.median(users)

    def regret(self) -> tuple[float, float]:
        values = [o.regret for o in self.outcomes]
        return statistics.fmean(values), statistics.stdev(values) / math.sqrt(len(values))


def label(strategy_name: str, params: tuple) -> str:
    shown = ", ".join(f"{k} {v:g}" for k, v in params)
    return f"{strategy_name}({shown})" if shown else strategy_name


def default_allocation() -> tuple[str, tuple]:
    """A new endpoint's strategy and parameters, as registration fills them in."""
    return DEFAULT_STRATEGY, tuple(sorted(check_params(DEFAULT_STRATEGY).items()))


def settings_swept() -> list[tuple[str, tuple]]:
    """The trade-off table's allocations: Thompson with a floor, top-two Thompson by beta."""
    swept = [FIFTY_FIFTY]
    swept += [("ThompsonSampling", (("floor", f),)) for f in (0.0, 0.01, 0.05, 0.1, 0.2)]
    swept += [("TopTwoThompson", (("beta", b), ("floor", 0.01))) for b in (0.7, 0.8, 0.9, 0.95)]
    default = default_allocation()
    return swept if default in swept else [*swept, default]


def fmt_users(users: float) -> str:
    return f"> {HORIZON:,}" if math.isinf(users) else f"{users:,.0f}"


PLAIN_THOMPSON = ("ThompsonSampling", (("floor", 0.0),))


def simulate_rows(specs: list[tuple], runs: int, workers: int) -> dict[tuple, Row]:
    """specs: (key, strategy, means, stop); `runs` seeded runs of each, on a process pool."""
    tasks = [
        # A fixed seed per row and run (hash() of a str is salted per process).
        (key, strategy[0], strategy[1], means, (zlib.crc32(repr(key).encode()), run), stop)
        for key, strategy, means, stop in specs
        for run in range(runs)
    ]
    tasks.sort(key=lambda t: -len(t[3]))  # the many-variant runs first, for an even finish
    results: dict[tuple, list[Experiment]] = {}
    with Pool(workers) as pool:
        for key, outcome in pool.imap_unordered(_task, tasks, chunksize=2):
            results.setdefault(key, []).append(outcome)
    return {key: Row(results[key], means) for key, _, means, _ in specs}


def aa_table(runs: int, workers: int) -> list[str]:
    default = default_allocation()
    allocations = (default, FIFTY_FIFTY)
    specs = [
        (("aa", k, base, strategy), strategy, (base,) * k, True)
        for k in (2, 3, 5)
        for base in (0.05, 0.20)
        for strategy in allocations
    ]
    rows = simulate_rows(specs, runs, workers)
    lines = [
        "A/A (all variants equal): share of runs that called a winner (± se)",
        "",
        "| variants | base rate | " + " | ".join(label(*s) for s in allocations) + " |",
        "|---:|---:|---:|---:|",
    ]
    for k in (2, 3, 5):
        for base in (0.05, 0.20):
            cells = []
            for strategy in allocations:
                p, se = rows[("aa", k, base, strategy)].rate(wrong=False)
                cells.append(f"{p:.3f} ± {se:.3f}")
            lines.append(f"| {k} | {base:.2f} | " + " | ".join(cells) + " |")
    return lines


def lift_table(runs: int, workers: int) -> list[str]:
    specs = [
        (("lift", lift, strategy), strategy, means, True)
        for lift, means in LIFTS.items()
        for strategy in settings_swept()
    ]
    rows = simulate_rows(specs, runs, workers)
    lines = [
        "A champion and a better challenger: median users to a correct decision (runs "
        "without one count as never), its ratio to 50/50, wrong-winner rate, share of runs "
        f"decided by {HORIZON:,} users, regret over {HORIZON:,} users (the experiment, then "
        "only the winner)",
        "",
        "| rates | allocation | median users | vs 50/50 | wrong winner | decided "
        "| regret (mean ± se) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for lift in LIFTS:
        base_users = rows[("lift", lift, FIFTY_FIFTY)].median_users()
        for strategy in settings_swept():
            row = rows[("lift", lift, strategy)]
            users = row.median_users()
            wrong, wrong_se = row.rate(wrong=True)
            decided, _ = row.rate(wrong=False)
            regret, regret_se = row.regret()
            ratio = f"{users / base_users:.2f}x" if math.isfinite(users) else "-"
            lines.append(
                f"| {lift} | {label(*strategy)} | {fmt_users(users)} | {ratio} "
                f"| {wrong:.3f} ± {wrong_se:.3f} | {decided:.2f} "
                f"| {regret:,.1f} ± {regret_se:,.1f} |"
            )
    return lines


def regret_table(runs: int, workers: int) -> list[str]:
    default = default_allocation()
    specs = []
    for instance, means in REGRET_INSTANCES.items():
        specs.append((("regret", instance, default), default, means, True))
        specs.append((("regret", instance, PLAIN_THOMPSON), PLAIN_THOMPSON, means, False))
    rows = simulate_rows(specs, runs, workers)
    lines = [
        f"Regret over {HORIZON:,} users on the regret benchmark's instances: the default "
        "allocation until the decision, then only the winner, against plain Thompson "
        "sampling all the way",
        "",
        "| instance | default + decision | plain Thompson | ratio | decided | wrong winner |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for instance in REGRET_INSTANCES:
        ours = rows[("regret", instance, default)]
        plain = rows[("regret", instance, PLAIN_THOMPSON)]
        (m1, s1), (m2, s2) = ours.regret(), plain.regret()
        decided, _ = ours.rate(wrong=False)
        wrong, _ = ours.rate(wrong=True)
        lines.append(
            f"| {instance} | {m1:,.1f} ± {s1:,.1f} | {m2:,.1f} ± {s2:,.1f} "
            f"| {m1 / m2:.2f}x | {decided:.2f} | {wrong:.3f} |"
        )
    return lines


TABLES = {"lift": lift_table, "regret": regret_table, "aa": aa_table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--only", choices=tuple(TABLES), action="append")
    args = parser.parse_args()
    started = time.perf_counter()
    print(
        f"decisions: {args.runs} runs per row, batches of {BATCH:,} users up to {HORIZON:,}, "
        f"the decision after every batch; default allocation {label(*default_allocation())}; "
        f"{args.workers} workers, Python {platform.python_version()}",
        flush=True,
    )
    for name in args.only or TABLES:
        part_started = time.perf_counter()
        print("\n" + "\n".join(TABLES[name](args.runs, args.workers)), flush=True)
        print(f"({time.perf_counter() - part_started:,.0f} s)", flush=True)
    print(f"\ntotal {time.perf_counter() - started:,.0f} s")


if __name__ == "__main__":
    main()
