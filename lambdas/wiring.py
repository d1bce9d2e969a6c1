"""Lambda wiring: environment -> adapters -> Service, once per container (at cold start).

Configuration errors fail the cold start with a message naming the variable,
instead of failing every request later.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

from abtest.errors import ConfigError
from abtest.service import Service, ServiceSettings

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "abtest"))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "abtest"))
# The service logs through the standard "abtest" logger: give it the structured JSON format.
copy_config_to_registered_loggers(source_logger=logger, include={"abtest"})

# What each handler reads from its environment (the CDK stack sets exactly these).
REQUIRED: dict[str, tuple[str, ...]] = {
    "invocation": ("ASSIGNMENT_TABLE", "METRICS_TABLE", "DELIVERY_STREAM_NAME"),
    "conversion": ("ASSIGNMENT_TABLE", "METRICS_TABLE", "DELIVERY_STREAM_NAME"),
    "stats": ("METRICS_TABLE",),
    "metrics": ("ASSIGNMENT_TABLE", "METRICS_TABLE"),
    "register": ("METRICS_TABLE",),
}


def require(handler: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    environ = os.environ if environ is None else environ
    missing = [name for name in REQUIRED[handler] if not environ.get(name)]
    if missing:
        raise ConfigError(
            f"the {handler} handler needs environment variable(s) {', '.join(missing)}"
        )
    return {name: environ[name] for name in REQUIRED[handler]}


def _number(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name} must be a number, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"environment variable {name} must be >= 0, got {raw!r}")
    return value


def settings(environ: Mapping[str, str] | None = None) -> ServiceSettings:
    environ = os.environ if environ is None else environ
    defaults = ServiceSettings()
    return ServiceSettings(
        assignment_ttl_seconds=int(
            _number(environ, "ASSIGNMENT_TTL_SECONDS", defaults.assignment_ttl_seconds)
        ),
        metrics_cache_seconds=_number(
            environ, "METRICS_CACHE_SECONDS", defaults.metrics_cache_seconds
        ),
    )


def _client_config(connect: float, read: float, attempts: int) -> Any:
    from botocore.config import Config

    return Config(
        connect_timeout=connect,
        read_timeout=read,
        retries={"mode": "standard", "total_max_attempts": attempts},
    )


# Every AWS call on the request path is bounded, so that a stalled service is answered
# (fallback, 503, or the event dead-lettered and logged) inside the function's timeout
# rather than cut off by it. Store: at most 2 x 1.5 s, then the invocation falls back.
STORE_CLIENT = _client_config(connect=0.5, read=1.0, attempts=2)
# The model's answer: the stack sets MODEL_TIMEOUT_SECONDS to the function's timeout less
# the store's and the event log's budgets (5 s).
DEFAULT_MODEL_TIMEOUT_SECONDS = 5.0
# Firehose and SQS: one try per call (the sink retries Firehose itself, to its deadline).
EVENT_LOG_CLIENT = _client_config(connect=0.5, read=1.0, attempts=1)


def service_for(handler: str, environ: Mapping[str, str] | None = None) -> Service:
    """The Service a handler needs, with only the adapters (and AWS clients) it uses."""
    import boto3

    from abtest.adapters.cloudwatch import EmfTelemetry
    from abtest.adapters.dynamodb import DynamoDBStore

    environ = os.environ if environ is None else environ
    env = require(handler, environ)
    store = DynamoDBStore(
        env.get("ASSIGNMENT_TABLE", ""),
        env["METRICS_TABLE"],
        client=boto3.client("dynamodb", config=STORE_CLIENT),
    )
    events = models = catalog = None
    if handler in ("invocation", "conversion"):
        from abtest.adapters.firehose import FirehoseSink

        dlq = environ.get("DEAD_LETTER_QUEUE_URL") or None
        events = FirehoseSink(
            env["DELIVERY_STREAM_NAME"],
            client=boto3.client("firehose", config=EVENT_LOG_CLIENT),
            dead_letter_queue_url=dlq,
            sqs_client=boto3.client("sqs", config=EVENT_LOG_CLIENT) if dlq else None,
        )
    if handler == "invocation":
        from abtest.adapters.sagemaker import SageMakerModelEndpoint

        # One try, bounded: a hung model is the documented 502, not a Lambda timeout.
        model_timeout = _number(environ, "MODEL_TIMEOUT_SECONDS", DEFAULT_MODEL_TIMEOUT_SECONDS)
        models = SageMakerModelEndpoint(
            client=boto3.client(
                "sagemaker-runtime", config=_client_config(1.0, model_timeout, attempts=1)
            )
        )
    if handler == "register":
        from abtest.adapters.sagemaker import SageMakerEndpointCatalog

        catalog = SageMakerEndpointCatalog(client=boto3.client("sagemaker"))
    return Service(
        store,
        events=events,
        models=models,
        catalog=catalog,
        settings=settings(environ),
        telemetry=EmfTelemetry(metrics),
    )
