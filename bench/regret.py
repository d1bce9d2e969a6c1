"""Regret of every strategy on three Bernoulli instances, and the cost of one choose().

    python bench/regret.py                      # 20 seeds, T = 100,000 (make bench)
    python bench/regret.py --seeds 4 --horizon 20000   # quick look

Mean cumulative (expected) regret over seeds, with instant feedback and with metrics
refreshed every B users, as a ratio to the Lai–Robbins bound. Runs go through the product's
strategies (bandit.simulate.run) on a process pool, without the exploration floor.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import statistics
import time
import timeit
from multiprocessing import Pool

from bandit import STRATEGY_NAMES, VariantMetrics, get_strategy, strategy_parameters
from bandit.simulate import BernoulliBandit, run

INSTANCES = {
    "a": BernoulliBandit((0.05, 0.06)),
    "b": BernoulliBandit((0.10, 0.12, 0.15)),
    "c": BernoulliBandit(tuple(round(0.01 * i, 2) for i in range(1, 11))),
}
LABELS = {"a": "a: 0.05 / 0.06", "b": "b: 0.10 / 0.12 / 0.15", "c": "c: 0.01, 0.02 .. 0.10"}


def unfloored(name: str):
    """Strategy `name` with its default parameters but no exploration floor: each rule as
    its paper states it (what a floor costs is in bench/decisions.py)."""
    declared = {p.name for p in strategy_parameters(name)}
    return get_strategy(name, {"floor": 0.0} if "floor" in declared else {})


def one_run(task: tuple[str, str, int, int, int]) -> tuple[str, str, int, int, float]:
    instance, strategy, batch_size, seed, horizon = task
    result = run(
        unfloored(strategy),
        INSTANCES[instance],
        horizon,
        seed=seed,
        batch_size=batch_size,
    )
    return instance, strategy, batch_size, seed, result.regret


def regret_table(seeds: int, horizon: int, batch: int, workers: int) -> list[str]:
    tasks = [
        (instance, strategy, batch_size, seed, horizon)
        for batch_size in (1, batch)  # the slow instant-feedback runs first
        for instance in ("c", "b", "a")
        for strategy in STRATEGY_NAMES
        for seed in range(seeds)
    ]
    results: dict[tuple[str, str, int], list[float]] = {}
    with Pool(workers) as pool:
        for instance, strategy, batch_size, _, regret in pool.imap_unordered(one_run, tasks):
            results.setdefault((instance, strategy, batch_size), []).append(regret)
    lines = [
        "| instance | strategy | feedback | regret (mean ± se) | regret / Lai–Robbins (± se) "
        "| batched / instant |",
        "|---|---|---|---:|---:|---:|",
    ]
    for instance, bandit in INSTANCES.items():
        bound = bandit.lai_robbins_bound(horizon)
        for strategy in STRATEGY_NAMES:
            instant_mean = statistics.fmean(results[(instance, strategy, 1)])
            for batch_size in (1, batch):
                values = results[(instance, strategy, batch_size)]
                mean = statistics.fmean(values)
                se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0
                feedback = "instant" if batch_size == 1 else f"B={batch_size:,}"
                versus = "" if batch_size == 1 else f"{mean / instant_mean:.2f}x"
                lines.append(
                    f"| {LABELS[instance]} | {strategy} | {feedback} "
                    f"| {mean:,.1f} ± {se:,.1f} | {mean / bound:.3f} ± {se / bound:.3f} "
                    f"| {versus} |"
                )
        lines.append(f"| {instance}: Lai–Robbins bound at T={horizon:,} | | | {bound:,.1f} | | |")
    return lines


def choose_timing() -> list[str]:
    """Seconds per choose() on unchanged metrics (the cached path every request takes),
    against random.choices over the same weights, timed in the same process."""
    lines = [
        "| variants | strategy | choose() | random.choices baseline | ratio |",
        "|---:|---|---:|---:|---:|",
    ]
    number, repeat = 100_000, 5
    for k in (2, 10):
        metrics = tuple(
            VariantMetrics(f"variant{i}", 1.0, 1000 + 10 * i, 50 + i, 50.0 + i) for i in range(k)
        )
        rng = random.Random(0)
        for name in STRATEGY_NAMES:
            strategy = get_strategy(name)
            names = list(strategy.allocation(metrics))
            weights = list(strategy.allocation(metrics).values())
            scope = {
                "choose": strategy.choose,
                "choices": rng.choices,
                "metrics": metrics,
                "rng": rng,
                "names": names,
                "weights": weights,
            }
            ours = min(
                timeit.repeat("choose(metrics, rng)", globals=scope, number=number, repeat=repeat)
            )
            base = min(
                timeit.repeat(
                    "choices(names, weights)", globals=scope, number=number, repeat=repeat
                )
            )
            lines.append(
                f"| {k} | {name} | {ours / number * 1e6:.2f} us "
                f"| {base / number * 1e6:.2f} us | {ours / base:.2f} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--horizon", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args()
    started = time.perf_counter()
    print(
        f"regret: {args.seeds} seeds, T={args.horizon:,}, batched B={args.batch:,}, "
        f"default strategy parameters but floor 0, {args.workers} workers, "
        f"Python {platform.python_version()}"
    )
    print("\n".join(regret_table(args.seeds, args.horizon, args.batch, args.workers)))
    print()
    print("\n".join(choose_timing()))
    print(f"\ntotal {time.perf_counter() - started:,.0f} s")


if __name__ == "__main__":
    main()
