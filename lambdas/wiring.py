"""Lambda wiring: each handler's environment model, and the ports built from it.

A handler's `Environment` is made of the groups below (an API route's from the route's
needs, `lambdas/routes.py`) and its use case is built from `LambdaPorts`, which creates
each port on first use: a function builds exactly the ports of what it serves. All of it
runs at cold start, so a missing or bad variable fails the cold start naming the
variable, not every request. AWS clients (and boto3 itself) wait for their first call: a cold start
pays only for the clients its requests use, and the dead-letter queue's only when
Firehose fails. With SnapStart the hooks below build them before the snapshot instead.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Self

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from abtest import ids
from abtest.clock import SystemClock
from abtest.errors import ConfigError
from abtest.usecases.endpoints import EndpointCache

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "abtest"))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "abtest"))
# The use cases log through the standard "abtest" logger: give it the structured JSON format.
copy_config_to_registered_loggers(source_logger=logger, include={"abtest"})

DEFAULT_ASSIGNMENT_TTL_SECONDS = 90 * 24 * 3600
DEFAULT_METRICS_CACHE_SECONDS = 5.0
DEFAULT_MODEL_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """A client's timeouts and tries; its botocore `Config` is made with the client, since
    importing botocore at cold start would cost as much as boto3 itself."""

    connect: float
    read: float
    attempts: int

    def config(self) -> Any:
        from botocore.config import Config

        return Config(
            connect_timeout=self.connect,
            read_timeout=self.read,
            retries={"mode": "standard", "total_max_attempts": self.attempts},
        )


def client_config(connect: float, read: float, attempts: int) -> ClientLimits:
    return ClientLimits(connect, read, attempts)


# Every AWS call is bounded, so that a stalled service is answered (fallback, 503, or the
# event dead-lettered and logged) inside the function's timeout rather than cut off by it.
# Store: at most 2 x 1.5 s, then the invocation falls back.
STORE_CLIENT = client_config(connect=0.5, read=1.0, attempts=2)
# Firehose and SQS: one try per call (the sink retries Firehose itself, to its deadline).
EVENT_LOG_CLIENT = client_config(connect=0.5, read=1.0, attempts=1)
MODEL_CONNECT_SECONDS = 1.0


def _worst(limits: ClientLimits) -> float:
    return (limits.connect + limits.read) * limits.attempts


def request_budget_seconds() -> float:
    """The worst case of an invocation's path but the model's answer: the assignment read
    (then the fallback), the model's connect, Firehose up to the sink's deadline plus the
    try that started before it, and the dead-letter queue. The stack gives the model what
    the function's timeout leaves."""
    from abtest.adapters.firehose import DEFAULT_DEADLINE_SECONDS

    call = _worst(EVENT_LOG_CLIENT)
    return _worst(STORE_CLIENT) + MODEL_CONNECT_SECONDS + DEFAULT_DEADLINE_SECONDS + 2 * call


# Off the request path (S3 reads in aggregation, SageMaker descriptions at registration):
# at most 3 x (2 + 5) s, inside the register (30 s) and metrics (120 s) functions.
BACKGROUND_CLIENT = client_config(connect=2.0, read=5.0, attempts=3)


# Promoting a winner (the conclude function): DescribeEndpoint, then at most one
# UpdateEndpointWeightsAndCapacities, each at most 2 x 3 s plus a back-off under 1 s, inside
# the API function's timeout with the store's writes. Two tries absorb brief throttling; past
# them the answer is a 503 and the promotion stays pending (as after a timeout), never done.
PROMOTION_CLIENT = client_config(connect=1.0, read=2.0, attempts=2)


def _variable(loc: tuple[str | int, ...]) -> str:
    return "environment variable " + ".".join(map(str, loc))


