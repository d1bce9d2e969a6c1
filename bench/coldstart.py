"""Lambda cold start: each handler's import in fresh processes, against the original's.

    python bench/coldstart.py [--rounds 15] [--top 10]

Each round starts one fresh interpreter per row, in turn, so every row sees the same
machine load; the table gives each row's median over the rounds and its ratio to the
baseline's median. The project's own files (`abtest`, `bandit`, `lambdas`) are copied to
a temporary folder and imported from there with bytecode writing off, so they are
compiled from source in every process, as in a deployed function (the code asset has no
`__pycache__`); installed packages keep their bytecode, as a layer and the runtime do.

  baseline  what the original sample's invocation handler did at import: `import boto3`,
            seven clients (dynamodb twice, firehose, cloudwatch, sagemaker-runtime,
            sagemaker, lambda) and two dynamodb resources. (It also patched X-Ray, left
            out here: not installed, and it only makes the baseline slower.)
  <handler> `import lambdas.api` with ROUTE set (invocation, conversion, stats), or
            `import lambdas.metrics` / `lambdas.register`, in the environment the stack
            sets; "+ clients" adds making every client the function may use (what a cold
            start without SnapStart pays by its first calls, and what the before-snapshot
            hook does); "after restore" is making them again after the after-restore hook
            dropped them (what a restored environment's first calls pay).

No AWS call is made: clients are made, never called. Then one `-X importtime` run of
the invocation handler gives the ten modules with the most time of their own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("abtest", "bandit", "lambdas")

SAMPLE = """\
import boto3

dynamodb_resources = [boto3.resource("dynamodb"), boto3.resource("dynamodb")]
clients = [
    boto3.client(service)
    for service in (
        "dynamodb", "dynamodb", "firehose", "cloudwatch", "sagemaker-runtime", "sagemaker", "lambda"
    )
]
"""

# The variables the stack sets (names only matter), and a region and credentials for boto3.
ENVIRONMENT = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "ASSIGNMENT_TABLE": "abtest-assignment-bench",
    "METRICS_TABLE": "abtest-metrics-bench",
    "DELIVERY_STREAM_NAME": "abtest-events-bench",
    "DEAD_LETTER_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/abtest-dlq",
    "ENDPOINT_PREFIX": "abtest-bench-",
    "REJECTED_PREFIX": "rejected/",
    "POWERTOOLS_SERVICE_NAME": "abtest",
    "POWERTOOLS_METRICS_NAMESPACE": "abtest",
    "PYDANTIC_DISABLE_PLUGINS": "__all__",  # as infra/functions.py sets it
}

ROWS = {
    "baseline": ("sample_invoke", None),
    "invocation": ("lambdas.api", "invocation"),
    "conversion": ("lambdas.api", "conversion"),
    "stats": ("lambdas.api", "stats"),
    "metrics": ("lambdas.metrics", None),
    "register": ("lambdas.register", None),
}

CHILD = """\
import importlib, json, sys, time
start = time.perf_counter()
module = importlib.import_module(sys.argv[1])
imported = time.perf_counter() - start
ports = getattr(module, "ports", None)
remade = 0.0
if ports is not None:
    ports.before_snapshot()
primed = time.perf_counter() - start
if ports is not None:  # what the first calls after a SnapStart restore pay
    ports.after_restore()
    restored = time.perf_counter()
    ports.before_snapshot()
    remade = time.perf_counter() - restored
for name in ("abtest", "bandit", "lambdas", "sample_invoke"):
    if name in sys.modules:
        assert sys.modules[name].__file__.startswith(sys.argv[2]), sys.modules[name].__file__
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"numpy", "scipy"})
print(json.dumps({"import": imported, "primed": primed, "remade": remade, "heavy": heavy}))
"""


def stage(folder: Path) -> None:
    """The project's packages without bytecode, and the baseline script, in `folder`."""
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, folder / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    (folder / "sample_invoke.py").write_text(SAMPLE)


def environment(folder: Path, route: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTHON"))}
    env.update(ENVIRONMENT, PYTHONPATH=str(folder), PYTHONDONTWRITEBYTECODE="1")
    if route:
        env["ROUTE"] = route
    return env


def run(folder: Path, row: str) -> dict:
    module, route = ROWS[row]
    out = subprocess.run(
        [sys.executable, "-c", CHILD, module, str(folder)],
        cwd=folder,
        env=environment(folder, route),
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def importtime_top(folder: Path, top: int) -> list[tuple[int, int, str]]:
    """(self us, cumulative us, module) of the invocation handler's costliest imports."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import lambdas.api"],
        cwd=folder,
        env=environment(folder, "invocation"),
        check=True,
        capture_output=True,
        text=True,
    )
    rows = []
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, total, name = line.removeprefix("import time:").split("|")
        rows.append((int(own), int(total), name.strip()))
    return sorted(rows, reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        stage(folder)
        runs: dict[str, list[dict]] = {row: [] for row in ROWS}
        for _ in range(args.rounds):
            for row in ROWS:
                runs[row].append(run(folder, row))
        top = importtime_top(folder, args.top)
    print(
        f"# {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} cores; median of {args.rounds} fresh processes per row, "
        "rows interleaved; project files compiled from source in each"
    )
    print(
        "| handler | import ms | vs baseline | + clients ms | vs baseline "
        "| after restore ms | numpy/scipy |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    base = statistics.median(r["primed"] for r in runs["baseline"])
    for row, results in runs.items():
        imported = statistics.median(r["import"] for r in results)
        primed = statistics.median(r["primed"] for r in results)
        remade = statistics.median(r["remade"] for r in results)
        heavy = sorted({m for r in results for m in r["heavy"]})
        print(
            f"| {row} | {imported * 1000:.0f} | {imported / base:.2f}x "
            f"| {primed * 1000:.0f} | {primed / base:.2f}x "
            f"| {remade * 1000:.0f} | {', '.join(heavy) or 'none'} |"
        )
    print()
    print(f"`-X importtime`, invocation handler, top {args.top} by own time:")
    print()
    print("| module | own ms | with its imports ms |")
    print("|---|---:|---:|")
    for own, total, module in top:
        print(f"| {module} | {own / 1000:.1f} | {total / 1000:.1f} |")


if __name__ == "__main__":
    main()
