"""The suite's moto keeps DynamoDB's transaction semantics with one snapshot per table
(`tests/moto_transactions.py`): a cancelled transaction leaves every table as it was."""

from __future__ import annotations

import copy
import types
from typing import Any

import boto3
import pytest
from moto.dynamodb.models.table import Table

from tests import moto_transactions

TABLES = ("first", "second")


@pytest.fixture
def dynamodb(fake_aws: None) -> Any:
    client = boto3.client("dynamodb")
    for table in TABLES:
        client.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        for n in range(3):
            client.put_item(TableName=table, Item={"id": {"S": f"i{n}"}, "count": {"N": "1"}})
    return client


def everything(client: Any) -> dict[str, list[dict[str, Any]]]:
    return {
        table: sorted(client.scan(TableName=table)["Items"], key=lambda item: item["id"]["S"])
        for table in TABLES
    }


def increment(table: str, key: str) -> dict[str, Any]:
    return {
        "Update": {
            "TableName": table,
            "Key": {"id": {"S": key}},
            "UpdateExpression": "ADD #c :one",
            "ExpressionAttributeNames": {"#c": "count"},
            "ExpressionAttributeValues": {":one": {"N": "1"}},
        }
    }


def writes_to_both_tables() -> list[dict[str, Any]]:
    """A put, an update and a delete on the first table, an update on the second."""
    return [
        {"Put": {"TableName": "first", "Item": {"id": {"S": "new"}, "count": {"N": "7"}}}},
        increment("first", "i0"),
        {"Delete": {"TableName": "first", "Key": {"id": {"S": "i1"}}}},
        increment("second", "i2"),
    ]


def test_a_cancelled_transaction_leaves_every_table_as_it_was(dynamodb, monkeypatch) -> None:
    # GIVEN two tables, and a count of the tables the transaction's snapshot copies
    before = everything(dynamodb)
    copied: list[Any] = []

    def counted(value: Any, memo: Any = None) -> Any:
        copied.append(value)
        return copy.deepcopy(value, memo)

    spy = types.SimpleNamespace(deepcopy=counted)
    monkeypatch.setattr(moto_transactions, "copy", spy)
    # WHEN a transaction writes to both, and its last item's condition fails
    failing = {
        "ConditionCheck": {
            "TableName": "second",
            "Key": {"id": {"S": "i0"}},
            "ConditionExpression": "attribute_not_exists(id)",
        }
    }
    with pytest.raises(dynamodb.exceptions.TransactionCanceledException) as cancelled:
        dynamodb.transact_write_items(TransactItems=[*writes_to_both_tables(), failing])
    # THEN it was cancelled for that item, and both tables hold what they held
    reasons = [r["Code"] for r in cancelled.value.response["CancellationReasons"]]
    assert reasons == ["None"] * 4 + ["ConditionalCheckFailed"]
    assert everything(dynamodb) == before
    # AND each table was copied once, not once per item
    assert sum(isinstance(value, Table) for value in copied) == len(TABLES)


def test_a_transaction_that_succeeds_writes_every_item(dynamodb) -> None:
    dynamodb.transact_write_items(TransactItems=writes_to_both_tables())
    after = everything(dynamodb)
    assert [item["id"]["S"] for item in after["first"]] == ["i0", "i2", "new"]
    assert after["first"][0]["count"] == {"N": "2"}
    assert after["first"][2]["count"] == {"N": "7"}
    assert after["second"][2]["count"] == {"N": "2"}
