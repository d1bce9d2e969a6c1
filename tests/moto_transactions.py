"""moto's DynamoDB transactions with their rollback snapshot taken once per table.

To undo a cancelled TransactWriteItems, moto (5.2) deep-copies the table of each of its
items before running any, so a transaction of two items on one table copies that table
twice and keeps the second copy. The product's transactions are two items on the metrics
table (the counts and the object's record, or an update and its audit entry), and that
table grows by two records per aggregated object: the copies were a fifth of the
fault-injection test's profile (10 of 54 s under cProfile). Nothing changes the tables
between those copies, so handing every item of one table the same copy restores exactly
what moto's own code restores (`tests/test_moto_transactions.py` checks it).
"""

from __future__ import annotations

import copy
import threading
import types
from collections.abc import Callable
from typing import Any

import pytest
from moto.dynamodb import models
from moto.dynamodb.models.table import Table

_taken = threading.local()  # this thread's transaction's copies, by id of the table copied


def _deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """copy.deepcopy, but a table already copied in this transaction gets that copy."""
    copies: dict[int, Any] | None = getattr(_taken, "copies", None)
    if copies is None or not isinstance(value, Table):
        return copy.deepcopy(value, memo)
    if id(value) not in copies:
        copies[id(value)] = copy.deepcopy(value, memo)
    return copies[id(value)]


def _once_per_table(transact: Callable[..., Any]) -> Callable[..., Any]:
    def transact_write_items(self: models.DynamoDBBackend, *args: Any, **kwargs: Any) -> Any:
        _taken.copies = {}
        try:
            return transact(self, *args, **kwargs)
        finally:
            _taken.copies = None

    return transact_write_items


def copy_each_table_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Patch moto's DynamoDB backend for the test `monkeypatch` belongs to."""
    patched_copy = types.SimpleNamespace(**{**vars(copy), "deepcopy": _deepcopy})
    monkeypatch.setattr(models, "copy", patched_copy)
    original = models.DynamoDBBackend.transact_write_items
    monkeypatch.setattr(models.DynamoDBBackend, "transact_write_items", _once_per_table(original))
