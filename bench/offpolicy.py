"""Off-policy evaluation: interval coverage on simulated logs, and reading a big log.

    python bench/offpolicy.py                        # 500 runs per row, 1,000,000-event log
    python bench/offpolicy.py --runs 50 --events 100000   # quick look
    python bench/offpolicy.py --skip-read --rows "floor 0.05, binary"   # some rows only

Coverage: logs of `--assignments` users drawn with bandit's own allocation (refreshed
every `--batch` users, as aggregation does), binary or continuous rewards with known
means; every estimator's 95 % interval for every target (each variant alone, a uniform
split) is checked against the true value. Reading: `abtest evaluate` on a log of
`--events` events, from local files and from S3 under moto, each in a fresh process that
samples its own resident memory.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from bandit import VariantMetrics, get_strategy
from bandit.offpolicy import (
    ESTIMATORS,
    UNIFORM,
    Log,
    Terms,
    evaluate,
    skew_interval,
    student_interval,
)

MEANS = (0.10, 0.12, 0.15)
NAMES = ("v0", "v1", "v2")
# issue 9 adds an exploration floor to the strategies; until then the bench mixes it in
# (each variant gets at least FLOOR, the rest follows the strategy), as the floor will.
FLOOR = 0.05
LOGGING = {
    "uniform": ("WeightedSampling", {}, 0.0),
    "Thompson + floor 0.05": ("ThompsonSampling", {}, FLOOR),
    "TopTwoThompson + floor 0.05": ("TopTwoThompson", {}, FLOOR),
    # Without the floor, for comparison: the propensities of a losing variant collapse.
    "TopTwoThompson, no floor": ("TopTwoThompson", {}, 0.0),
    "Thompson, no floor": ("ThompsonSampling", {}, 0.0),
}
REWARDS = ("binary", "continuous")
TARGETS = (*NAMES, UNIFORM)


def draw_rewards(rng: np.random.Generator, kind: str, means: np.ndarray) -> np.ndarray:
    """Binary: Bernoulli(mean). Continuous: Beta(2 mean, 2 (1 - mean)), a bounded reward
    such as a dwell fraction (the Beta-Bernoulli strategies take rewards in [0, 1])."""
    if kind == "binary":
        return (rng.random(means.size) < means).astype(np.float64)
    return rng.beta(2.0 * means, 2.0 * (1.0 - means))


def simulate_log(logging: str, reward: str, users: int, batch: int, seed: int) -> Log:
    name, params, floor = LOGGING[logging]
    strategy = get_strategy(name, params)
    rng = np.random.default_rng(seed)
    k = len(NAMES)
    invocations, sums = np.zeros(k, dtype=np.int64), np.zeros(k)
    actions, rewards, propensities = [], [], []
    for start in range(0, users, batch):
        metrics = tuple(
            VariantMetrics(NAMES[j], 1.0, int(invocations[j]), int(sums[j]), float(sums[j]))
            for j in range(k)
        )
        allocation = strategy.allocation(metrics)
        p = np.array([allocation[v] for v in NAMES])
        p = floor + (1.0 - k * floor) * p
        size = min(batch, users - start)
        a = rng.choice(k, size=size, p=p)
        r = draw_rewards(rng, reward, np.asarray(MEANS)[a])
        actions.append(a)
        rewards.append(r)
        propensities.append(p[a])
        invocations += np.bincount(a, minlength=k)
        sums += np.bincount(a, weights=r, minlength=k)
    a = np.concatenate(actions)
    return Log(NAMES, a, np.concatenate(rewards), np.concatenate(propensities))


def one_run(task: tuple[str, str, int, int, int]) -> list[tuple]:
    logging, reward, users, batch, seed = task
    log = simulate_log(logging, reward, users, batch, seed)
    rows = []
    for target in TARGETS:
        truth = float(np.mean(MEANS)) if target == UNIFORM else MEANS[NAMES.index(target)]
        plain: list[tuple[float, float]] = []  # the t interval on the same terms

        def default(
            value: float, terms: Terms, level: float, plain: list = plain
        ) -> tuple[float, float, float]:
            plain.append(student_interval(value, terms, level)[1:])
            return skew_interval(value, terms, level)

        for e, (low, high) in zip(evaluate(log, target, interval=default), plain, strict=True):
            rows.append(
                (logging, reward, target, e.estimator, e.value - truth, e.low <= truth <= e.high,
                 bool(e.warnings), (e.high - e.low) / (high - low) if high > low else 1.0,
                 low <= truth <= high)
            )  # fmt: skip
    return rows


def coverage_table(
    runs: int, users: int, batch: int, workers: int, only: list[str] | None = None, seed: int = 0
) -> list[str]:
    """The table; `only` keeps the rows whose "logging, reward" contains one of its strings."""
    chosen = [
        (logging, reward)
        for logging in LOGGING
        for reward in REWARDS
        if not only or any(part in f"{logging}, {reward}" for part in only)
    ]
    if not chosen:
        raise SystemExit(f"--rows {only} matches none of the rows")
    tasks = [
        (logging, reward, users, batch, first)
        for logging, reward in chosen
        for first in range(seed, seed + runs)
    ]
    with Pool(workers) as pool:
        results = [row for rows in pool.imap_unordered(one_run, tasks, 8) for row in rows]
    cells: dict[tuple, list] = {}
    widths: dict[tuple, list] = {}
    plain: dict[tuple, list] = {}
    for logging, reward, target, estimator, error, covered, warned, width, t_covered in results:
        cells.setdefault((logging, reward, target, estimator), []).append((error, covered, warned))
        widths.setdefault((logging, reward), []).append(width)
        plain.setdefault((logging, reward, target, estimator), []).append(t_covered)
    lines = [
        f"{runs} runs per row (seeds {seed}-{seed + runs - 1}), {users:,} users per run, "
        f"allocation refreshed every {batch}; "
        f"means {MEANS}; targets: each variant alone and a uniform split.",
        "Coverage of the 95 % interval: over all four targets, then the lowest of the four "
        "(and its target). Spread: the standard deviation of the estimates over the runs, "
        "DR's over IPS's, the highest over the targets. "
        "Warned: share of IPS estimates with a warning. "
        "Width: the interval's mean width over the t interval's on the same terms. "
        "t: the t interval's (student_interval) coverage on the same runs, the lowest "
        "over the estimators of the coverage over all targets, then the lowest of all.",
        "",
        "| logging | reward | "
        + " | ".join(ESTIMATORS)
        + " | DR/IPS spread | warned | width | t |",
        "|---|---|" + "---:|" * (len(ESTIMATORS) + 4),
    ]
    for logging, reward in chosen:
        row = [logging, reward]
        for estimator in ESTIMATORS:
            worst = min(
                TARGETS,
                key=lambda t, e=estimator: np.mean([c for _, c, _ in cells[logging, reward, t, e]]),
            )
            rate = np.mean([c for _, c, _ in cells[logging, reward, worst, estimator]])
            pooled = np.mean(
                [c for t in TARGETS for _, c, _ in cells[logging, reward, t, estimator]]
            )
            row.append(f"{pooled:.3f}, {rate:.3f} ({worst})")
        ratio = max(
            np.std([x for x, _, _ in cells[logging, reward, t, "DR"]])
            / np.std([x for x, _, _ in cells[logging, reward, t, "IPS"]])
            for t in TARGETS
        )
        warned = np.mean([w for t in TARGETS for _, _, w in cells[logging, reward, t, "IPS"]])
        t_pooled = min(
            np.mean([c for t in TARGETS for c in plain[logging, reward, t, e]]) for e in ESTIMATORS
        )
        t_worst = min(np.mean(plain[logging, reward, t, e]) for t in TARGETS for e in ESTIMATORS)
        row += [
            f"{ratio:.2f}",
            f"{warned:.2f}",
            f"{np.mean(widths[logging, reward]):.3f}",
            f"{t_pooled:.3f}, {t_worst:.3f}",
        ]
        lines.append("| " + " | ".join(row) + " |")
    return lines


# -- reading a big log ------------------------------------------------------------------


def big_log(events: int, seed: int = 0) -> list[bytes]:
    """JSON lines of one endpoint: each user a new assignment (uniform over three
    variants), one in ten a repeat invocation, one in eight a conversion by inference_id."""
    from abtest.events import conversion_event, encode, invocation_event

    rng = random.Random(seed)
    lines: list[bytes] = []
    t = 1_780_000_000.0
    user = 0
    while len(lines) < events:
        user += 1
        t += 0.01
        variant = NAMES[rng.randrange(3)]
        common = {"endpoint_name": "bench", "variant_name": variant, "user_id": f"user-{user}"}
        for assignment in ("new", "existing") if rng.random() < 0.1 else ("new",):
            inference = f"{user}-{assignment}"
            lines.append(encode(invocation_event(
                now=t, inference_id=inference, strategy="ThompsonSampling",
                propensity=1 / 3, assignment=assignment, **common)))  # fmt: skip
        if rng.random() < 0.125:
            lines.append(encode(conversion_event(
                now=t + 1, inference_id=inference, strategy="ThompsonSampling", reward=1.0,
                assigned_at=t, propensity=1 / 3, late=False, **common)))  # fmt: skip
    return lines[:events]


MEASURE = r"""
import json, sys, threading, time
from pathlib import Path
source, folder, bucket = sys.argv[1], Path(sys.argv[2]), "bench-log"
from abtest.cli import main
import numpy, tqdm, abtest.usecases.evaluate, abtest.adapters.eventlog  # imported before "before"
if source == "s3":
    import boto3, moto, abtest.adapters.s3
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
def measure(args):
    before, peak, done = rss(), [0], threading.Event()
    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss()); time.sleep(0.02)
    sampler = threading.Thread(target=sample); sampler.start()
    start = time.perf_counter()
    code = main(args)
    elapsed = time.perf_counter() - start
    done.set(); sampler.join()
    print(json.dumps({"code": code, "seconds": elapsed, "before": before, "peak": peak[0]}),
          file=sys.stderr)
