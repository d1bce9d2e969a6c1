"""The suite's moto answers every request as moto's own serializer does
(`tests/moto_serializer.py`): the same bytes for the same result, whatever its shape."""

from __future__ import annotations

import random
import types
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

import boto3
import pytest
from botocore import xform_name
from botocore.model import OperationModel, Shape, StructureShape
from moto import mock_aws
from moto.core.model import ServiceModel
from moto.core.serialize import (
    XFormedAttributePicker,
    get_serializer_class,
)
from moto.core.utils import get_service_model

from tests import moto_serializer
from tests.conftest import MOTO_CONFIG

# Every protocol moto serializes the product's services in, and one service more for each
# protocol they do not use (query for IAM, rest-json for Lambda, CBOR for CloudWatch; EC2's
# own protocol, a query one, would double the test's time).
SERVICES = {
    "dynamodb": ["json"],
    "firehose": ["json"],
    "sqs": ["json", "query"],
    "s3": ["rest-xml"],
    "sagemaker": ["json"],
    "iam": ["query"],
    "lambda": ["rest-json"],
    "cloudwatch": ["smithy-rpc-v2-cbor"],
}
EXAMPLES = 3  # random results per operation and protocol
DEPTH = 4  # deeper than this, a recursive shape (an AttributeValue's M and L) stops


class Table(dict):
    """A dict whose class name prefixes member names (`TableName` may be found as `Name`,
    moto's ClassPrefixAlias) and with aliases of its own (its ExplicitAlias)."""

    class Meta:
        serialization_aliases: ClassVar[dict[str, str]] = {"TableName": "title", "Items": "rows"}


def spellings(name: str, shape: Shape, parent: StructureShape) -> list[str]:
    """The keys moto may find a member under: its name, its shape's name, snake_case,
    without the structure's or a class's prefix."""
    names = [name, xform_name(name), shape.name, xform_name(shape.name)]
    for prefix in (parent.name, "Table", "dict"):
        if name.lower().startswith(prefix.lower()) and len(name) > len(prefix):
            names.append(name[len(prefix) :])
    if name in Table.Meta.serialization_aliases:
        names.append(Table.Meta.serialization_aliases[name])
    if "name" in shape.serialization:
        names.append(shape.serialization["name"])
    return names


def sample(shape: Shape, rng: random.Random, depth: int = 0) -> Any:
    """A random value of `shape`, its structures spelled the ways moto reads them."""
    kind = shape.type_name
    if kind == "structure":
        return sample_structure(shape, rng, depth)
    if kind == "list":
        count = rng.randint(0, 2) if depth < DEPTH else 0
        return [sample(shape.member, rng, depth + 1) for _ in range(count)]
    if kind == "map":
        count = rng.randint(0, 2) if depth < DEPTH else 0
        return {f"k{n}": sample(shape.value, rng, depth + 1) for n in range(count)}
    if kind == "string":
        return rng.choice(shape.enum or ["", "plain", "a.dotted.value", "ünï"])
    if kind in ("integer", "long"):
        return rng.choice([0, 7, -3, 2**40])
    if kind == "boolean":
        return rng.choice([True, False])
    if kind in ("float", "double"):
        return rng.choice([0.5, 3.0, -1.25, Decimal("2.5")])
    if kind == "timestamp":
        return datetime(2026, 1, 2, 3, 4, 5, rng.choice([0, 123000]), tzinfo=UTC)
    if kind == "blob":
        return rng.choice([b"", b"\x00bytes", "text"])
    return rng.choice(["x", 1])


def sample_structure(shape: StructureShape, rng: random.Random, depth: int) -> Any:
    if shape.is_document_type:
        return {"any": [1, "two"]}
    if depth > DEPTH:
        return None
    fields: dict[str, Any] = {}
    for name, member in shape.members.items():
        if rng.random() < 0.3:
            continue
        keys = spellings(name, member, shape)
        # sometimes two spellings at once, with different values: moto's order decides
        for key in rng.sample(keys, k=min(len(keys), rng.choice([1, 1, 2]))):
            fields[key] = None if rng.random() < 0.05 else sample(member, rng, depth + 1)
    kind = rng.random()
    if kind < 0.15:
        return types.SimpleNamespace(**{xform_name(k): v for k, v in fields.items()})
    if kind < 0.3:
        return Table(fields)
    return fields


def serialize(
    protocol: str, operation: OperationModel, result: Any, transformers: dict[str, Any] | None
) -> Any:
    service = operation.service_model.service_name
    serializer_class = get_serializer_class(service, protocol)
    picker = XFormedAttributePicker(response_transformers=transformers)
    serializer = serializer_class(operation_model=operation, value_picker=picker)
    try:
        return serializer.serialize(result)
    except Exception as error:  # the same failure is the same answer
        return ("raised", type(error), str(error))


