"""Aggregation throughput and peak memory: ours against a load-it-whole, per-line baseline.

    python bench/aggregate.py [--events 200000] [--repeat 3] [--rejected-mb 90] [--base REV]

One gzip JSON-lines object of `--events` events (invocations and conversions over
two variants) is aggregated, each run in a fresh subprocess so peak RSS is its own:
  sample    what the original sample's metrics handler does with an object: decompress
            it whole, `json.loads` every line into one list kept until the end, sort
            that list by endpoint and variant, count each group (its few store and
            metric writes per group left out): what "10x the original's" is against
  baseline  read and decompress the whole object, split it, `json.loads` each line,
            count per endpoint and variant in dicts as it goes; no store write at all
  abtest    `abtest.aggregation.aggregate` streaming the object through the S3
            adapter's line reader, with the SQLite store's transaction and its
            idempotency record included
Rows: the sample's handler and the baseline on events shaped as the original logged them
(20 predictions each, the original design's own figure: ~63k events/s), then abtest on its
own events, then each on the other's shape, so the two effects (smaller events, no
per-line parse) show apart, and abtest on its events with a request context on every
invocation (the optional last field, counted on the fast path too). The last row is abtest
on an object of `--rejected-mb` MB (uncompressed, gzip as Firehose delivers) of another
writer's events, every line rejected: read through the S3 adapter, its rejected lines sent
through the adapter's upload to a client that counts and drops what it is sent (a real
bucket holds them elsewhere), so the peak is aggregation's own.

With `--base REV` (a commit of this repository), that commit's own bench and code run
beside this checkout's, round by round: its baseline on the original's events and its
abtest on its own events, each object written by its own `write_object`, so the two
lines of the table measure one machine at one time. Every run imports the package before
its clock starts, so the figure is a delivered object's, not a cold process's; the
events per CPU-second column is the steadier one on a shared machine.
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import io
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from types import SimpleNamespace

from trees import checkout  # bench/trees.py: the script's own folder is on the path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ENDPOINT = "bench-endpoint"


def write_object(
    path: Path, events: int, predictions: int, seed: int = 1, *, context: bool = False
) -> None:
    """Events as the request path logs them; with `predictions`, each also carries that many;
    with `context`, each invocation carries a request context of four names."""
    from abtest.events import conversion_event, encode, invocation_event

    rng = random.Random(seed)
    with gzip.open(path, "wb", compresslevel=6) as out:
        for n in range(events):
            fields = {
                "now": 1_795_000_000 + n / 100,
                "endpoint_name": ENDPOINT,
                "variant_name": "Champion1" if rng.random() < 0.5 else "Challenger1",
                "user_id": f"user-{rng.randrange(10**9)}",
                "inference_id": f"{rng.getrandbits(128):032x}",
                "strategy": "ThompsonSampling",
            }
            if n % 5 == 4:
                event = conversion_event(
                    **fields, reward=1.0, assigned_at=fields["now"] - 60, propensity=0.5, late=False
                )
            else:
                event = invocation_event(
                    **fields,
                    propensity=round(rng.random(), 6),
                    assignment="new",
                    latency_ms=round(rng.lognormvariate(3.0, 0.8), 1),
                    outcome="error" if rng.random() < 0.01 else "ok",
                )
                if context:
                    event["context"] = {
                        "country": rng.choice(["fr", "de", "us", "jp"]),
                        "age": rng.randrange(18, 90),
                        "returning": rng.random() < 0.3,
                        "basket": round(rng.lognormvariate(3.0, 1.0), 2),
                    }
            if predictions:
                event["predictions"] = [round(rng.random(), 6) for _ in range(predictions)]
            out.write(encode(event))


def write_foreign(path: Path, megabytes: int, seed: int = 2) -> int:
    """Page-view events of another application, one JSON object a line; how many lines."""
    rng = random.Random(seed)
    lines = written = 0
    with gzip.open(path, "wb", compresslevel=6) as out:
        while written < megabytes * 1_000_000:
            line = json.dumps(
                {
                    "event": "page_view",
                    "visitor": f"v-{rng.randrange(10**9)}",
                    "url": f"https://shop.example/item/{rng.getrandbits(64):x}",
                    "at": 1_795_000_000 + lines / 100,
                    "agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101",
                }
            ).encode()
            out.write(line + b"\n")
            written += len(line) + 1
            lines += 1
    return lines


def baseline(path: Path) -> int:
    body = gzip.decompress(path.read_bytes()).decode()
    counts: dict = defaultdict(lambda: defaultdict(lambda: [0, 0, 0.0]))
    events = 0
    for line in body.split("\n"):
        if not line:
            continue
        event = json.loads(line)
        row = counts[event["endpoint_name"]][event["variant_name"]]
        if event["type"] == "invocation":
            row[0] += 1
        else:
            row[1] += 1
            row[2] += event.get("reward", 1.0)
        events += 1
    return events


def sample(path: Path) -> int:
    """The original's handler: every event parsed and held, then sorted and grouped."""
    with gzip.open(path, "rb") as stream:
        body = io.BytesIO(stream.read())
    events = [json.loads(line) for line in iter(body.readline, b"")]
    by_variant = itemgetter("endpoint_name", "variant_name")
    counts = {}
    for key, group in groupby(sorted(events, key=by_variant), key=by_variant):
        row = counts[key] = [0, 0, 0.0]
        for event in group:
            if event["type"] == "invocation":
                row[0] += 1
            elif event["type"] == "conversion":
                row[1] += 1
                row[2] += event["reward"]
            else:
                raise ValueError(f"unsupported type {event['type']}")
    assert sum(row[0] + row[1] for row in counts.values()) == len(events)
    return len(events)


