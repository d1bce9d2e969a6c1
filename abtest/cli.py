"""`abtest serve | simulate | demo | redrive | evaluate | endpoints`: the product from a terminal.

Heavy imports (uvicorn, numpy, matplotlib) happen inside each command, so `--help`
is instant and a bad config is reported before anything else starts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from abtest.errors import ConfigError, StoreUnavailableError
from abtest.events import EVENTS_PREFIX


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.command(args)
    except ConfigError as error:
        print(f"abtest: config error: {error}", file=sys.stderr)
        return 2
    except _Failed as error:
        print(f"abtest: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader stopped (`abtest endpoints show ... | head`): end as a tool SIGPIPE
        # ends, without a line about it, and without another at exit flushing stdout.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except OSError as error:
        print(f"abtest: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _serve(args: argparse.Namespace) -> int:
    from abtest.embedded.config import load_config
    from abtest.embedded.server import check_exposure, serve
    from abtest.embedded.wiring import Runtime

    # An empty --token (`--token "$TOKEN"`, TOKEN unset) is refused, not served without one.
    token = args.token if args.token is not None else os.environ.get("ABTEST_TOKEN") or None
    check_exposure(args.host, token)  # before the data dir is made: a refusal leaves none
    config = load_config(args.config)  # a bad config is said before the port is tried
    try:
        # uvicorn shuts down gracefully on SIGTERM, then re-raises it: end like Ctrl-C, exit 0
        # (and the supervisor of --workers stops its workers the same way).
        _stop_on_signals()
        # KeyboardInterrupt: re-raised by uvicorn after its graceful shutdown.
        with contextlib.suppress(KeyboardInterrupt):
            serve(
                lambda: Runtime(config, args.data_dir),
                args.host,
                args.port,
                token=token,
                out=lambda line: print(line, flush=True),
                workers=args.workers,
            )
    except StoreUnavailableError as error:
        print(f"abtest: {_store_advice(args.data_dir, error)}", file=sys.stderr)
        return 1
    print("abtest: stopped; buffered events sealed and aggregated", flush=True)
    return 0


def _stop_on_signals() -> None:
    """Ctrl-C and SIGTERM both end a long-running command cleanly, by KeyboardInterrupt.

    Set explicitly because Python raises KeyboardInterrupt only where SIGINT was not left
    ignored by the parent, and a shell without job control (a script's `cmd &`, CI) starts
    background jobs with it ignored: such a `abtest dashboard` went on after Ctrl-C.
    uvicorn sets the same two handlers while it serves.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def _whole(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number in [low, high], or a usage error saying so (a
    number out of range got as far as a traceback, `bind()` refusing port 99999)."""
    bounds = f">= {low}" if high is None else f"from {low} to {high}"

    def whole(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be a whole number {bounds}, got {text!r}")
        return value

    return whole


def _seconds(text: str) -> float:
    """An argparse type: a finite number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0.0):
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text!r}")
    return value


_positive = _whole(1)
_port = _whole(0, 65535)


def _store_advice(data_dir: Path, error: StoreUnavailableError) -> str:
    """One line: what went wrong with the data dir's database, and what to do about it."""
    reason = str(error.__cause__ or error.message)
    if "locked" in reason or "busy" in reason:
        advice = "another process holds it: stop that process or choose another --data-dir"
    else:
        advice = "check that it is writable and the disk has room, or choose another --data-dir"
    return f"cannot use the store in {data_dir}: {reason}; {advice}"


def _check_out(folder: Path) -> None:
    """`--out` can be a folder: said before the command serves users or reads a log,
    which was otherwise done and lost (`File exists` once it came to write)."""
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"--out {folder}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {folder}: {existing} is not writable")