def cases() -> Iterator[tuple[str, str, OperationModel, int]]:
    for service, protocols in SERVICES.items():
        model = get_service_model(service)
        for protocol in protocols:
            for name in model.operation_names:
                for seed in range(EXAMPLES):
                    yield service, protocol, model.operation_model(name), seed


def answers(patched: bool, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every case's result serialized, with moto's own get_value or the suite's."""
    with monkeypatch.context() as patch:
        if patched:
            moto_serializer.resolve_member_keys_once(patch)
        out = []
        for service, protocol, operation, seed in cases():
            rng = random.Random(f"{service} {protocol} {operation.name} {seed}")
            output = operation.output_shape
            result = sample(output, rng) if output is not None else None
            transformers = {"Marker": str.upper} if seed == 2 else None
            out.append(serialize(protocol, operation, result, transformers))
        return out


def test_every_operation_answers_the_same_bytes_as_moto(monkeypatch) -> None:
    # GIVEN random results for every operation of eight services, in their protocols
    # WHEN moto's own serializer and the suite's serialize them (the latter twice: the
    # first time resolves the keys, the second reads what it kept)
    moto = answers(patched=False, monkeypatch=monkeypatch)
    moto_serializer._keys.clear()
    first = answers(patched=True, monkeypatch=monkeypatch)
    again = answers(patched=True, monkeypatch=monkeypatch)
    # THEN every answer is the same: status, headers and body
    assert len(moto) > 2500
    assert sum(isinstance(answer, tuple) for answer in moto) < len(moto) / 10
    for ours in (first, again):
        different = [n for n, (a, b) in enumerate(zip(moto, ours, strict=True)) if a != b]
        assert different == []


# A model of moto's corner cases, built afresh for each serializer: a member whose wire
# name has a dot (moto reads a dotted key as a path into the result), a member its
# structure's name prefixes (moto also looks for it without that prefix, knowing the
# structure only once its loop has marked it), a document (passed as it is).
SYNTHETIC: dict[str, Any] = {
    "metadata": {
        "protocol": "json",
        "jsonVersion": "1.0",
        "targetPrefix": "Synthetic",
        "serviceId": "Synthetic",
        "endpointPrefix": "synthetic",
        "apiVersion": "2026-01-01",
    },
    "operations": {
        "Read": {
            "name": "Read",
            "http": {"method": "POST", "requestUri": "/"},
            "output": {"shape": "ReadOutput"},
        }
    },
    "shapes": {
        "ReadOutput": {
            "type": "structure",
            "members": {
                "Plain": {"shape": "Text"},
                "Nested": {"shape": "Text", "locationName": "outer.inner"},
                "Table": {"shape": "Table"},
                "Doc": {"shape": "Document"},
            },
        },
        "Table": {"type": "structure", "members": {"TableName": {"shape": "Text"}}},
        "Document": {"type": "structure", "members": {}, "document": True},
        "Text": {"type": "string"},
    },
}


@pytest.mark.parametrize(
    "result",
    [
        {"Plain": "p", "outer": {"inner": "read through the path"}},
        {"Plain": "p", "outer.inner": "not a path: moto does not find it"},
        {"Plain": "p", "Nested": "by its name"},
        {"Table": {"Name": "without its structure's name"}},
        {"Table": {"TableName": "full", "Name": "short"}},
        {"Doc": {"any": ["json", 1, None]}},
    ],
)
def test_a_synthetic_corner_case_is_read_as_moto_reads_it(result, monkeypatch) -> None:
    # GIVEN a result of the synthetic model, and a fresh copy of the model for each side
    # WHEN the suite's serializer serializes it (twice), then moto's own
    with monkeypatch.context() as patch:
        moto_serializer.resolve_member_keys_once(patch)
        operation = ServiceModel(SYNTHETIC, "synthetic").operation_model("Read")
        ours = [serialize("json", operation, result, None) for _ in range(2)]
    operation = ServiceModel(SYNTHETIC, "synthetic").operation_model("Read")
    moto = serialize("json", operation, result, None)
    # THEN each answer is moto's, and a body
    assert not isinstance(moto, tuple)
    assert ours == [moto, moto]


def test_a_dict_subclass_is_read_by_its_own_aliases_as_moto_reads_it(monkeypatch) -> None:
    # GIVEN DescribeTable's answer, its table a plain dict, then a Table (moto finds its
    # TableName as `title`, its Meta alias, or as `Name`, without the class's name)
    operation = get_service_model("dynamodb").operation_model("DescribeTable")
    spelled = [{"title": "meta"}, {"Name": "short"}, {"TableName": "full", "title": "both"}]
    tables = [kind(fields) for fields in spelled for kind in (dict, Table, dict)]
    results = [{"Table": table} for table in tables]
    # WHEN moto's own serializer and the suite's serialize them, in that order
    moto = [serialize("json", operation, result, None) for result in results]
    with monkeypatch.context() as patch:
        moto_serializer.resolve_member_keys_once(patch)
        ours = [serialize("json", operation, result, None) for result in results]
    # THEN each answer is moto's, and the subclass's aliases were read
    assert ours == moto
    assert '"TableName": "meta"' in moto[1]["body"]
    assert '"TableName": "short"' in moto[4]["body"]


ITEM = {
    "id": {"S": "item"},
    "n": {"N": "12.50"},
    "b": {"B": b"\x00\x01"},
    "flag": {"BOOL": True},
    "nothing": {"NULL": True},
    "names": {"SS": ["a", "b"]},
    "numbers": {"NS": ["1", "2.5"]},
    "blobs": {"BS": [b"x", b"y"]},
    "list": {"L": [{"S": "one"}, {"N": "2"}, {"M": {"deep": {"L": [{"BOOL": False}]}}}]},
    "map": {"M": {"L": {"S": "a key named L"}, "M": {"M": {}}, "S": {"SS": ["z"]}}},
}


def table_with_item() -> Any:
    """A DynamoDB client, and table "t" holding ITEM."""
    client = boto3.client("dynamodb")
    client.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.put_item(TableName="t", Item=ITEM)
    return client


def dynamodb_answers() -> list[Any]:
    """What a client reads back from a DynamoDB table holding every type, nested."""
    client = table_with_item()
    client.put_item(TableName="t", Item={"id": {"S": "other"}, "n": {"N": "1"}})
    calls: list[Callable[[], Any]] = [
        lambda: client.get_item(TableName="t", Key={"id": {"S": "item"}}),
        lambda: client.scan(TableName="t"),
        lambda: client.query(
            TableName="t",
            KeyConditionExpression="id = :id",
            ExpressionAttributeValues={":id": {"S": "item"}},
        ),
        lambda: client.batch_get_item(RequestItems={"t": {"Keys": [{"id": {"S": "item"}}]}}),
        lambda: client.update_item(
            TableName="t",
            Key={"id": {"S": "item"}},
            UpdateExpression="SET #m.#l = :v",
            ExpressionAttributeNames={"#m": "map", "#l": "L"},
            ExpressionAttributeValues={":v": {"L": [{"NULL": True}]}},
            ReturnValues="ALL_NEW",
        ),
        lambda: client.describe_table(TableName="t")["Table"]["KeySchema"],
    ]
    out = [call() for call in calls]
    try:
        client.transact_write_items(
            TransactItems=[
                {
                    "ConditionCheck": {
                        "TableName": "t",
                        "Key": {"id": {"S": "item"}},
                        "ConditionExpression": "attribute_not_exists(id)",
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    }
                }
            ]
        )
    except client.exceptions.TransactionCanceledException as cancelled:
        out.append(cancelled.response["CancellationReasons"])
    for answer in out:
        if isinstance(answer, dict):
            answer.pop("ResponseMetadata", None)
    return out


def test_a_client_reads_the_same_dynamodb_items_as_from_moto(aws_credentials, monkeypatch) -> None:
    # GIVEN a table holding an item of every attribute type, nested in maps and lists
    # WHEN a client reads it back through moto's own serializer, then through the suite's
    with mock_aws(config=MOTO_CONFIG):
        moto = dynamodb_answers()
    with monkeypatch.context() as patch, mock_aws(config=MOTO_CONFIG):
        moto_serializer.resolve_member_keys_once(patch)
        ours = dynamodb_answers()
    # THEN it reads the same, and the item as it was written
    assert ours == moto
    assert moto[0]["Item"] == ITEM
    assert moto[-1][0]["Item"]["map"]["M"]["L"] == {"L": [{"NULL": True}]}


def test_a_dict_member_is_resolved_once_then_read(fake_aws, monkeypatch) -> None:
    # GIVEN the suite's fake AWS, a table and an item, read once
    client = table_with_item()
    client.get_item(TableName="t", Key={"id": {"S": "item"}})
    asked: list[str] = []
    original = XFormedAttributePicker.get_possible_keys

    def counted(self: XFormedAttributePicker, context: Any) -> Any:
        asked.append(context.key)
        return original(self, context)

    monkeypatch.setattr(XFormedAttributePicker, "get_possible_keys", counted)
    # WHEN it is read again
    again = client.get_item(TableName="t", Key={"id": {"S": "item"}})
    # THEN the same item comes back, and moto's alias providers were not asked again
    assert again["Item"] == ITEM
    assert asked == []
