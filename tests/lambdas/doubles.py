"""The Lambda handlers, imported once, over moto (`fake_aws`): DynamoDB, Firehose -> S3, SQS,
SageMaker; with their environment, SageMaker endpoints and AWS events.

Only the SageMaker runtime is replaced, at the client the adapter calls, because moto's runtime
ignores TargetVariant.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import sys
from types import SimpleNamespace
from urllib.parse import quote_plus

import boto3
import pytest

from abtest.adapters.dynamodb import create_tables
from abtest.adapters.sagemaker import SageMakerModelEndpoint
from abtest.http.routes import ALL_ROUTES
from tests.api_gateway import REGION

ENDPOINT = "abtest-reviews-dev"
VARIANTS = ("Champion1", "Challenger1")
HANDLERS = ("metrics", "register")


class FakeRuntime:
    """sagemaker-runtime's invoke_endpoint: answers with the variant that served."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.failing: set[str] = set()

    def invoke_endpoint(self, **params):
        from botocore.exceptions import ClientError

        self.calls.append(params)
        variant = params.get("TargetVariant") or VARIANTS[0]
        if variant in self.failing:
            raise ClientError(
                {"Error": {"Code": "ModelError", "Message": "Received server error (500)"}},
                "InvokeEndpoint",
            )
        body = json.dumps({"predictions": [{"label": 1, "variant": variant}]}).encode()
        return {
            "Body": io.BytesIO(body),
            "ContentType": "application/json",
            "InvokedProductionVariant": variant,
        }


# The handlers' environment at cold start, as the stack sets it (and Lambda adds credentials).
ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "ASSIGNMENT_TABLE": "abtest-assignment-test",
    "METRICS_TABLE": "abtest-metrics-test",
    "DELIVERY_STREAM_NAME": "abtest-events-test",
    "DEAD_LETTER_QUEUE_URL": f"https://sqs.{REGION}.amazonaws.com/123456789012/abtest-dlq-test",
    "ENDPOINT_PREFIX": "abtest-",
    "REJECTED_PREFIX": "rejected/",
    "METRICS_CACHE_SECONDS": "0",
    "POWERTOOLS_METRICS_NAMESPACE": "abtest-test",
}


@pytest.fixture(scope="session")
def handlers():
    """The handler modules, imported once: cold start builds their clients, as on Lambda.

    Moto intercepts every botocore client while a mock is active, so the clients built
    here talk to each test's fresh moto state.
    """
    saved = {name: os.environ.get(name) for name in (*ENVIRONMENT, "ROUTE")}
    os.environ.update(ENVIRONMENT)
    modules = {name: cold_start(f"lambdas.{name}") for name in HANDLERS}
    for route in (r.name for r in ALL_ROUTES):  # one function per route, its own ROUTE
        os.environ["ROUTE"] = route
        modules[route] = cold_start("lambdas.api")
    yield modules
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def aws(handlers, fake_aws, monkeypatch):
    """Fresh moto state with the stack's resources (METRICS_CACHE_SECONDS=0: nothing cached)."""
    create_tables(boto3.client("dynamodb"), "abtest-assignment-test", "abtest-metrics-test")
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="abtest-events-test")
    boto3.client("firehose").create_delivery_stream(
        DeliveryStreamName="abtest-events-test",
        DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration={
            "RoleARN": "arn:aws:iam::123456789012:role/firehose",
            "BucketARN": "arn:aws:s3:::abtest-events-test",
            "Prefix": "events/",
            "ErrorOutputPrefix": "firehose-errors/",
        },
    )
    queue = boto3.client("sqs").create_queue(QueueName="abtest-dlq-test")["QueueUrl"]
    assert queue == ENVIRONMENT["DEAD_LETTER_QUEUE_URL"]
    # The modules outlive a test, as a warm container outlives a request: each test starts
    # with empty endpoint caches, as a new container does (the fallback serves by what the
    # cache last read, and an earlier test's moto state is gone).
    for module in handlers.values():
        endpoints = vars(module.ports).get("endpoints")
        if endpoints is not None:
            monkeypatch.setattr(endpoints, "_entries", {})
            monkeypatch.setattr(endpoints, "_recounted", set())
    runtime = FakeRuntime()
    monkeypatch.setattr(
        handlers["invocation"].use_case, "models", SageMakerModelEndpoint(client=runtime)
    )
    return SimpleNamespace(runtime=runtime, s3=s3, queue=queue, **handlers)


def store_unreachable(aws, monkeypatch) -> None:
    """The invocation function's DynamoDB gone: every call refused at a closed local port."""
    from botocore.config import Config

    from abtest.adapters.dynamodb import DynamoDBStore

    dead = boto3.client(
        "dynamodb",
        endpoint_url="http://127.0.0.1:9",
        config=Config(connect_timeout=0.2, read_timeout=0.2, retries={"max_attempts": 1}),
    )
    down = DynamoDBStore("a", "m", client=dead)
    monkeypatch.setattr(aws.invocation.use_case, "store", down)
    monkeypatch.setattr(aws.invocation.use_case.endpoints, "store", down)


def cold_start(module: str):
    """A fresh import of `module`, as a new Lambda container does; not left in sys.modules."""
    sys.modules.pop(module, None)
    try:
        return importlib.import_module(module)
    finally:
        sys.modules.pop(module, None)


def create_endpoint(tags: dict[str, str], variants=VARIANTS, name: str = ENDPOINT) -> None:
    sagemaker = boto3.client("sagemaker")
    role = "arn:aws:iam::123456789012:role/sagemaker"
    production = []
    for variant in variants:
        sagemaker.create_model(
            ModelName=f"{name}-{variant}",
            ExecutionRoleArn=role,
            PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/m:1"},
        )
        production.append(
            {
                "VariantName": variant,
                "ModelName": f"{name}-{variant}",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.t2.medium",
                "InitialVariantWeight": 1.0,
            }
        )
    config_name = f"{name}-config-{len(variants)}-{'-'.join(variants)}"
    sagemaker.create_endpoint_config(EndpointConfigName=config_name, ProductionVariants=production)
    existing = [e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]]
    if name in existing:  # moto has no UpdateEndpoint: the same name, redeployed
        sagemaker.delete_endpoint(EndpointName=name)
    sagemaker.create_endpoint(
        EndpointName=name,
        EndpointConfigName=config_name,
        Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
    )


def state_change(name: str, status: str) -> dict:
    return {
        "version": "0",
        "id": "event",
        "detail-type": "SageMaker Endpoint State Change",
        "source": "aws.sagemaker",
        "account": "123456789012",
        "region": REGION,
        "resources": [f"arn:aws:sagemaker:{REGION}:123456789012:endpoint/{name}"],
        "detail": {"EndpointName": name, "EndpointStatus": status},
    }


def s3_event(bucket: str, keys: list[str]) -> dict:
    return {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(key, safe="/")}},
            }
            for key in keys
        ]
    }
