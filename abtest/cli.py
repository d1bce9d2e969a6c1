"""`abtest serve | simulate | demo | redrive | evaluate`: the product from a terminal.

Heavy imports (uvicorn, numpy, matplotlib) happen inside each command, so `--help`
is instant and a bad config is reported before anything else starts.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from abtest.errors import ConfigError, StoreUnavailableError


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.command(args)
    except ConfigError as error:
        print(f"abtest: config error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"abtest: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _serve(args: argparse.Namespace) -> int:
    from abtest.embedded.server import serve
    from abtest.embedded.wiring import Runtime

    try:
        runtime = Runtime(args.config, args.data_dir)
        # uvicorn shuts down gracefully on SIGTERM, then re-raises it: end like Ctrl-C, exit 0.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        # KeyboardInterrupt: re-raised by uvicorn after its graceful shutdown.
        with contextlib.suppress(KeyboardInterrupt):
            serve(
                runtime,
                args.host,
                args.port,
                token=args.token or os.environ.get("ABTEST_TOKEN") or None,
                out=lambda line: print(line, flush=True),
            )
    except StoreUnavailableError as error:
        print(f"abtest: {_store_advice(args.data_dir, error)}", file=sys.stderr)
        return 1
    print("abtest: stopped; buffered events sealed and aggregated", flush=True)
    return 0


def _store_advice(data_dir: Path, error: StoreUnavailableError) -> str:
    """One line: what went wrong with the data dir's database, and what to do about it."""
    reason = str(error.__cause__ or error.message)
    if "locked" in reason or "busy" in reason:
        advice = "another process holds it: stop that process or choose another --data-dir"
    else:
        advice = "check that it is writable and the disk has room, or choose another --data-dir"
    return f"cannot use the store in {data_dir}: {reason}; {advice}"


def _simulate(args: argparse.Namespace) -> int:
    from abtest.demo import plots
    from abtest.demo.reviews import held_out_reviews
    from abtest.demo.simulation import (
        ApiClient,
        ApiError,
        SigV4,
        format_stats,
        region_of,
        simulate,
        total_invocations,
        wait_for_invocations,
        write_csv,
    )

    auth, headers = None, {}
    if args.auth == "iam":
        region = args.region or region_of(args.url) or os.environ.get("AWS_REGION")
        if not region:
            raise ConfigError("--auth iam: give --region (not found in the URL or AWS_REGION)")
        auth = SigV4(region)
    elif args.auth == "token":
        token = args.token or os.environ.get("ABTEST_TOKEN")
        if not token:
            raise ConfigError("--auth token: give --token or set ABTEST_TOKEN")
        headers["authorization"] = f"Bearer {token}"
    elif args.auth == "api-key":
        key = args.api_key or os.environ.get("ABTEST_API_KEY")
        if not key:
            raise ConfigError("--auth api-key: give --api-key or set ABTEST_API_KEY")
        headers["x-api-key"] = key
    with ApiClient(args.url, auth=auth, headers=headers) as client:
        try:
            before = total_invocations(client.stats(args.endpoint))
            results = simulate(
                client,
                args.endpoint,
                held_out_reviews(),
                users=args.users,
                batch_size=args.batch_size,
                seed=args.seed,
                progress=not args.no_progress,
            )
            stats = wait_for_invocations(
                client, args.endpoint, before + args.users, timeout=args.wait
            )
        except ApiError as error:
            print(f"abtest: the API refused a request: {error}", file=sys.stderr)
            return 1
    out = Path(args.out)
    csv_path = write_csv(results, out / "results.csv")
    figures = plots.save_all(results, out)
    print(format_stats(stats))
    if total_invocations(stats) < before + args.users:
        print("(some events are still buffered in the event log: /stats does not count them yet)")
    print(f"results: {csv_path}")
    print("plots:   " + ", ".join(str(p) for p in figures))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from abtest.demo import run_demo

    run_demo(args.out, users=args.users, seed=args.seed, progress=not args.no_progress)
    return 0


def _redrive(args: argparse.Namespace) -> int:
    import boto3

    from abtest.adapters.redrive import redrive_aggregations, redrive_events

    session = boto3.Session(region_name=args.region)
    sqs = session.client("sqs")
    if args.queue == "events":
        if not args.bucket:
            print("abtest: redrive events needs --bucket (the event log's)", file=sys.stderr)
            return 2
        settle = {} if args.settle is None else {"settle_seconds": args.settle}
        result = redrive_events(sqs, session.client("s3"), args.queue_url, args.bucket, **settle)
    else:
        result = redrive_aggregations(sqs, session.client("lambda"), args.queue_url)
    found = f", {result.already_logged} found already logged" if result.already_logged else ""
    print(f"abtest: redrove {result.sent} message(s){found}; {result.kept} left in the queue")
    for reason in result.reasons:
        print(f"  kept: {reason}")
    return 0 if result.kept == 0 else 1


