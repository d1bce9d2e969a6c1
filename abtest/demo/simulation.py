"""The A/B test simulation, as an HTTP client of the API (embedded or deployed).

Each simulated user asks the API for predictions (`/invocation`); the API assigns the
user a variant. What the user sends, and the reward they give the answer, is the
scenario's truth (`abtest.demo.worlds`): per-variant conversion rates, a reward function,
or the demo's review world, where the reward is whether the variant labelled the review
the user read right. Rewarded users post the invocation response back as a
`/conversion`, as the article's clients do.
"""

from __future__ import annotations

import csv
import json
import random
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import httpx

from abtest.demo.worlds import World
from abtest.records import AssignmentKind


class ApiError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run; `results` holds the users it finished, for the caller to keep."""

    def __init__(self, results: list[UserResult]) -> None:
        super().__init__()
        self.results = results


class Stopped(Exception):
    """The API failed during a run (`cause`: an ApiError or an httpx error, a server that
    went away); `results` holds the users finished before it, for the caller to keep."""

    def __init__(self, results: list[UserResult], cause: Exception) -> None:
        super().__init__(str(cause))
        self.results = results
        self.cause = cause


@dataclass(frozen=True, slots=True)
class UserResult:
    user: int
    user_id: str
    inference_id: str
    variant: str
    strategy: str
    assignment: str
    propensity: float | None
    reward: float  # what the scenario's truth gave the answer
    seconds: float  # since the simulation started


class ApiClient:
    """The routes over one keep-alive connection; `auth` is an httpx.Auth (or None)."""

    def __init__(
        self,
        url: str,
        *,
        auth: httpx.Auth | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(auth=auth, headers=headers, timeout=timeout, transport=transport)

    def invocation(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._post("invocation", body)

    def conversion(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._post("conversion", body)

    def stats(self, endpoint_name: str) -> dict[str, Any]:
        return self._post("stats", {"endpoint_name": endpoint_name})

    def admin(self, route: str, body: dict[str, Any]) -> dict[str, Any]:
        """`POST /admin/<route>` (`abtest endpoints`)."""
        return self._post(f"admin/{route}", body)

    def history(self, endpoint_name: str, limit: int) -> dict[str, Any]:
        return self._post("history", {"endpoint_name": endpoint_name, "limit": limit})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _post(self, route: str, body: dict[str, Any]) -> dict[str, Any]:
        # Serialized here (not json=) so a SigV4 signer sees the exact bytes sent.
        response = self._http.post(
            f"{self.url}/{route}",
            content=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        if response.status_code >= 300:
            raise ApiError(response.status_code, response.text)
        return response.json()


class SigV4(httpx.Auth):
    """Signs each request for API Gateway IAM auth (botocore's default credential chain)."""

    requires_request_body = True

    def __init__(self, region: str, *, credentials: Any = None, service: str = "execute-api"):
        if credentials is None:
            import botocore.session

            credentials = botocore.session.Session().get_credentials()
        if credentials is None:
            raise ValueError("IAM auth needs AWS credentials (environment, profile or role)")
        self.region, self.service, self.credentials = region, service, credentials

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        signed = AWSRequest(
            method=request.method,
            url=str(request.url),
            data=request.content,
            headers={"Content-Type": request.headers.get("content-type", "")},
        )
        SigV4Auth(self.credentials, self.service, self.region).add_auth(signed)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
            if name in signed.headers:
                request.headers[name] = signed.headers[name]
        yield request


def region_of(url: str) -> str | None:
    """The region of an execute-api URL (https://<id>.execute-api.<region>.amazonaws.com/...)."""
    match = re.search(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com", url)
    return match.group(1) if match else None


def run_id(seed: int | None) -> str:
    """The prefix of a run's user ids: fresh each run, unless a seed repeats an earlier run's."""
    return f"sim{seed}" if seed is not None else f"sim-{secrets.token_hex(4)}"


def simulate(
    client: ApiClient,
    endpoint_name: str,
    world: World,
    *,
    users: int = 1_000,
    seed: int | None = None,
    progress: bool = True,
    until: Callable[[list[UserResult]], bool] | None = None,
) -> list[UserResult]:
    """Run `users` users one after another, with user ids `<run_id(seed)>-<n>`; `until`,
    asked after each user, ends the run sooner (the demo's, some users after it concluded).

    The same seed gives the same users, requests and rewards; without one, the users
    are new to the endpoint.
    """
    if users < 1:
        raise ValueError("users must be at least 1")
    from tqdm.auto import tqdm

    rng = random.Random(seed)
    prefix = run_id(seed)
    results: list[UserResult] = []
    started = time.monotonic()
    bar = tqdm(range(users), desc="users", unit="user", disable=not progress)
    try:
        for user in bar:
            user_id = f"{prefix}-{user}"
            visit = world.visit(user_id, rng)
            response = client.invocation(
                {
                    "endpoint_name": endpoint_name,
                    "user_id": user_id,
                    "content_type": visit.content_type,
                    "data": visit.data,
                }
            )
            reward = visit.reward(response)
            if reward > 0:
                client.conversion({**response, "reward": reward})
            results.append(
                UserResult(
                    user=user,
                    user_id=response["user_id"],
                    inference_id=response["inference_id"],
                    variant=response["endpoint_variant"],
                    strategy=response["strategy"],
                    assignment=response["assignment"],
                    propensity=response["propensity"],
                    reward=reward,
                    seconds=round(time.monotonic() - started, 4),
                )
            )
            if until is not None and until(results):
                break
    except KeyboardInterrupt:
        bar.close()
        raise Interrupted(results) from None
    except (ApiError, httpx.HTTPError) as error:
        bar.close()
        if results:
            raise Stopped(results, error) from error
        raise
    bar.close()  # also when `until` ended the run sooner
    return results


def served_concluded(results: list[UserResult]) -> list[UserResult]:
    """The users from the first one the concluded experiment served on: once it concludes,
    every later user is the winner's, so any other variant among these would be a fault."""
    for i, result in enumerate(results):
        if result.assignment == AssignmentKind.CONCLUDED:
            return results[i:]
    return []


def wait_for_counts(
    client: ApiClient,
    endpoint_name: str,
    expected: tuple[int, int],
    timeout: float,
) -> dict[str, Any]:
    """/stats once the counters hold `expected` (invocations, conversions), or after
    `timeout` seconds.

    Counters move only when the event log delivers (Firehose, or a sealed local file), and
    a user's conversion may be delivered after the last invocation: both are waited for.
    """
    deadline = time.monotonic() + timeout
    while True:
        stats = client.stats(endpoint_name)
        done = all(n >= e for n, e in zip(counted(stats), expected, strict=True))
        if done or time.monotonic() >= deadline:
            return stats
        time.sleep(0.1)


def counted(stats: dict[str, Any]) -> tuple[int, int]:
    """(invocations, conversions) that /stats has counted."""
    metrics = stats["variant_metrics"]
    return (
        sum(m["invocation_count"] for m in metrics),
        sum(m["conversion_count"] for m in metrics),
    )


def conversions_sent(results: list[UserResult]) -> int:
    return sum(r.reward > 0 for r in results)


def write_csv(results: list[UserResult], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=[f.name for f in fields(UserResult)])
        writer.writeheader()
        writer.writerows(asdict(r) for r in results)
    return path


def read_csv(path: str | Path) -> list[UserResult]:
    with Path(path).open(newline="") as file:
        return [
            UserResult(
                user=int(row["user"]),
                user_id=row["user_id"],
                inference_id=row["inference_id"],
                variant=row["variant"],
                strategy=row["strategy"],
                assignment=row["assignment"],
                propensity=float(row["propensity"]) if row["propensity"] else None,
                reward=float(row["reward"]),
                seconds=float(row["seconds"]),
            )
            for row in csv.DictReader(file)
        ]


def format_stats(stats: dict[str, Any]) -> str:
    """The /stats answer (or /admin/show's, which adds the state) as a table (counters,
    P(best), allocation), then the decision."""
    allocation = stats.get("allocation", {})
    decision = stats.get("decision") or {}
    figures = {f["variant_name"]: f for f in decision.get("variants", [])}
    params = "".join(f", {k} {v}" for k, v in (stats.get("strategy_params") or {}).items())
    lines = [
        f"endpoint {stats['endpoint_name']}: strategy {stats['strategy']}{params}, "
        f"warmup {stats['warmup']}",
        f"{'variant':<16}{'invocations':>12}{'conversions':>12}{'reward rate':>12}"
        f"{'P(best)':>9}{'p-value':>9}{'allocation':>11}",
    ]
    for m in stats["variant_metrics"]:
        name, n = m["variant_name"], m["invocation_count"]
        figure = figures.get(name, {})
        rate = f"{m['reward_sum'] / n:.3f}" if n else "-"
        best = figure.get("probability_best")
        p_value = figure.get("always_valid_p_value")
        lines.append(
            f"{name:<16}{n:>12}{m['conversion_count']:>12}{rate:>12}"
            f"{'-' if best is None else f'{best:.3f}':>9}"
            f"{'-' if p_value is None else f'{p_value:.3g}':>9}"
            f"{allocation.get(name, 0.0):>11.3f}"
        )
    state = stats.get("state", "running")
    if state != "running":  # the counters and the decision stay readable, and may still move
        winner = stats.get("winner")
        lines.append(f"state: {state}" + (f", {winner} serves every user" if winner else ""))
    # Once concluded, the decision is the counters' as they stand, not what happens next.
    heading = "decision on the counts now" if state == "concluded" else "decision"
    if decision.get("winner"):
        lines.append(f"{heading}: {decision['winner']} wins ({decision.get('reason')})")
    elif state == "concluded":
        lines.append(f"{heading}: no winner ({decision.get('reason', 'unknown')})")
    else:
        next_step = "; keep running" if state == "running" else ""
        lines.append(f"decision: no winner yet ({decision.get('reason', 'unknown')}){next_step}")
    if decision.get("advice"):  # what the answer rests on, or what would change it
        lines.append(f"  {decision['advice']}")
    return "\n".join(lines)