def ours(path: Path) -> int:
    from abtest.adapters.s3 import iter_blocks
    from abtest.adapters.sqlite import SqliteStore
    from abtest.aggregation import aggregate
    from abtest.records import EndpointConfig, VariantConfig

    class FileArchive:
        def read_blocks(self, key: str):
            with open(path, "rb") as stream:
                yield from iter_blocks(stream)

        @contextmanager
        def open_rejected(self, key: str):
            def unexpected(line) -> None:
                raise AssertionError(f"unexpected rejected line: {line}")

            yield SimpleNamespace(write=unexpected)

    with tempfile.TemporaryDirectory() as folder:
        store = SqliteStore(Path(folder) / "abtest.sqlite3")
        variants = (VariantConfig("Champion1"), VariantConfig("Challenger1"))
        store.register_endpoint(EndpointConfig(ENDPOINT, "UCB1", {}, 0, variants), 0.0)
        result = aggregate(store, FileArchive(), path.name, time.time())
        total = sum(v.counts.invocation_count for v in store.get_endpoint(ENDPOINT).variants)
        assert result.applied and total == sum(
            c.invocation_count for c in result.counts[ENDPOINT].values()
        )
        store.close()
        return result.events


def rejected_whole(path: Path) -> int:
    from abtest.adapters.s3 import S3EventArchive
    from abtest.adapters.sqlite import SqliteStore
    from abtest.aggregation import aggregate

    class DiscardingS3:
        """The archive's S3 client: gets the local object; counts, and drops, what it is sent."""

        sent = 0

        def get_object(self, **_: object) -> dict:
            return {"Body": open(path, "rb")}

        def put_object(self, Body: bytes, **_: object) -> None:
            self.sent += len(Body)

        def create_multipart_upload(self, **_: object) -> dict:
            return {"UploadId": "bench"}

        def upload_part(self, Body: bytes, **_: object) -> dict:
            self.sent += len(Body)
            return {"ETag": "bench"}

        def complete_multipart_upload(self, **_: object) -> None:
            pass

    client = DiscardingS3()
    with tempfile.TemporaryDirectory() as folder:
        store = SqliteStore(Path(folder) / "abtest.sqlite3")
        result = aggregate(store, S3EventArchive("bench", client=client), path.name, time.time())
        store.close()
    assert result.applied and result.events == 0 and client.sent > path.stat().st_size
    return int(path.name.split("-")[1])  # the line count, in the object's name


# What every run imports before its clock starts (modules of every commit since the
# bench's first, so `--base` can load them from an older tree too).
PRELOADED = ("abtest.aggregation", "abtest.adapters.s3", "abtest.adapters.sqlite", "abtest.records")


def child(which: str, path: Path, tree: Path | None) -> None:
    """Runs in its own process: time one aggregation, report events, seconds, peak RSS.
    With `tree`, that checkout's own bench functions and package run instead of these."""
    bench = sys.modules[__name__]
    if tree is not None:
        sys.path[:0] = [str(tree), str(tree / "bench")]
        bench = importlib.import_module("aggregate")
    for module in PRELOADED:
        importlib.import_module(module)
    runs = {"sample": sample, "baseline": bench.baseline, "abtest": bench.ours}
    run = {**runs, "rejected": rejected_whole}[which]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start, cpu = time.perf_counter(), time.process_time()
    events = run(path)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "events": events,
                "seconds": seconds,
                "cpu": cpu,
                "peak_kib": peak,
                "start_kib": before,
            }
        )
    )