args = ["evaluate", "--endpoint", "bench", "--no-progress", "--out", str(folder / "out")]
if source == "local":
    measure([*args, "--data-dir", str(folder / "data")])
else:
    import boto3
    from moto import mock_aws
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=bucket)
        for path in sorted((folder / "gz").iterdir()):
            s3.put_object(Bucket=bucket, Key="events/" + path.name, Body=path.read_bytes())
        measure([*args, "--bucket", bucket, "--region", "us-east-1"])
"""


def read_table(sizes: list[int]) -> list[str]:
    lines = [
        "| source | events | seconds | events/s | RSS before | peak RSS | growth |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for events in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            lines_ = big_log(events)
            applied = folder / "data" / "events" / "applied"
            applied.mkdir(parents=True)
            (folder / "gz").mkdir()
            per_file = 100_000  # a Firehose object of ~15 MB, a sealed file of the same
            for n, start in enumerate(range(0, events, per_file)):
                body = b"".join(lines_[start : start + per_file])
                (applied / f"events-{n:04d}.jsonl").write_bytes(body)
                (folder / "gz" / f"{n:04d}.gz").write_bytes(gzip.compress(body, 6))
            del lines_
            for source in ("local", "s3"):
                result = subprocess.run(
                    [sys.executable, "-c", MEASURE, source, str(folder)],
                    capture_output=True,
                    text=True,
                    env=env,
                    check=True,
                )
                m = json.loads(result.stderr.strip().splitlines()[-1])
                assert m["code"] == 0, result.stderr
                mb = 1 << 20
                lines.append(
                    f"| {source} | {events:,} | {m['seconds']:.1f} | "
                    f"{events / m['seconds']:,.0f} | {m['before'] / mb:.0f} MB | "
                    f"{m['peak'] / mb:.0f} MB | {(m['peak'] - m['before']) / mb:.0f} MB |"
                )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--assignments", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="coverage: the first run's seed")
    parser.add_argument("--skip-read", action="store_true")
    parser.add_argument("--skip-coverage", action="store_true")
    parser.add_argument(
        "--rows",
        action="append",
        help='coverage: only the rows whose "logging, reward" contains this (repeatable), '
        'e.g. --rows "floor 0.05, binary"',
    )
    args = parser.parse_args()
    print(f"python {platform.python_version()}, {os.cpu_count()} cores")
    if not args.skip_coverage:
        start = time.perf_counter()
        print(
            "\n".join(
                coverage_table(
                    args.runs, args.assignments, args.batch, args.workers, args.rows, args.seed
                )
            )
        )
        print(f"({time.perf_counter() - start:.0f} s)\n")
    if not args.skip_read:
        sizes = sorted({args.events // 4, args.events})
        print("\n".join(read_table(sizes)))


if __name__ == "__main__":
    main()