def _simulate(args: argparse.Namespace) -> int:
    import httpx

    from abtest.demo import plots
    from abtest.demo.simulation import (
        ApiClient,
        ApiError,
        Interrupted,
        Stopped,
        conversions_sent,
        counted,
        format_stats,
        simulate,
        wait_for_counts,
        write_csv,
    )
    from abtest.demo.worlds import ScenarioError, TruthWorld

    _check_out(args.out)
    world = _world(args)
    auth, headers = _client_auth(args)
    with ApiClient(args.url, auth=auth, headers=headers) as client:
        try:
            try:
                first = client.stats(args.endpoint)
            except ApiError as error:
                if error.status != 404 or not _names_endpoint(_answer_of(error.body)):
                    raise  # another failure, or no such route: a wrong --url
                print(f"abtest: endpoint {args.endpoint!r} is not served at {args.url}: {error}",
                      file=sys.stderr)  # fmt: skip
                return 1
            if isinstance(world, TruthWorld):
                world.check(args.endpoint, first)
            before = counted(first)
            interrupted = False
            failure: Stopped | None = None
            try:
                results = simulate(
                    client,
                    args.endpoint,
                    world,
                    users=args.users,
                    seed=args.seed,
                    progress=not args.no_progress,
                )
            except Interrupted as stop:  # Ctrl-C: the users served so far are kept
                if not stop.results:
                    raise
                results, interrupted = stop.results, True
            except Stopped as stop:  # the API failed: so are they, and the failure said
                results, failure = stop.results, stop
            expected = (before[0] + len(results), before[1] + conversions_sent(results))
            wait = 0.0 if interrupted or failure else args.wait
            try:
                stats = wait_for_counts(client, args.endpoint, expected, timeout=wait)
            except (ApiError, httpx.HTTPError):
                if failure is None:
                    raise
                stats = None  # the API that failed answers no /stats either
        except ApiError as error:
            hint = f"; {CREDENTIALS_HINT}" if error.status in NEEDS_CREDENTIALS else ""
            print(f"abtest: the API refused a request: {error}{hint}", file=sys.stderr)
            return 1
        except ScenarioError as error:
            print(f"abtest: {error}", file=sys.stderr)
            return 1
        except httpx.TransportError as error:
            print(f"abtest: {_nothing_answers(args.url, error)}", file=sys.stderr)
            return 1
    out = Path(args.out)
    csv_path = write_csv(results, out / "results.csv")
    figures = plots.save_all(results, out, getattr(world, "means", None))
    if stats is not None:
        print(format_stats(stats))
        if any(n < e for n, e in zip(counted(stats), expected, strict=True)):
            print("(some events are still buffered in the event log: /stats does not count "
                  "them yet)")  # fmt: skip
    existing = sum(r.assignment == "existing" for r in results)
    if existing:
        why = (
            f"--seed {args.seed} repeats the users of an earlier run; leave it out for new users"
            if args.seed is not None
            else "their ids were used before"
        )
        print(
            f"note: {existing} of {len(results)} users already had a variant "
            f"(assignment 'existing'): {why}"
        )
    print(f"results: {csv_path}")
    print("plots:   " + ", ".join(str(p) for p in figures))
    if interrupted:
        print(f"abtest: interrupted after {len(results)} of {args.users} users; the results "
              "above are theirs", file=sys.stderr)  # fmt: skip
        return 130
    if failure is not None:
        cause = failure.cause
        said = cause if isinstance(cause, ApiError) else cause or type(cause).__name__
        print(f"abtest: the API failed after {len(results)} of {args.users} users ({said}); "
              "the results above are theirs", file=sys.stderr)  # fmt: skip
        return 1
    return 0


def _world(args: argparse.Namespace) -> Any:
    """The truth the simulated users play, from --truth, --reward-function or --scenario."""
    from abtest.demo import worlds

    data: Any = None
    if args.data is not None:
        try:
            data = json.loads(args.data)
        except json.JSONDecodeError as error:
            raise ConfigError(f"--data: not JSON: {error}") from None
    if args.truth:
        return worlds.TruthWorld(worlds.parse_truth(args.truth), data, args.content_type)
    if args.reward_function:
        return worlds.function_world(args.reward_function, Path.cwd(), data, args.content_type)
    if args.data is not None:
        raise ConfigError(
            "--data goes with --truth or --reward-function (a scenario file has its own)"
        )
    if args.scenario == worlds.REVIEWS:
        return worlds.ReviewsWorld(batch_size=args.batch_size)
    return worlds.load_scenario(args.scenario)