def measure(which: str, path: Path, tree: Path | None = None) -> dict:
    command = [sys.executable, __file__, "--child", which, str(path)]
    out = subprocess.run(
        command + (["--tree", str(tree)] if tree else []),
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(tree or ROOT)},
    )
    return json.loads(out.stdout)


# The objects the rows read: (predictions per event, a context per invocation).
OBJECTS = {"original": (20, False), "abtest": (0, False), "context": (0, True)}


def write_in(tree: Path | None, path: Path, events: int, kind: str) -> None:
    """`write_object` of `tree`'s own bench (this one's without), in a process of its own
    (an older bench writes no context)."""
    predictions, context = OBJECTS[kind]
    if tree is None:
        write_object(path, events, predictions, context=context)
        return
    assert not context, "an older bench writes no context"
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "sys.path[:0] = [sys.argv[1], sys.argv[1] + '/bench']\n"
        "import aggregate\n"
        "aggregate.write_object(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))\n"
    )
    command = [sys.executable, "-c", script, str(tree), str(path), str(events), str(predictions)]
    subprocess.run(command, check=True, env={**os.environ, "PYTHONPATH": str(tree)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rejected-mb", type=int, default=90)
    parser.add_argument("--base", help="a commit to measure beside this checkout")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--tree", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), args.tree)
        return
    print(
        f"# {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} cores; {args.events:,} events; best of {args.repeat} runs, "
        "each in a fresh process" + (f", rounds alternating with {args.base}" if args.base else "")
    )
    print(
        "| code | aggregator | events | object (gzip MB) | events/s | events/CPU-s | peak MiB "
        "| vs the baseline (CPU) | vs the sample's (CPU) |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    here = "this checkout"
    rows = [
        (here, "sample", "original", "as the original logged them (20 predictions each)"),
        (here, "baseline", "original", "as the original logged them (20 predictions each)"),
        (here, "abtest", "abtest", "as abtest logs them"),
        (here, "baseline", "abtest", "as abtest logs them"),
        (here, "abtest", "context", "as abtest logs them, each invocation with a context"),
        (here, "abtest", "original", "with 20 predictions each (the json.loads path)"),
    ]
    if args.base:
        rows[2:2] = [
            (
                args.base,
                "baseline",
                "original",
                "as the original logged them (20 predictions each)",
            ),
            (args.base, "abtest", "abtest", "as abtest logs them"),
        ]
    with tempfile.TemporaryDirectory() as folder, checkout(args.base) as base:
        trees = {here: None, args.base: base}
        paths = {}
        for code, _which, kind, _shape in rows:
            path = Path(folder) / f"{'base' if trees[code] else 'here'}-{kind}.jsonl.gz"
            if not path.exists():
                write_in(trees[code], path, args.events, kind)
            paths[code, kind] = path
        runs: dict[int, list[dict]] = {n: [] for n in range(len(rows))}
        for _ in range(args.repeat):  # round by round, so a slow minute hits every row
            for n, (code, which, kind, _shape) in enumerate(rows):
                runs[n].append(measure(which, paths[code, kind], trees[code]))
        cpu_rates = [max(m["events"] / m["cpu"] for m in runs[n]) for n in range(len(rows))]
        sample_rate, baseline_rate = cpu_rates[:2]
        for n, (code, which, kind, shape) in enumerate(rows):
            rate = max(m["events"] / m["seconds"] for m in runs[n])
            peak = max(m["peak_kib"] for m in runs[n]) / 1024
            size = paths[code, kind].stat().st_size / 1e6
            print(
                f"| {code} | {which} | {shape} | {size:.1f} | {rate:,.0f} | {cpu_rates[n]:,.0f} "
                f"| {peak:.0f} | {cpu_rates[n] / baseline_rate:.2f}x "
                f"| {cpu_rates[n] / sample_rate:.2f}x |"
            )
        # Named with its line count, which the child reports as its events.
        lines = write_foreign(Path(folder) / "foreign.jsonl.gz", args.rejected_mb)
        path = Path(folder) / f"foreign-{lines}-lines.jsonl.gz"
        (Path(folder) / "foreign.jsonl.gz").rename(path)
        runs_rejected = [measure("rejected", path) for _ in range(args.repeat)]
        best = min(runs_rejected, key=lambda m: m["seconds"])
        peak = max(m["peak_kib"] for m in runs_rejected) / 1024
        print(
            f"| {here} | abtest | another application's events, {args.rejected_mb} MB, every "
            f"line rejected | {path.stat().st_size / 1e6:.1f} "
            f"| {best['events'] / best['seconds']:,.0f} | {best['events'] / best['cpu']:,.0f} "
            f"| {peak:.0f} | - | - |"
        )


if __name__ == "__main__":
    main()
