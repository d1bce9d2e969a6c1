"""The Lambda handlers, imported once, over the fake AWS holding the stack's resources."""

from __future__ import annotations

import importlib
import os
import sys
from types import SimpleNamespace

import boto3
import pytest

from abtest.adapters.dynamodb import create_tables
from abtest.adapters.sagemaker import SageMakerModelEndpoint
from tests.lambdas.doubles import ENVIRONMENT, HANDLERS, FakeRuntime


@pytest.fixture(scope="session")
def handlers():
    """The handler modules, imported once: cold start builds their clients, as on Lambda.

    Moto intercepts every botocore client while a mock is active, so the clients built
    here talk to each test's fresh moto state.
    """
    saved = {name: os.environ.get(name) for name in ENVIRONMENT}
    os.environ.update(ENVIRONMENT)
    for name in HANDLERS:
        sys.modules.pop(f"lambdas.{name}", None)
    yield {name: importlib.import_module(f"lambdas.{name}") for name in HANDLERS}
    for name in HANDLERS:
        sys.modules.pop(f"lambdas.{name}", None)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def aws(handlers, fake_aws, monkeypatch):
    """Fresh moto state with the stack's resources, and the handlers with empty caches."""
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
    runtime = FakeRuntime()
    for module in handlers.values():
        if hasattr(module, "service"):
            monkeypatch.setattr(module.service, "_cache", {})
    monkeypatch.setattr(
        handlers["invocation"].service, "models", SageMakerModelEndpoint(client=runtime)
    )
    return SimpleNamespace(runtime=runtime, s3=s3, queue=queue, **handlers)