def _client_auth(args: argparse.Namespace) -> tuple[Any, dict[str, str]]:
    """(httpx auth, headers) for --auth."""
    from abtest.demo.simulation import SigV4, region_of

    auth, headers = None, {}
    if args.auth == "iam":
        region = args.region or region_of(args.url) or os.environ.get("AWS_REGION")
        if not region:
            raise ConfigError("--auth iam: give --region (not found in the URL or AWS_REGION)")
        try:
            auth = SigV4(region)
        except ValueError as error:  # no credentials found: one line, as a missing token is
            raise ConfigError(f"--auth iam: {error}") from None
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
    return auth, headers


def _dashboard(args: argparse.Namespace) -> int:
    from abtest.embedded.dashboard_proxy import DashboardProxy

    auth, headers = _client_auth(args)
    endpoints = args.endpoint or _served_endpoints(args.url, auth, headers)
    proxy = DashboardProxy(args.url, endpoints, auth=auth, headers=headers, port=args.port)
    try:
        _check_authorized(args.url, endpoints[0], auth, headers)
    except BaseException:
        proxy.stop()
        raise
    _stop_on_signals()
    print(f"abtest: dashboard of {args.url} at {proxy.url}/dashboard (Ctrl-C stops)", flush=True)
    try:
        proxy.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        proxy.stop()
    return 0


# What a 401 or 403 from the API means for a command that sends its requests.
NEEDS_CREDENTIALS = (401, 403)
CREDENTIALS_HINT = (
    "give --auth token (with --token or ABTEST_TOKEN) for an `abtest serve --token`, "
    "--auth api-key or --auth iam for a deployed API"
)


def _nothing_answers(url: str, error: Exception) -> _Failed:
    return _Failed(
        f"nothing answers at {url}: {error or type(error).__name__}; start `abtest serve` "
        "or check --url"
    )


def _check_authorized(url: str, endpoint: str, auth: Any, headers: dict[str, str]) -> None:
    """Refuse to start a dashboard whose every request the API would refuse: the page
    opened and showed nothing but 401s."""
    import httpx

    from abtest.demo.simulation import ApiClient, ApiError

    try:
        with ApiClient(url, auth=auth, headers=headers, timeout=10) as client:
            client.stats(endpoint)
    except httpx.TransportError as error:
        raise _nothing_answers(url, error) from None
    except ApiError as error:
        if error.status in NEEDS_CREDENTIALS:
            raise _Failed(f"{url} refused the dashboard's requests (HTTP {error.status}); "
                          + CREDENTIALS_HINT) from None  # fmt: skip
    except ValueError:
        pass  # an answer that is not JSON: the page shows what the API says


def _served_endpoints(url: str, auth: Any, headers: dict[str, str]) -> list[str]:
    """The endpoints the API lists (/admin/list), else those an embedded server's /health
    names; an API that answers neither (admin routes refused) needs --endpoint."""
    import httpx

    base = url.rstrip("/")
    try:
        listed = httpx.post(f"{base}/admin/list", json={}, auth=auth, headers=headers, timeout=10)
        names = [str(e["endpoint_name"]) for e in listed.raise_for_status().json()["endpoints"]]
        if names:
            return names
    except httpx.TransportError as error:  # nothing answers: no name would help
        raise _nothing_answers(url, error) from None
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        pass
    try:
        health = httpx.get(f"{base}/health", auth=auth, headers=headers, timeout=10)
        return [str(name) for name in health.raise_for_status().json()["endpoint_names"]]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        raise ConfigError(
            f"--endpoint: give the endpoint's name ({url}/admin/list and /health name none)"
        ) from None


def _demo(args: argparse.Namespace) -> int:
    from abtest.demo import run_demo

    _check_out(args.out)
    run_demo(args.out, users=args.users, seed=args.seed, progress=not args.no_progress)
    return 0