class LambdaEnvironment(BaseModel):
    """A function's environment variables, one field each (field `x_y` is variable `X_Y`).

    Validators are built when a model is first validated: a function validates one, made of
    the groups below, and building every group's at import cost its cold start 1.4 ms.
    """

    model_config = ConfigDict(
        alias_generator=str.upper, extra="ignore", frozen=True, str_min_length=1, defer_build=True
    )

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Read and check the environment; ConfigError naming each bad variable."""
        try:
            return cls.model_validate(dict(os.environ if environ is None else environ))
        except ValidationError as error:
            from abtest.config_types import describe_errors  # only a failed start needs it

            reasons = describe_errors(error, key=_variable)
            raise ConfigError(f"{cls.__name__}: {reasons}") from None


class EndpointsEnvironment(LambdaEnvironment):
    """Endpoint records (the metrics table), read by every function."""

    metrics_table: str


class EndpointCacheEnvironment(LambdaEnvironment):
    metrics_cache_seconds: float = Field(default=DEFAULT_METRICS_CACHE_SECONDS, ge=0)


class AssignmentsEnvironment(LambdaEnvironment):
    assignment_table: str
    assignment_ttl_seconds: int = Field(default=DEFAULT_ASSIGNMENT_TTL_SECONDS, gt=0)


class ModelsEnvironment(LambdaEnvironment):
    # The stack sets it to the function's timeout less request_budget_seconds().
    model_timeout_seconds: float = Field(default=DEFAULT_MODEL_TIMEOUT_SECONDS, gt=0)


class EventsEnvironment(LambdaEnvironment):
    delivery_stream_name: str
    dead_letter_queue_url: str  # where events Firehose refused are parked, never dropped


class LazyClient:
    """A boto3 client made at its first use (any attribute), and remade after `drop`."""

    def __init__(self, service: str, limits: ClientLimits) -> None:
        self.service = service
        self.limits = limits
        self._client: Any = None

    @property
    def built(self) -> bool:
        return self._client is not None

    def build(self) -> Any:
        if self._client is None:
            import boto3  # here, not at import: a function builds only what it calls

            self._client = boto3.client(self.service, config=self.limits.config())
        return self._client

    def drop(self) -> None:
        """Forget the client and its pooled connections; the next call makes a new one."""
        self._client = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.build(), name)


class LambdaPorts:
    """`Ports` for `UseCase.from_ports`, built from a handler's environment on first use."""

    def __init__(self, env: LambdaEnvironment) -> None:
        self.env = env
        self.clients: dict[str, LazyClient] = {}

    def client(self, service: str, limits: ClientLimits) -> LazyClient:
        """The function's client of `service`, made at its first call (one per service)."""
        if service not in self.clients:
            self.clients[service] = LazyClient(service, limits)
        return self.clients[service]

    def before_snapshot(self) -> None:
        """SnapStart: make the clients now, so boto3 and the service models are in the
        snapshot. No call is made: no connection is open when the snapshot is taken."""
        for client in self.clients.values():
            client.build()

    def after_restore(self) -> None:
        """SnapStart: every environment restored from one snapshot would otherwise draw the
        same random numbers (the same bandit picks) and share the snapshot's clients."""
        if "rng" in vars(self):
            self.rng.seed()
        random.seed()
        ids.reset()  # nor the same block of fresh ids
        for client in self.clients.values():
            client.drop()

    @cached_property
    def store(self) -> Any:
        from abtest.adapters.dynamodb import DynamoDBStore

        env = self.env
        assert isinstance(env, EndpointsEnvironment)
        # A function without the assignments group only reads endpoint records.
        assignments = env.assignment_table if isinstance(env, AssignmentsEnvironment) else ""
        return DynamoDBStore(
            assignments, env.metrics_table, client=self.client("dynamodb", STORE_CLIENT)
        )

    @cached_property
    def history(self) -> Any:
        from abtest.adapters.dynamodb_history import DynamoDBHistory

        env = self.env
        assert isinstance(env, EndpointsEnvironment)
        return DynamoDBHistory(env.metrics_table, client=self.client("dynamodb", STORE_CLIENT))

    @cached_property
    def endpoints(self) -> EndpointCache:
        env = self.env
        # Functions without a cache setting only `forget` records they change.
        ttl = env.metrics_cache_seconds if isinstance(env, EndpointCacheEnvironment) else 0.0
        return EndpointCache(self.store, ttl)

    @cached_property
    def events(self) -> Any:
        from abtest.adapters.firehose import FirehoseSink

        env = self.env
        assert isinstance(env, EventsEnvironment)
        return FirehoseSink(
            env.delivery_stream_name,
            client=self.client("firehose", EVENT_LOG_CLIENT),
            dead_letter_queue_url=env.dead_letter_queue_url,
            sqs_client=self.client("sqs", EVENT_LOG_CLIENT),
        )

    @cached_property
    def models(self) -> Any:
        from abtest.adapters.sagemaker import SageMakerModelEndpoint

        env = self.env
        assert isinstance(env, ModelsEnvironment)
        # One try, bounded: a hung model is the documented 502, not a Lambda timeout.
        config = client_config(
            connect=MODEL_CONNECT_SECONDS, read=env.model_timeout_seconds, attempts=1
        )
        return SageMakerModelEndpoint(client=self.client("sagemaker-runtime", config))

    @cached_property
    def catalog(self) -> Any:
        from abtest.adapters.sagemaker import SageMakerEndpointCatalog

        return SageMakerEndpointCatalog(client=self.client("sagemaker", BACKGROUND_CLIENT))

    @cached_property
    def model_host(self) -> Any:
        from abtest.adapters.sagemaker import SageMakerModelHost

        # A lazy client: functions that never conclude never make it (nor may call it).
        return SageMakerModelHost(client=self.client("sagemaker", PROMOTION_CLIENT))

    @cached_property
    def clock(self) -> SystemClock:
        return SystemClock()

    @cached_property
    def telemetry(self) -> Any:
        from abtest.adapters.cloudwatch import EmfTelemetry

        return EmfTelemetry(metrics.namespace)

    @cached_property
    def rng(self) -> random.Random:
        return random.Random()

    @property
    def assignment_ttl_seconds(self) -> int:
        env = self.env
        assert isinstance(env, AssignmentsEnvironment)
        return env.assignment_ttl_seconds


def register_snapstart_hooks(ports: LambdaPorts, *before: Callable[[], None]) -> None:
    """Run `ports`' SnapStart hooks around the snapshot, where the runtime offers them, and
    `before` (what else the snapshot should hold) ahead of the snapshot too.

    `snapshot_restore_py` ships with the managed Python runtimes (3.12 and later); elsewhere
    (tests, a runtime without it) nothing is snapshotted and there is nothing to register.
    """
    try:
        from snapshot_restore_py import register_after_restore, register_before_snapshot
    except ImportError:
        return
    for hook in before:
        register_before_snapshot(hook)
    register_before_snapshot(ports.before_snapshot)
    register_after_restore(ports.after_restore)
