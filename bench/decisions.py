"""How soon, and how rightly, an experiment reaches a decision under each allocation.

    python bench/decisions.py               # 500 runs per row (make bench)
    python bench/decisions.py --runs 50     # quick look
    python bench/decisions.py --only aa     # one table: lift, aa, tradeoff or regret
    python bench/decisions.py --only aa --reward continuous   # the rows of one reward kind
    python bench/decisions.py --only lift --horizon 400000    # runs that go on longer

Each run (`bandit.simulate.run_experiment`) serves up to 100,000 users in batches of 1,000
(as when the event log is delivered every minute). Before a batch the allocation is the
product's own, as `/stats` reports it; each user is logged with the propensity they were
assigned with and their outcome, so the counters hold the inverse-propensity sums the
service keeps with the "user" unit; after the batch the rule of `/stats`' decision is asked
for a winner. Once one is called every later user gets the winner; the regret counted is
the expected one, sum over users of (best mean - mean of their variant). Binary rewards
convert with the variant's rate; continuous ones (`revenue`) give a converting user a
log-normal revenue, mean 10 and sd 13.1 (sigma 1), the same for every variant, so the mean
per user lifts as the rate does. Runs have fixed seeds and are spread over a process pool.
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
from bandit.simulate import BernoulliBandit, Experiment, LogNormalRevenue, run_experiment

BATCH = 1_000
# Users per run; --horizon sets it (the estimate at the call is measured over the runs that
# call by then, so the horizon is part of what that figure means: BENCHMARKS.md).
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
REVENUE = LogNormalRevenue(math.log(10.0) - 0.5, 1.0)  # mean 10 per converting user
REWARDS = ("binary", "continuous")
# The looks the adjusted estimate at the call assumes: None, the true count (one per batch);
# --adjust-looks sets it (the service's decision assumes bandit.stopping.ASSUMED_LOOKS).
ADJUST_LOOKS: int | None = None


def run_once(
    strategy_name: str,
    params: tuple,
    means: tuple[float, ...],
    seed: tuple[int, int],
    stop: bool,
    reward: str = "binary",
    adjust_looks: int | None = None,
    horizon: int = HORIZON,
) -> Experiment:
    return run_experiment(
        get_strategy(strategy_name, dict(params), reward=reward),
        BernoulliBandit(means),
        seed=seed,
        horizon=horizon,
        batch_size=BATCH,
        warmup=WARMUP,
        stop=stop,
        revenue=REVENUE if reward == "continuous" else None,
        adjust_looks=adjust_looks,
    )


def _task(task: tuple) -> tuple[tuple, Experiment]:
    key, strategy_name, params, means, seed, stop, reward, looks, horizon = task
    return key, run_once(strategy_name, params, means, seed, stop, reward, looks, horizon)


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

    def at_call(self) -> list[Experiment]:
        """The runs that called the right winner: the estimate as the call reported it."""
        best = int(np.argmax(self.means))
        return [o for o in self.outcomes if o.winner == best and o.error is not None]


def mean_se(values: list[float]) -> str:
    if len(values) < 2:
        return "-"
    return (
        f"{statistics.fmean(values):+.4g} ± {statistics.stdev(values) / math.sqrt(len(values)):.2g}"
    )


def rmse(errors: list[float]) -> str:
    if not errors:
        return "-"
    return f"{math.sqrt(statistics.fmean(e * e for e in errors)):.4g}"


def share(flags: list[bool]) -> str:
    if not flags:
        return "-"
    p = sum(flags) / len(flags)
    return f"{p:.3f} ± {math.sqrt(p * (1.0 - p) / len(flags)):.3f}"


def label(strategy_name: str, params: tuple) -> str:
    shown = ", ".join(f"{k} {v:g}" for k, v in params)
    return f"{strategy_name}({shown})" if shown else strategy_name


def default_allocation(reward: str = "binary") -> tuple[str, tuple]:
    """A new endpoint's strategy and parameters for rewards of kind `reward`, as
    registration fills them in (a parameter's default may differ by kind)."""
    return DEFAULT_STRATEGY, tuple(sorted(check_params(DEFAULT_STRATEGY, reward=reward).items()))


def settings_swept(reward: str = "binary") -> list[tuple[str, tuple]]:
    """The trade-off table's allocations: Thompson with a floor, top-two Thompson by beta,
    and the default for rewards of kind `reward`."""
    swept = [FIFTY_FIFTY]
    swept += [("ThompsonSampling", (("floor", f),)) for f in (0.0, 0.01, 0.05, 0.1, 0.2)]
    betas = (0.6, 0.7, 0.8, 0.9, 0.95) if reward == "continuous" else (0.7, 0.8, 0.9, 0.95)
    swept += [("TopTwoThompson", (("beta", b), ("floor", 0.01))) for b in betas]
    if reward == "continuous":  # the other way to feed the runner-up: a higher floor
        swept.append(("TopTwoThompson", (("beta", 0.9), ("floor", 0.2))))
    default = default_allocation(reward)
    return swept if default in swept else [*swept, default]


def fmt_users(users: float) -> str:
    return f"> {HORIZON:,}" if math.isinf(users) else f"{users:,.0f}"


PLAIN_THOMPSON = ("ThompsonSampling", (("floor", 0.0),))


def simulate_rows(specs: list[tuple], runs: int, workers: int) -> dict[tuple, Row]:
    """specs: (key, strategy, means, stop[, reward]); `runs` seeded runs of each, on a pool."""
    specs = [spec if len(spec) == 5 else (*spec, "binary") for spec in specs]
    tasks = [
        # A fixed seed per row and run (hash() of a str is salted per process).
        (
            key,
            strategy[0],
            strategy[1],
            means,
            (zlib.crc32(repr(key).encode()), run),
            stop,
            reward,
            ADJUST_LOOKS,  # read here: a worker process may not share the parent's globals
            HORIZON,
        )
        for key, strategy, means, stop, reward in specs
        for run in range(runs)
    ]
    tasks.sort(key=lambda t: -len(t[3]))  # the many-variant runs first, for an even finish
    results: dict[tuple, list[Experiment]] = {}
    with Pool(workers) as pool:
        for key, outcome in pool.imap_unordered(_task, tasks, chunksize=2):
            results.setdefault(key, []).append(outcome)
    return {key: Row(results[key], means) for key, _, means, *_ in specs}


def aa_table(runs: int, workers: int, rewards: tuple[str, ...] = REWARDS) -> list[str]:
    specs = [
        (("aa", reward, k, base, strategy), strategy, (base,) * k, True, reward)
        for reward in rewards
        for strategy in (default_allocation(reward),)
        for k in (2, 3, 5)
        for base in (0.05, 0.20)
    ]
    rows = simulate_rows(specs, runs, workers)
    lines = [
        "A/A (all variants equal): share of runs that called a winner (± se); the CS of "
        "variant 1 against the champion: share of runs it held the truth (0) at every look",
        "",
        "| reward | variants | base rate | default allocation | false winners | its CS coverage |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for reward in rewards:
        strategy = default_allocation(reward)
        for k in (2, 3, 5):
            for base in (0.05, 0.20):
                row = rows[("aa", reward, k, base, strategy)]
                p, se = row.rate(wrong=False)
                covered = [o.covered_throughout for o in row.outcomes]
                lines.append(
                    f"| {reward} | {k} | {base:.2f} | {label(*strategy)} | {p:.3f} ± {se:.3f} "
                    f"| {share([c for c in covered if c is not None])} |"
                )
    return lines


def lift_table(
    runs: int, workers: int, rewards: tuple[str, ...] = REWARDS, sweep: bool = False
) -> list[str]:
    """The default allocation against 50/50 for each kind of reward; with `sweep`, the
    trade-off of every swept allocation."""
    specs = [
        (("lift", reward, lift, strategy), strategy, means, True, reward)
        for reward in rewards
        for lift, means in LIFTS.items()
        for strategy in (
            settings_swept(reward) if sweep else (FIFTY_FIFTY, default_allocation(reward))
        )
    ]
    rows = simulate_rows(specs, runs, workers)
    lines = [
        "A champion and a better challenger: median users to a correct decision (runs "
        "without one count as never), its ratio to 50/50, wrong-winner rate, share of runs "
        f"decided by {HORIZON:,} users, regret over {HORIZON:,} users (the experiment, then "
        "only the winner)",
        "",
        "| reward | rates | allocation | median users | vs 50/50 | wrong winner | decided "
        "| regret (mean ± se) |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    estimates = [
        "",
        "The estimated difference (challenger - champion) when the right winner was called: "
        "Hajek error (mean ± Monte Carlo se), the same in reported standard errors, the raw "
        "difference's error, and the share of runs whose confidence sequence (at the call's "
        "level) held the true difference at the call and at every look until then",
        "",
        "| reward | rates | allocation | calls | Hajek error | error / se | raw error "
        "| CS holds at the call | at every look | adjusted error | adjusted / se "
        "| RMSE Hajek | RMSE adjusted |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for reward, lift, strategy in [(key[1], key[2], key[3]) for key, *_ in specs]:
        base_users = rows[("lift", reward, lift, FIFTY_FIFTY)].median_users()
        row = rows[("lift", reward, lift, strategy)]
        users = row.median_users()
        wrong, wrong_se = row.rate(wrong=True)
        decided, _ = row.rate(wrong=False)
        regret, regret_se = row.regret()
        ratio = f"{users / base_users:.2f}x" if math.isfinite(users) else "-"
        lines.append(
            f"| {reward} | {lift} | {label(*strategy)} | {fmt_users(users)} | {ratio} "
            f"| {wrong:.3f} ± {wrong_se:.3f} | {decided:.2f} "
            f"| {regret:,.1f} ± {regret_se:,.1f} |"
        )
        calls = row.at_call()
        adjusted = [o for o in calls if o.adjusted_error is not None]
        estimates.append(
            f"| {reward} | {lift} | {label(*strategy)} | {len(calls)} "
            f"| {mean_se([o.error for o in calls])} "
            f"| {mean_se([o.error / o.se for o in calls if o.se])} "
            f"| {mean_se([o.raw_error for o in calls if o.raw_error is not None])} "
            f"| {share([o.covered_at_end for o in calls])} "
            f"| {share([o.covered_throughout for o in calls])} "
            f"| {mean_se([o.adjusted_error for o in adjusted])} "
            f"| {mean_se([o.adjusted_error / o.se for o in adjusted if o.se])} "
            f"| {rmse([o.error for o in calls])} "
            f"| {rmse([o.adjusted_error for o in adjusted])} |"
        )
    return lines + estimates


def regret_table(runs: int, workers: int, rewards: tuple[str, ...] = REWARDS) -> list[str]:
    """Binary rewards only: the regret benchmark's instances are rates."""
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


def tradeoff_table(runs: int, workers: int, rewards: tuple[str, ...] = REWARDS) -> list[str]:
    return lift_table(runs, workers, rewards, sweep=True)


TABLES = {"lift": lift_table, "aa": aa_table, "tradeoff": tradeoff_table, "regret": regret_table}


def main() -> None:
    global ADJUST_LOOKS, HORIZON
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--only", choices=tuple(TABLES), action="append")
    parser.add_argument(
        "--reward", choices=REWARDS, action="append", help="the rows of this kind only (not regret)"
    )
    parser.add_argument(
        "--adjust-looks",
        type=int,
        help="the looks the adjusted estimate assumes (default: the true count)",
    )
    parser.add_argument(
        "--horizon",
        type=int,
        default=HORIZON,
        help=f"users per run (default {HORIZON:,}); runs are the same up to the shorter one",
    )
    args = parser.parse_args()
    ADJUST_LOOKS = args.adjust_looks
    HORIZON = args.horizon
    started = time.perf_counter()
    print(
        f"decisions: {args.runs} runs per row, batches of {BATCH:,} users up to {HORIZON:,}, "
        "the decision after every batch; default allocation "
        + ", ".join(f"{label(*default_allocation(r))} ({r})" for r in REWARDS)
        + "; "
        f"{args.workers} workers, Python {platform.python_version()}",
        flush=True,
    )
    for name in args.only or TABLES:
        part_started = time.perf_counter()
        rewards = tuple(args.reward or REWARDS)
        print("\n" + "\n".join(TABLES[name](args.runs, args.workers, rewards)), flush=True)
        print(f"({time.perf_counter() - part_started:,.0f} s)", flush=True)
    print(f"\ntotal {time.perf_counter() - started:,.0f} s")


if __name__ == "__main__":
    main()