@contextlib.contextmanager
def _aws_errors(command: str) -> Iterator[None]:
    """AWS refusing a command's calls is one line, not a traceback: no credentials or no
    region is a config error (exit 2, as a missing token is); anything else AWS or the
    network says exits 1."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    try:
        yield
    except NoCredentialsError:
        raise ConfigError(
            f"{command}: no AWS credentials found (environment, profile or role)"
        ) from None
    except NoRegionError:
        raise ConfigError(f"{command}: give --region (or set AWS_REGION)") from None
    except (BotoCoreError, ClientError) as error:
        raise _Failed(f"{command}: {error}") from None


class _Failed(Exception):
    """A command that cannot go on, said in one line (exit 1)."""


def _redrive(args: argparse.Namespace) -> int:
    with _aws_errors("redrive"):
        return _redrive_queue(args)


def _redrive_queue(args: argparse.Namespace) -> int:
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
    _check_out(args.out)
    if args.bucket:
        with _aws_errors("evaluate"):
            return _evaluate_log(args, *_bucket_log(args))
    from abtest.adapters.eventlog import LocalEventLog

    folder = args.data_dir / "events"
    if not folder.is_dir():
        print(f"abtest: evaluate: no event log at {folder}", file=sys.stderr)
        return 2
    archive = LocalEventLog(folder)
    return _evaluate_log(args, archive, archive.sealed_keys())


def _bucket_log(args: argparse.Namespace) -> tuple[Any, list[str]]:
    import boto3

    from abtest.adapters.s3 import S3EventArchive

    archive = S3EventArchive(args.bucket, client=boto3.client("s3", region_name=args.region))
    return archive, archive.keys(args.prefix)


def _evaluate_log(args: argparse.Namespace, archive: Any, keys: list[str]) -> int:
    from tqdm import tqdm

    from abtest.usecases import evaluate

    try:
        with tqdm(total=len(keys), unit="file", disable=args.no_progress) as bar:
            found = evaluate.read_endpoint_log(
                archive, keys, args.endpoint, on_object=lambda: bar.update()
            )
    except evaluate.EvaluationError as error:
        print(f"abtest: evaluate: {error}", file=sys.stderr)
        return 2
    try:
        policies = evaluate.target_policies(
            found.log.variants, args.strategy, batch_size=args.batch_size
        )
        rows = evaluate.estimate_policies(found.log, policies, by=args.by)
    except evaluate.EvaluationError as error:
        print(f"abtest: evaluate: {error}", file=sys.stderr)
        return 2
    finally:
        found.close()
    print(evaluate.format_table(found, rows))
    for path in evaluate.write_reports(found, rows, args.out):
        print(f"written: {path}")
    return 0


# `abtest endpoints` exit codes, by answer status, so a script can tell them apart
# (documented in the README, "Lifecycle"): 0 done, 1 any other failure (a 5xx, no
# connection), 2 usage, 3 no such endpoint, 4 a conflict (an illegal or lost move,
# no winner), 5 not authorized.
EXIT_BY_STATUS = {404: 3, 409: 4, 401: 5, 403: 5}
# The admin route of each `abtest endpoints` action, and the moves among them.
ENDPOINT_ACTIONS = ("list", "show", "pause", "resume", "conclude", "retire-variant", "reinstate")
ENDPOINT_ACTIONS += ("add-variant", "weights")
# Bad input the API refused (400, naming the field) exits as a usage error does.
EXIT_BY_STATUS[400] = 2
# The actions each option is for: given to another, it is refused, never ignored (a
# `conclude --variant B` concluded with the decision's winner, whichever that was).
OPTION_ACTIONS = {
    "winner": ("conclude",),
    "variant": ("retire-variant", "reinstate", "add-variant"),
    "model": ("add-variant",),
    "initial_weight": ("add-variant",),
    "weight": ("weights",),
    "reason": tuple(a for a in ENDPOINT_ACTIONS if a not in ("list", "show")),
}


def _endpoints(args: argparse.Namespace) -> int:
    from abtest.demo.simulation import ApiClient, ApiError

    auth, headers = _client_auth(args)
    for option, actions in OPTION_ACTIONS.items():
        if getattr(args, option) not in (None, "", []) and args.action not in actions:
            flag = "--" + option.replace("_", "-")
            print(f"abtest: endpoints {args.action}: {flag} is for {', '.join(actions)} only",
                  file=sys.stderr)  # fmt: skip
            return 2
    if args.action != "list" and not args.endpoint:
        print(f"abtest: endpoints {args.action}: give the endpoint name", file=sys.stderr)
        return 2
    if args.action == "list" and args.endpoint:  # it lists them all: `show` is for one
        print(f"abtest: endpoints list: takes no endpoint name (show {args.endpoint} "
              "shows one)", file=sys.stderr)  # fmt: skip
        return 2
    body: dict[str, Any] = {}
    if args.action != "list":
        body["endpoint_name"] = args.endpoint
    if args.action not in ("list", "show") and args.reason:
        body["reason"] = args.reason
    if args.action == "conclude" and args.winner:
        body["winner"] = args.winner
    if args.action in ("retire-variant", "add-variant", "reinstate"):
        if not args.variant:
            print(f"abtest: endpoints {args.action}: give --variant", file=sys.stderr)
            return 2
        body["variant"] = args.variant
    if args.action == "add-variant":
        if args.model:
            body["model"] = args.model
        if args.initial_weight is not None:
            body["initial_weight"] = args.initial_weight
    if args.action == "weights":
        try:
            body["weights"] = _weights(args.weight or [])
        except ValueError as error:
            print(f"abtest: endpoints weights: {error}", file=sys.stderr)
            return 2
    try:
        with ApiClient(args.url, auth=auth, headers=headers) as client:
            answer = client.admin(args.action, body)
    except ApiError as error:
        refused = _answer_of(error.body)
        message = refused.get("message") or error.body[:200] or "no body"
        print(f"abtest: HTTP {error.status}: {message}", file=sys.stderr)
        if error.status == 404 and not _names_endpoint(refused):
            return 1  # no such route (a wrong --url), not no such endpoint
        return EXIT_BY_STATUS.get(error.status, 1)
    except Exception as error:  # httpx's connection errors, a bad URL: one line, not a trace
        print(f"abtest: {args.url}: {error}", file=sys.stderr)
        return 1
    print(_list_table(answer) if args.action == "list" else _endpoint_tables(answer))
    return 0


def _answer_of(body: str) -> dict[str, Any]:
    """An error answer's JSON object; empty if the body is none (a proxy's page)."""
    try:
        answer = json.loads(body)
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _names_endpoint(answer: dict[str, Any]) -> bool:
    """Whether an error answer is about `endpoint_name` (the API's 404 for an endpoint it
    does not have), not about the route (a URL with a wrong path)."""
    details = answer.get("details")
    return isinstance(details, list) and any(
        isinstance(d, dict) and d.get("field") == "endpoint_name" for d in details
    )


def _weights(pairs: Sequence[str]) -> dict[str, float]:
    """`VARIANT=WEIGHT` pairs as a dict; a ValueError naming the pair at fault, if any."""
    if not pairs:
        raise ValueError("give --weight VARIANT=WEIGHT")
    weights: dict[str, float] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        try:
            weight = float(value)
        except ValueError:
            weight = math.nan
        if not sep or not name or not math.isfinite(weight):
            raise ValueError(f"--weight {pair!r}: expected VARIANT=WEIGHT, WEIGHT a number")
        if name in weights:
            raise ValueError(f"--weight: {name!r} given twice")
        weights[name] = weight
    return weights


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain text table: columns as wide as their widest cell."""
    cells = [list(header), *[["-" if v is None else str(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def _origin(e: dict[str, Any], variant: str) -> str:
    """How the variant came: `-` with the experiment, else added (with its model, if any)."""
    added = e.get("added", {})
    if variant not in added:
        return "-"
    return f"yes ({added[variant]})" if added[variant] else "yes"


def _list_table(answer: dict[str, Any]) -> str:
    rows = [
        (
            e["endpoint_name"],
            e["state"],
            e["winner"],
            e["strategy"],
            ", ".join(v + (" (retired)" if v in e["retired"] else "") for v in e["variants"]),
        )
        for e in answer["endpoints"]
    ]
    return _table(("ENDPOINT", "STATE", "WINNER", "STRATEGY", "VARIANTS"), rows)


def _endpoint_tables(e: dict[str, Any]) -> str:
    allocation = e["allocation"]
    variants = [
        (
            v["variant_name"]
            + (" (retired)" if v["variant_name"] in e["retired"] else "")
            + (" (demoted)" if v.get("demoted") else ""),
            v["invocation_count"],
            v["conversion_count"],
            f"{v['reward_sum']:g}",
            f"{allocation.get(v['variant_name'], 0.0):.3f}",
            f"{e['weights'][v['variant_name']]:g}" if "weights" in e else "-",
            _origin(e, v["variant_name"]),
            None if v.get("error_rate") is None else f"{v['error_rate']:.1%}",
            v.get("latency_ms", {}).get("p99"),
        )
        for v in e["variant_metrics"]
    ]
    demotions = [
        f"{v['variant_name']} demoted: {v['demoted']}"
        for v in e["variant_metrics"]
        if v.get("demoted")
    ]
    audit = [
        (
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(a["at"])),
            a["actor"],
            a["action"],
            a["reason"],
        )
        for a in e["audit_log"]
    ]
    decision = e["decision"]
    lines = [
        f"{e['endpoint_name']}: {e['state']}"
        + (f", winner {e['winner']}" if e["winner"] else "")
        + (f", promotion {e['promotion']}" if e.get("promotion") else "")
        + f" (version {e['version']}, {e['strategy']})",
        f"decision: {decision.get('winner') or 'no winner'} ({decision.get('reason', '-')})",
        "",
        _table(
            (
                "VARIANT",
                "INVOCATIONS",
                "CONVERSIONS",
                "REWARD",
                "ALLOCATION",
                "WEIGHT",
                "ADDED",
                "ERRORS",
                "P99_MS",
            ),
            variants,
        ),
        *demotions,
    ]
    if audit:
        lines += ["", _table(("AT (UTC)", "ACTOR", "ACTION", "REASON"), audit)]
    return "\n".join(lines)


def _auth_options(parser: argparse.ArgumentParser) -> None:
    """How a client command authenticates to the API (`simulate`, `dashboard`, `endpoints`)."""
    parser.add_argument(
        "--auth",
        choices=("none", "iam", "api-key", "token"),
        default="none",
        help="iam: SigV4-signed (deployed, auth=iam); api-key: x-api-key; token: abtest serve's",
    )
    parser.add_argument("--api-key", help="for --auth api-key (default: ABTEST_API_KEY)")
    parser.add_argument("--token", help="for --auth token (default: ABTEST_TOKEN)")
    parser.add_argument("--region", help="for --auth iam (default: from the URL, or AWS_REGION)")


def _parser() -> argparse.ArgumentParser:
    formatter = _HelpWithDefaults
    parser = argparse.ArgumentParser(
        prog="abtest",
        description="Multi-armed-bandit A/B testing of ML model variants.",
        formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"abtest {_version()}")
    commands = parser.add_subparsers(required=True, metavar="command")

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name, help=summary, description=description, formatter_class=formatter
        )

    serve = command(
        "serve",
        "serve the API for the endpoints of a config",
        "Serve /invocation, /conversion, /stats, /history and the admin routes for the "
        "endpoints of a TOML config (one file, or a folder of them), with /openapi.json, "
        "/docs, /dashboard and /health. Models named "
        "'module:function' are also looked for next to their file. Endpoints an earlier "
        "start served that the config no longer has are deregistered (still readable). "
        "Ctrl-C or SIGTERM seals and aggregates the event buffer.",
    )
    serve.add_argument(
        "--config",
        required=True,
        type=Path,
        help="endpoint config: a TOML file, or a folder whose *.toml files are read together",
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on; any but loopback needs --token"
    )
    serve.add_argument(
        "--port", type=_port, default=8080, help="port to listen on; 0 picks a free one"
    )
    serve.add_argument(
        "--data-dir",
        type=Path,
        default=Path("abtest-data"),
        help="where assignments, metrics and the event log are kept (a restart resumes)",
    )
    serve.add_argument(
        "--token",
        help="callers must send 'Authorization: Bearer TOKEN' (default: ABTEST_TOKEN, else none)",
    )
    serve.add_argument(
        "--workers",
        type=_positive,
        default=(workers := os.environ.get("ABTEST_WORKERS", "1")),  # argparse checks it too
        help=f"processes serving requests; ABTEST_WORKERS sets the default (default: {workers})",
    )
    serve.set_defaults(command=_serve)

    simulate = command(
        "simulate",
        "simulate users against an endpoint",
        "Simulated users call /invocation and reward the answer by the truth you give "
        "(--truth, --reward-function or --scenario), converting over /conversion; then the "
        "final /stats, results.csv and plots. Works against abtest serve or a deployed API.",
    )
    simulate.add_argument("--url", required=True, help="API base URL")
    simulate.add_argument("--endpoint", required=True, help="endpoint name")
    simulate.add_argument(
        "--users", type=_positive, default=1_000, help="simulated users, one after another"
    )
    truth = simulate.add_mutually_exclusive_group()
    truth.add_argument(
        "--scenario",
        default="reviews",
        help="'reviews' (the demo's review world: its models only) or a scenario file (TOML: "
        "data, content_type, and [truth] or reward_function)",
    )
    truth.add_argument(
        "--truth",
        action="append",
        metavar="VARIANT=RATE",
        help="a variant's conversion rate, or VARIANT=beta:A,B for a reward drawn from "
        "Beta(A, B); once per variant",
    )
    truth.add_argument(
        "--reward-function",
        metavar="MODULE:FUNCTION",
        help="a Python function (user_id, response) -> reward in [0, 1]; looked for in the "
        "current folder too",
    )
    simulate.add_argument(
        "--data",
        help="with --truth or --reward-function: the JSON each user sends as data (default: {})",
    )
    simulate.add_argument(
        "--content-type", default="application/json", help="with --data: its content type"
    )
    simulate.add_argument(
        "--batch-size", type=_positive, default=20, help="reviews scenario: reviews per user"
    )
    simulate.add_argument(
        "--seed",
        type=int,
        help="repeat a run: the same users, requests and rewards (default: new users each run)",
    )
    simulate.add_argument(
        "--out",
        type=Path,
        default=Path("simulation-output"),
        help="folder for results.csv and plots",
    )
    simulate.add_argument(
        "--wait",
        type=_seconds,
        default=0.0,
        help="seconds to wait for the event log to deliver before the final /stats",
    )
    _auth_options(simulate)
    simulate.add_argument("--no-progress", action="store_true", help="no progress bar")
    simulate.set_defaults(command=_simulate)

    endpoints = command(
        "endpoints",
        "list, show, pause, resume or conclude endpoints; add, retire or reinstate a variant, "
        "set weights",
        "Call the admin routes of abtest serve or a deployed API and print tables. Exit codes: "
        "0 done, 1 another failure (5xx, no connection), 2 usage (or input the API refused), "
        "3 no such endpoint, "
        "4 conflict (an illegal or concurrent move, or no winner to conclude with), "
        "5 not authorized.",
    )
    endpoints.add_argument("action", choices=ENDPOINT_ACTIONS, help="what to do")
    endpoints.add_argument("endpoint", nargs="?", help="endpoint name (all but list)")
    endpoints.add_argument("--url", required=True, help="API base URL")
    endpoints.add_argument("--reason", default="", help="why, for the audit log")
    endpoints.add_argument(
        "--winner", help="conclude: the variant to serve everyone (default: the decision's)"
    )
    endpoints.add_argument(
        "--variant",
        help="retire-variant, reinstate: the variant to retire or reinstate; add-variant: the one "
        "to add",
    )
    endpoints.add_argument(
        "--model",
        help="add-variant, embedded server: what it calls ('package.module:function' or an "
        "http(s):// URL); on AWS the variant is a production variant of the endpoint instead",
    )
    endpoints.add_argument(
        "--initial-weight", type=float, help="add-variant: its weight (default 1)"
    )
    endpoints.add_argument(
        "--weight",
        action="append",
        metavar="VARIANT=WEIGHT",
        help="weights: a WeightedSampling weight (repeat for more; the others keep theirs)",
    )
    _auth_options(endpoints)  # on AWS the admin routes always take --auth iam
    endpoints.set_defaults(command=_endpoints)
    board = command(
        "dashboard",
        "serve the dashboard of a deployed API, or another abtest serve, on this machine",
        "Serve /dashboard on 127.0.0.1 for the API at --url: the page's /stats, /history and "
        "admin requests (list, show, pause, resume, conclude, retire-variant, reinstate, "
        "add-variant, weights) are forwarded "
        "with the auth the API needs (SigV4, an API key or a token), which never reaches the "
        "browser. Nothing else is forwarded.",
    )
    board.add_argument("--url", required=True, help="the API's base URL")
    board.add_argument(
        "--endpoint",
        action="append",
        help="an endpoint to show where the API cannot list them (repeat for more; "
        "default: those /admin/list names, else the one an embedded server serves)",
    )
    board.add_argument("--port", type=_port, default=8090, help="local port; 0 picks a free one")
    _auth_options(board)
    board.set_defaults(command=_dashboard)

    demo = command(
        "demo",
        "serve the demo endpoint and simulate against it",
        "Train the demo's two review classifiers, serve them on a free loopback port, run the "
        "review simulation over HTTP, stop the server and write the results, plots, config "
        "and data folder under --out.",
    )
    demo.add_argument("--out", type=Path, default=Path("demo-output"), help="output folder")
    demo.add_argument(
        "--users",
        type=_positive,
        default=3_000,
        help="simulated users at most: the run ends 200 users after the experiment concludes",
    )
    demo.add_argument("--seed", type=int, default=0, help="the simulation's seed")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    demo.set_defaults(command=_demo)

    redrive = command(
        "redrive",
        "on AWS: send parked events or failed aggregations back",
        "Send the messages of a dead-letter queue back once the cause is fixed; each is "
        "deleted only once it was taken. Exits 1 and names what it left in the queue.",
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
        type=_seconds,
        help="events only: seconds an event parked after a lost answer waits for Firehose "
        "(default: its longest buffering interval and a margin)",
    )
    redrive.add_argument("--region", help="AWS region (default: from the environment)")
    redrive.set_defaults(command=_redrive)

    evaluate = command(
        "evaluate",
        "what each variant, or another policy, would have earned: from the log",
        "Read an endpoint's event log (the embedded data dir, or the bucket Firehose delivers "
        "to), join each conversion to its assignment, and estimate what serving one variant to "
        "everyone, a uniform split, or a strategy replayed on the log would have earned: direct "
        "method, IPS, self-normalised IPS and doubly robust, each with a 95% interval, the "
        "effective sample size and warnings. Prints a table; writes CSV and JSON to --out.",
    )
    evaluate.add_argument("--endpoint", required=True, help="endpoint name")
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument("--data-dir", type=Path, help="the embedded runtime's data dir")
    source.add_argument("--bucket", help="on AWS: the event log's bucket (stack output)")
    evaluate.add_argument(
        "--prefix", default=EVENTS_PREFIX, help="with --bucket: the objects' prefix"
    )
    evaluate.add_argument(
        "--region", help="with --bucket: AWS region (default: from the environment)"
    )
    evaluate.add_argument(
        "--strategy",
        action="append",
        default=[],
        metavar="NAME[:PARAM=VALUE,...]",
        help="also evaluate this strategy, replayed on the log (repeatable)",
    )
    evaluate.add_argument(
        "--batch-size",
        type=_positive,
        default=1000,
        help="assignments between a replay's refreshes",
    )
    evaluate.add_argument(
        "--by",
        metavar="KEY",
        help="also estimate per value of this request-context key (at most 20 values)",
    )
    evaluate.add_argument(
        "--out", type=Path, default=Path("evaluation"), help="folder for the CSV and JSON"
    )
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bar")
    evaluate.set_defaults(command=_evaluate)
    return parser


class _HelpWithDefaults(argparse.HelpFormatter):
    """Every option says what it does; this adds its default, where it has one to tell."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help = action.help or ""
        unset = action.default is None or action.default is False  # by identity: 0 is shown
        if unset or action.default == argparse.SUPPRESS or "(default" in help:
            return help
        return f"{help} (default: %(default)s)"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("abtest")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