def _evaluate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from abtest.usecases import evaluate

    if args.bucket:
        import boto3

        from abtest.adapters.s3 import S3EventArchive

        archive = S3EventArchive(args.bucket, client=boto3.client("s3", region_name=args.region))
        keys = archive.keys(args.prefix)
    else:
        from abtest.adapters.eventlog import LocalEventLog

        folder = args.data_dir / "events"
        if not folder.is_dir():
            print(f"abtest: evaluate: no event log at {folder}", file=sys.stderr)
            return 2
        archive = LocalEventLog(folder)
        keys = archive.sealed_keys()
    try:
        with tqdm(total=2 * len(keys), unit="file", disable=args.no_progress) as bar:
            found = evaluate.read_endpoint_log(
                archive, keys, args.endpoint, on_object=lambda: bar.update()
            )
        policies = evaluate.target_policies(found.log, args.strategy, batch_size=args.batch_size)
        rows = evaluate.estimate_policies(found.log, policies)
    except evaluate.EvaluationError as error:
        print(f"abtest: evaluate: {error}", file=sys.stderr)
        return 2
    print(evaluate.format_table(found, rows))
    for path in evaluate.write_reports(found, rows, args.out):
        print(f"written: {path}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="abtest", description="Multi-armed-bandit A/B testing of ML model variants."
    )
    commands = parser.add_subparsers(required=True, metavar="command")

    serve = commands.add_parser("serve", help="serve the API for one endpoint config")
    serve.add_argument("--config", required=True, type=Path, help="endpoint config (TOML)")
    serve.add_argument("--host", default="127.0.0.1", help="any address but loopback needs --token")
    serve.add_argument(
        "--token", help="callers must send 'Authorization: Bearer TOKEN' (or set ABTEST_TOKEN)"
    )
    serve.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    serve.add_argument("--data-dir", type=Path, default=Path("abtest-data"))
    serve.set_defaults(command=_serve)

    simulate = commands.add_parser("simulate", help="run the A/B test simulation against an API")
    simulate.add_argument("--url", required=True, help="API base URL")
    simulate.add_argument("--endpoint", required=True, help="endpoint name")
    simulate.add_argument("--users", type=int, default=1_000)
    simulate.add_argument("--batch-size", type=int, default=20)
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--out", type=Path, default=Path("simulation-output"))
    simulate.add_argument(
        "--wait",
        type=float,
        default=0.0,
        help="seconds to wait for the event log to deliver before the final /stats",
    )
    simulate.add_argument("--auth", choices=("none", "iam", "api-key", "token"), default="none")
    simulate.add_argument("--api-key", help="for --auth api-key (or ABTEST_API_KEY)")
    simulate.add_argument("--token", help="for --auth token, abtest serve's (or ABTEST_TOKEN)")
    simulate.add_argument("--region", help="for --auth iam (default: from the URL)")
    simulate.add_argument("--no-progress", action="store_true")
    simulate.set_defaults(command=_simulate)

    demo = commands.add_parser("demo", help="serve the demo endpoint and simulate against it")
    demo.add_argument("--out", type=Path, default=Path("demo-output"))
    demo.add_argument("--users", type=int, default=2_000)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--no-progress", action="store_true")
    demo.set_defaults(command=_demo)

    redrive = commands.add_parser(
        "redrive", help="on AWS: send parked events or failed aggregations back"
    )
    redrive.add_argument(
        "queue",
        choices=("events", "aggregations"),
        help="events: the undelivered-events queue; aggregations: the failed-aggregations one",
    )
    redrive.add_argument("--queue-url", required=True, help="the queue's URL")
    redrive.add_argument("--bucket", help="events only: the event log's bucket (stack output)")
    redrive.add_argument(
        "--settle",
        type=float,
        help="events only: seconds an event parked after a lost answer waits for Firehose "
        "(default: its longest buffering interval and a margin)",
    )
    redrive.add_argument("--region", help="AWS region (default: from the environment)")
    redrive.set_defaults(command=_redrive)

    evaluate = commands.add_parser(
        "evaluate", help="what each variant, or another policy, would have earned: from the log"
    )
    evaluate.add_argument("--endpoint", required=True, help="endpoint name")
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument("--data-dir", type=Path, help="the embedded runtime's data dir")
    source.add_argument("--bucket", help="on AWS: the event log's bucket (stack output)")
    evaluate.add_argument("--prefix", default="events/", help="with --bucket: the objects' prefix")
    evaluate.add_argument("--region", help="with --bucket: AWS region (default: environment)")
    evaluate.add_argument(
        "--strategy",
        action="append",
        default=[],
        metavar="NAME[:PARAM=VALUE,...]",
        help="also evaluate this strategy, replayed on the log (repeatable)",
    )
    evaluate.add_argument(
        "--batch-size", type=int, default=1000, help="assignments between a replay's refreshes"
    )
    evaluate.add_argument("--out", type=Path, default=Path("evaluation"))
    evaluate.add_argument("--no-progress", action="store_true")
    evaluate.set_defaults(command=_evaluate)
    return parser


if __name__ == "__main__":
    sys.exit(main())
