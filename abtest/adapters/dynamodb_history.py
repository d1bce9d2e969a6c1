"""The History port as items in the DynamoDB metrics table, beside the endpoint items.

  #history#{endpoint}                     the counter: `latest`, the last snapshot's number
  #history#{endpoint}#{seq}               a snapshot (`snapshot`: JSON)
  #history#{endpoint}#object#{object_key} the object that left a snapshot (expires like the
                                          table's `#object#` idempotency records)

No item has `variants`, so the store never takes one for an endpoint (`#` cannot occur in
an endpoint name, so no key clashes with one). Writing is one transaction: the object's
marker (absent), the counter (as read), the snapshot and the deletes `thinned_by` names.
Reading needs no query: the kept numbers follow from the counter (`kept_seqs`), fetched
with BatchGetItem.
"""

from __future__ import annotations

from typing import Any

from abtest.adapters.dynamodb import (
    MAX_ATTEMPTS,
    OBJECT_RECORD_TTL_SECONDS,
    _backoff,
    _n,
    _num,
    _transact,
    _translated,
)
from abtest.errors import StoreUnavailableError
from abtest.history import Snapshot, kept_seqs, thinned_by

PREFIX = "#history#"
BATCH_GET_KEYS = 100  # BatchGetItem's limit per request


def _key(text: str) -> dict[str, Any]:
    return {"endpoint_name": {"S": text}}


class DynamoDBHistory:
    """`abtest.history.History` on the metrics table."""

    def __init__(self, metrics_table: str, *, client: Any) -> None:
        self.metrics_table = metrics_table
        self.client = client

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        with _translated():
            return getattr(self.client, operation)(**kwargs)

    def _latest(self, endpoint_name: str, *, consistent: bool) -> int | None:
        item = self._call(
            "get_item",
            TableName=self.metrics_table,
            Key=_key(PREFIX + endpoint_name),
            ConsistentRead=consistent,
        ).get("Item")
        return None if item is None else int(_num(item["latest"]))

    def record_snapshot(self, snapshot: Snapshot, object_key: str, now: float) -> bool:
        name = snapshot.endpoint_name
        counter = PREFIX + name
        marker = {
            "Put": {
                "TableName": self.metrics_table,
                "Item": {
                    **_key(f"{counter}#object#{object_key}"),
                    "ttl": _n(int(now) + OBJECT_RECORD_TTL_SECONDS),
                },
                "ConditionExpression": "attribute_not_exists(endpoint_name)",
            }
        }
        for attempt in range(MAX_ATTEMPTS):
            latest = self._latest(name, consistent=True)
            seq = (latest or 0) + 1
            if latest is None:
                count: dict[str, Any] = {
                    "Put": {
                        "TableName": self.metrics_table,
                        "Item": {**_key(counter), "latest": _n(seq)},
                        "ConditionExpression": "attribute_not_exists(endpoint_name)",
                    }
                }
            else:
                count = {
                    "Update": {
                        "TableName": self.metrics_table,
                        "Key": _key(counter),
                        "UpdateExpression": "SET latest = :seq",
                        "ConditionExpression": "latest = :read",
                        "ExpressionAttributeValues": {":seq": _n(seq), ":read": _n(latest)},
                    }
                }
            item = {**_key(f"{counter}#{seq}"), "snapshot": {"S": snapshot.to_json()}}
            actions = [
                marker,
                count,
                {"Put": {"TableName": self.metrics_table, "Item": item}},
                *(
                    {"Delete": {"TableName": self.metrics_table, "Key": _key(f"{counter}#{s}")}}
                    for s in thinned_by(seq)
                ),
            ]
            written = _transact(self._call, actions, attempt)
            if written is not None:
                return written  # False: this object's snapshot is there already
            # another writer moved the counter in between: read it again
        raise StoreUnavailableError(f"history of {name} contended")

    def snapshots(self, endpoint_name: str, limit: int) -> list[Snapshot]:
        latest = self._latest(endpoint_name, consistent=False)
        if latest is None:
            return []
        wanted = kept_seqs(latest, limit)
        found: dict[int, str] = {}
        for start in range(0, len(wanted), BATCH_GET_KEYS):
            keys = [
                _key(f"{PREFIX}{endpoint_name}#{s}") for s in wanted[start : start + BATCH_GET_KEYS]
            ]
            request = {self.metrics_table: {"Keys": keys}}
            for attempt in range(MAX_ATTEMPTS):
                answer = self._call("batch_get_item", RequestItems=request)
                for item in answer["Responses"].get(self.metrics_table, []):
                    seq = int(item["endpoint_name"]["S"].rpartition("#")[2])
                    found[seq] = item["snapshot"]["S"]
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    break
                _backoff(attempt)
            else:
                raise StoreUnavailableError(f"history of {endpoint_name}: reads throttled")
        # A snapshot written after the counter was read, or not yet visible, is left out.
        return [Snapshot.from_json(endpoint_name, s, found[s]) for s in sorted(found)]
