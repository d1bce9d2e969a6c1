"""Lambda cold start: each handler's import in fresh processes, against the original's.

    python bench/coldstart.py [--rounds 15] [--top 10] [--base REV]

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

With `--base REV` (a commit of this repository), that commit's handlers are imported the
same way, in the same rounds, as rows of their own (`<handler> @REV`, the import only).
The CPU columns (the import's own process time) are the steadier figure on a shared
machine: another process on the core stretches wall time, not CPU time.
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

from trees import checkout  # bench/trees.py: the script's own folder is on the path

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
start, cpu = time.perf_counter(), time.process_time()
module = importlib.import_module(sys.argv[1])
imported, imported_cpu = time.perf_counter() - start, time.process_time() - cpu
ports = getattr(module, "ports", None) if sys.argv[3] == "all" else None
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
print(json.dumps({"import": imported, "import_cpu": imported_cpu, "primed": primed,
                  "remade": remade, "heavy": heavy}))
"""


def stage(folder: Path, tree: Path = ROOT) -> None:
    """`tree`'s packages without bytecode, and the baseline script, in `folder`."""
    for package in PACKAGES:
        shutil.copytree(
            tree / package, folder / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    (folder / "sample_invoke.py").write_text(SAMPLE)


def environment(folder: Path, route: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTHON"))}
    env.update(ENVIRONMENT, PYTHONPATH=str(folder), PYTHONDONTWRITEBYTECODE="1")
    if route:
        env["ROUTE"] = route
    return env


def run(folder: Path, row: str, hooks: bool = True) -> dict:
    """One fresh process importing `row`'s module from `folder`; with `hooks`, it also makes
    the clients and runs the SnapStart hooks (an older tree may have neither)."""
    module, route = ROWS[row]
    out = subprocess.run(
        [sys.executable, "-c", CHILD, module, str(folder), "all" if hooks else "import"],
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
    parser.add_argument("--base", help="a commit whose handlers to import beside these")
    args = parser.parse_args()
    handlers = [row for row in ROWS if row != "baseline"]
    with tempfile.TemporaryDirectory() as name, checkout(args.base) as base_tree:
        folder = Path(name) / "head"
        stage(folder)
        trees = [(folder, "", True)]
        if base_tree is not None:
            stage(Path(name) / "base", base_tree)
            trees.append((Path(name) / "base", f" @{args.base}", False))
        runs: dict[str, list[dict]] = {}
        for _ in range(args.rounds):
            runs.setdefault("baseline", []).append(run(folder, "baseline"))
            for tree, suffix, hooks in trees:
                for row in handlers:
                    runs.setdefault(row + suffix, []).append(run(tree, row, hooks))
        top = importtime_top(folder, args.top)
    print(
        f"# {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} cores; median of {args.rounds} fresh processes per row, "
        "rows interleaved; project files compiled from source in each"
    )
    print(
        "| handler | import ms | vs baseline | import CPU ms | vs baseline (CPU) "
        "| + clients ms | vs baseline | after restore ms | numpy/scipy |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    base = statistics.median(r["primed"] for r in runs["baseline"])
    base_cpu = statistics.median(r["import_cpu"] for r in runs["baseline"])
    for row, results in runs.items():
        imported = statistics.median(r["import"] for r in results)
        cpu = statistics.median(r["import_cpu"] for r in results)
        primed = statistics.median(r["primed"] for r in results)
        remade = statistics.median(r["remade"] for r in results)
        heavy = sorted({m for r in results for m in r["heavy"]})
        clients = "- | -" if "@" in row else f"{primed * 1000:.0f} | {primed / base:.2f}x"
        restored = "-" if "@" in row else f"{remade * 1000:.0f}"
        print(
            f"| {row} | {imported * 1000:.0f} | {imported / base:.2f}x "
            f"| {cpu * 1000:.0f} | {cpu / base_cpu:.2f}x "
            f"| {clients} "
            f"| {restored} | {', '.join(heavy) or 'none'} |"
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
