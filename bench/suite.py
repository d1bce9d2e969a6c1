"""`make test` of two commits side by side, each from a fresh clone: wall time, CPU time, tests.

    python bench/suite.py [--base 984cfa0] [--head HEAD] [--rounds 2]

Each round clones both commits into new temporary folders and runs `make test` in each, in
turn (the order alternates between rounds), so both see the same machine load; pip's and
npm's caches stay warm, as on a developer's machine after the first clone. A row gives the
whole `make test` (venv, npm, Chromium check, ruff, pytest), pytest's own time from its
summary line, the CPU seconds of every process the run started (which other work on the
machine hardly moves, unlike wall time) and the load average around it; the table ends
with head's median over base's, per column. Nothing is kept: the clones are deleted.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# pytest's last line: "979 passed, 2 warnings in 88.51s (0:01:28)".
SUMMARY = re.compile(r"^=+ (?P<counts>.*?) in (?P<seconds>[\d.]+)s")


@dataclass
class Run:
    label: str
    commit: str
    wall: float
    cpu: float
    pytest: float
    tests: int
    load: tuple[float, float]


def resolve(commit: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", commit],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def make_test(label: str, commit: str, workdir: Path) -> Run:
    """Clone `commit` into a fresh folder and time `make test` there."""
    clone = workdir / f"{label}-{commit}"
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "--quiet", commit], check=True)
    load_before = os.getloadavg()[0]
    cpu_before, start = children_cpu(), time.perf_counter()
    result = subprocess.run(["make", "test"], cwd=clone, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - start, children_cpu() - cpu_before
    load_after = os.getloadavg()[0]
    shutil.rmtree(clone, ignore_errors=True)
    lines = [m for line in result.stdout.splitlines() if (m := SUMMARY.match(line))]
    if not lines:
        sys.exit(f"make test failed at {label} {commit}:\n{result.stdout[-3000:]}{result.stderr}")
    if result.returncode != 0:  # a failing test still gives a time; say which, and go on
        failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
        print(f"  {label} {commit}: {', '.join(failed)}", flush=True)
    counts = dict((name, int(n)) for n, name in re.findall(r"(\d+) (\w+)", lines[-1]["counts"]))
    return Run(
        label,
        commit,
        wall,
        cpu,
        float(lines[-1]["seconds"]),
        counts.get("passed", 0),
        (load_before, load_after),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="984cfa0", help="the commit to compare against")
    parser.add_argument("--head", default="HEAD")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    commits = {"base": resolve(args.base), "head": resolve(args.head)}
    print(f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{'run':<14} {'make test s':>11} {'pytest s':>9} {'CPU s':>7} {'tests':>6} {'load':>11}")
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="abtest-suite-") as tmp:
        for round_ in range(args.rounds):
            order = ("head", "base") if round_ % 2 == 0 else ("base", "head")
            for label in order:
                run = make_test(label, commits[label], Path(tmp))
                runs.append(run)
                print(
                    f"{label + ' ' + run.commit:<14} {run.wall:>11.1f} {run.pytest:>9.1f}"
                    f" {run.cpu:>7.1f} {run.tests:>6} {run.load[0]:>5.1f}-{run.load[1]:<5.1f}",
                    flush=True,
                )

    def median(label: str, field: str) -> float:
        return statistics.median(getattr(r, field) for r in runs if r.label == label)

    ratios = {
        field: median("head", field) / median("base", field) for field in ("wall", "pytest", "cpu")
    }
    per_test = (median("head", "pytest") / median("head", "tests")) / (
        median("base", "pytest") / median("base", "tests")
    )
    print(
        f"head/base medians: make test {ratios['wall']:.2f}x, pytest {ratios['pytest']:.2f}x,"
        f" CPU {ratios['cpu']:.2f}x; pytest seconds per test {per_test:.2f}x"
    )


if __name__ == "__main__":
    main()
