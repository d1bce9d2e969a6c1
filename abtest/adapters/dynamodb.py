"""The Store on two DynamoDB tables, through the low-level boto3 client.

Assignment table (key user_id, endpoint_name; TTL `ttl`): one item per user and
endpoint, plus conversion markers keyed `{endpoint_name}#conversion#{inference_id}`
(attribute `counted_by`: the event object whose aggregation counted the conversion).

Metrics table (key endpoint_name; TTL `ttl`): one item per endpoint, with the
variants as a map name -> {initial_variant_weight, position, and each counter of
`abtest.records.COUNTERS`}, and the experiment settings as one JSON string `settings`
(absent on items written before them: the defaults). Counters change only by atomic
increments, which start a counter the item does not have yet at 0; registration edits
the variants in place (never rewriting the item), so it cannot overwrite an increment
that lands at the same time.
Idempotency records of aggregated objects live in the same table, keyed
`#object#{object_key}` (SageMaker endpoint names cannot contain `#`), and so do
audit logs, keyed `#audit#{endpoint_name}` (attribute `entries`: a list of JSON
strings). An endpoint's `lifecycle` is a JSON string attribute of its item,
changed only by a conditional write on its previous value.

Expired items count as absent: DynamoDB deletes on TTL lazily, up to days late.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from abtest.config_types import ExperimentSettings
from abtest.errors import StoreUnavailableError
from abtest.events import CONVERSION
from abtest.lifecycle import AUDIT_RETENTION, AuditEntry, Lifecycle, registration_entries
from abtest.records import (
    ACTIVE,
    COUNTERS,
    DELETED,
    Assignment,
    CountsByEndpoint,
    Endpoint,
    EndpointConfig,
    EventKey,
    Figures,
    StrategyParams,
    VariantConfig,
    VariantCounters,
    VariantCounts,
    params_from_epsilon,
)

logger = logging.getLogger("abtest")

Item = dict[str, Any]

OBJECT_PREFIX = "#object#"
AUDIT_PREFIX = "#audit#"
OBJECT_RECORD_TTL_SECONDS = 30 * 24 * 3600
# TransactWriteItems takes at most 100 actions: one idempotency record + one update per endpoint.
ENDPOINTS_PER_TRANSACTION = 99
# Counter increments in one UpdateItem: each is some 75 characters of expression, and an
# expression may take 4 KB, so an endpoint whose variants move more counters in one object
# (many variants, each with many latency buckets) is updated in several transactions.
MAX_INCREMENTS_PER_UPDATE = 40
# Parallel conditional writes when aggregation claims an object's conversions.
CLAIM_THREADS = 8
# Attempts for writes that lose an optimistic race (registration, aggregation) before giving up.
MAX_ATTEMPTS = 6

_UNAVAILABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)
# Why a transaction was cancelled, when trying again can succeed ("None": that action was fine).
_RETRYABLE_CANCELLATIONS = frozenset(
    {
        "None",
        "ConditionalCheckFailed",
        "TransactionConflict",
        "ThrottlingError",
        "ProvisionedThroughputExceeded",
    }
)
# Errors the store's own methods expect and act on (a lost race, a repeat).
_HANDLED_BY_CALLER = frozenset({"ConditionalCheckFailedException", "TransactionCanceledException"})
_NOT_EXPIRED = "attribute_not_exists(user_id) OR #ttl <= :now"


class DynamoDBStore:
    """Store adapter over the assignment and metrics tables."""

    def __init__(self, assignment_table: str, metrics_table: str, *, client: Any) -> None:
        """`client` is a boto3 DynamoDB client (the wiring chooses its timeouts)."""
        self.assignment_table = assignment_table
        self.metrics_table = metrics_table
        self.client = client

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        with _translated():
            return getattr(self.client, operation)(**kwargs)

    # -- assignments -------------------------------------------------------

    def get_assignment(self, endpoint_name: str, user_id: str, now: float) -> Assignment | None:
        item = self._call(
            "get_item",
            TableName=self.assignment_table,
            Key={"user_id": {"S": user_id}, "endpoint_name": {"S": endpoint_name}},
        ).get("Item")
        if item is None or _num(item["ttl"]) <= now:
            return None
        return _assignment(item)

    def create_assignment(self, assignment: Assignment, now: float) -> Assignment:
        a = assignment
        item = {
            "user_id": {"S": a.user_id},
            "endpoint_name": {"S": a.endpoint_name},
            "variant_name": {"S": a.variant_name},
            "strategy": {"S": a.strategy},
            "propensity": _n(a.propensity),
            "assigned_at": _n(a.assigned_at),
            "ttl": _n(a.ttl),
        }
        for _ in range(MAX_ATTEMPTS):
            try:
                self._call(
                    "put_item",
                    TableName=self.assignment_table,
                    Item=item,
                    ConditionExpression=_NOT_EXPIRED,
                    ExpressionAttributeNames={"#ttl": "ttl"},
                    ExpressionAttributeValues={":now": _n(now)},
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                return assignment
            except ClientError as error:
                if _code(error) != "ConditionalCheckFailedException":
                    raise
                # The failed condition hands back the winner; read it if it did not.
                winner = error.response.get("Item") or self._call(
                    "get_item",
                    TableName=self.assignment_table,
                    Key={"user_id": item["user_id"], "endpoint_name": item["endpoint_name"]},
                    ConsistentRead=True,
                ).get("Item")
                if winner is not None:
                    return _assignment(winner)
                # The winner expired and was deleted in between: try again.
        raise StoreUnavailableError(f"assignment of {a.user_id} on {a.endpoint_name} contended")

    def conversion_logged(
        self, endpoint_name: str, user_id: str, inference_id: str, now: float
    ) -> bool:
        item = self._call(
            "get_item",
            TableName=self.assignment_table,
            Key=_event_key(EventKey(endpoint_name, user_id, inference_id, CONVERSION)),
            ConsistentRead=True,  # a marker written a moment ago must be seen
        ).get("Item")
        return item is not None and _num(item["ttl"]) > now

    def mark_conversion_logged(
        self, endpoint_name: str, user_id: str, inference_id: str, ttl: int, now: float
    ) -> None:
        key = _event_key(EventKey(endpoint_name, user_id, inference_id, CONVERSION))
        try:
            # No condition on absence: botocore's retry after a lost response must succeed.
            self._call(
                "update_item",
                TableName=self.assignment_table,
                Key=key,
                UpdateExpression="SET #ttl = :ttl",
                ConditionExpression="attribute_not_exists(user_id) OR #ttl > :now",
                ExpressionAttributeNames={"#ttl": "ttl"},
                ExpressionAttributeValues={":ttl": _n(ttl), ":now": _n(now)},
            )
        except ClientError as error:
            if _code(error) != "ConditionalCheckFailedException":
                raise
            # An expired marker is a new conversion: replace it, old claim and all.
            self._call("put_item", TableName=self.assignment_table, Item={**key, "ttl": _n(ttl)})

    def claim_events(
        self, object_key: str, keys: Sequence[EventKey], ttl: int, now: float
    ) -> set[EventKey]:
        def claim(key: EventKey) -> bool:
            try:
                self._call(
                    "update_item",
                    TableName=self.assignment_table,
                    Key=_event_key(key),
                    UpdateExpression="SET counted_by = :object, #ttl = :ttl",
                    ConditionExpression=(
                        "attribute_not_exists(counted_by) OR counted_by = :object OR #ttl <= :now"
                    ),
                    ExpressionAttributeNames={"#ttl": "ttl"},
                    ExpressionAttributeValues={
                        ":object": {"S": object_key},
                        ":ttl": _n(ttl),
                        ":now": _n(now),
                    },
                )
            except ClientError as error:
                if _code(error) == "ConditionalCheckFailedException":
                    return False
                raise
            return True

        # Imported here: only aggregation claims, and the request path's cold start need not
        # pay for the thread pool's modules.
        from concurrent.futures import ThreadPoolExecutor

        # One conditional write per conversion (a transaction would fail whole on one
        # repeat); in parallel, since an object can hold thousands.
        with ThreadPoolExecutor(max_workers=CLAIM_THREADS) as pool:
            claimed = list(pool.map(claim, keys))
        return {key for key, ok in zip(keys, claimed, strict=True) if ok}

    # -- endpoints ---------------------------------------------------------

    def _endpoint_item(self, endpoint_name: str, *, consistent: bool) -> Item | None:
        item = self._call(
            "get_item",
            TableName=self.metrics_table,
            Key={"endpoint_name": {"S": endpoint_name}},
            ConsistentRead=consistent,
        ).get("Item")
        # Idempotency records share the table; only endpoint items have variants.
        return item if item is not None and "variants" in item else None

    def get_endpoint(self, endpoint_name: str) -> Endpoint | None:
        # Eventually consistent (half the cost): the service caches it for a while anyway.
        item = self._endpoint_item(endpoint_name, consistent=False)
        return _endpoint(item) if item is not None else None

    def register_endpoint(self, config: EndpointConfig, now: float) -> Endpoint:
        names = [v.name for v in config.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate variant names in {config.endpoint_name}: {names}")
        key = {"endpoint_name": {"S": config.endpoint_name}}
        for attempt in range(MAX_ATTEMPTS):
            current = self._endpoint_item(config.endpoint_name, consistent=True)
            try:
                if current is None:
                    item = _new_endpoint_item(config, now)
                    self._call(
                        "put_item",
                        TableName=self.metrics_table,
                        Item=item,
                        ConditionExpression="attribute_not_exists(endpoint_name)",
                    )
                    return _endpoint(item)
                stored = _endpoint(current)
                update = _reregistration(config, stored.variant_names, now)
                before = stored.lifecycle
                after = before.registered(tuple(names), stored.variant_names)
                if after is before:
                    item = self._call(
                        "update_item",
                        TableName=self.metrics_table,
                        Key=key,
                        ReturnValues="ALL_NEW",
                        **update,
                    )["Attributes"]
                    return _endpoint(item)
                # A variant the config dropped is retired: the lifecycle, pinned as read,
                # changes in the same transaction as the variants and the audit log.
                update["UpdateExpression"] = update["UpdateExpression"].replace(
                    "SET ", "SET lifecycle = :lifecycle, ", 1
                )
                update["ConditionExpression"] += " AND " + _lifecycle_is(before)
                update["ExpressionAttributeValues"] |= {
                    ":lifecycle": {"S": after.to_json()},
                    ":old": {"S": before.to_json()},
                }
                entries = registration_entries(before, after, now)
                actions = [
                    {"Update": {"TableName": self.metrics_table, "Key": key, **update}},
                    self._audit_put(config.endpoint_name, *entries),
                ]
                if _transact(self._call, actions, attempt):
                    return self._read_back(config.endpoint_name)
                continue  # None: backed off; False: the item changed meanwhile, read again
            except ClientError as error:
                if _code(error) != "ConditionalCheckFailedException":
                    raise
                _backoff(attempt)  # another registration changed the variants in between
        raise StoreUnavailableError(f"registration of {config.endpoint_name} contended")

    def _read_back(self, endpoint_name: str) -> Endpoint:
        item = self._endpoint_item(endpoint_name, consistent=True)
        assert item is not None  # just written
        return _endpoint(item)

    def deregister_endpoint(self, endpoint_name: str, now: float) -> None:
        try:
            self._call(
                "update_item",
                TableName=self.metrics_table,
                Key={"endpoint_name": {"S": endpoint_name}},
                UpdateExpression="SET #status = :deleted, updated_at = :now",
                ConditionExpression="attribute_exists(variants)",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":deleted": {"S": DELETED}, ":now": _n(now)},
            )
        except ClientError as error:
            if _code(error) != "ConditionalCheckFailedException":  # unknown endpoint: nothing to do
                raise

    def save_figures(self, endpoint_name: str, figures: Figures) -> bool:
        item = self._endpoint_item(endpoint_name, consistent=True)
        if item is None or _endpoint(item).basis != figures.basis:
            return False
        # Pinned to what the figures were worked out from, as read: an increment or a
        # registration in between fails the condition, and its writer saves its own.
        names: dict[str, str] = {}
        values: dict[str, Any] = {":figures": {"S": figures.to_json()}}
        conditions = []
        for i, attribute in enumerate(_FIGURES_BASIS):
            names[f"#b{i}"] = attribute
            if attribute in item:
                values[f":b{i}"] = item[attribute]
                conditions.append(f"#b{i} = :b{i}")
            else:
                conditions.append(f"attribute_not_exists(#b{i})")
        try:
            self._call(
                "update_item",
                TableName=self.metrics_table,
                Key={"endpoint_name": {"S": endpoint_name}},
                UpdateExpression="SET figures = :figures",
                ConditionExpression=" AND ".join(conditions),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if _code(error) != "ConditionalCheckFailedException":
                raise
            return False
        return True

    # -- aggregation -------------------------------------------------------

    def apply_counts(self, object_key: str, counts: CountsByEndpoint, now: float) -> bool:
        """One transaction per object, or per chunk of 99 endpoints if it holds more.

        Chunks follow the sorted endpoint names of `counts` (known or not), so a
        redelivered object splits the same way; each chunk has its own
        idempotency record `{object_key}#chunk{n}`. True if any chunk was new. An
        endpoint whose increments would not fit one update expression is split by its
        sorted variants into parts (`_parts`), its n-th part in the n-th round of chunks
        (a transaction cannot update one item twice).
        """
        parts = {name: _parts(counts[name]) for name in sorted(counts)}
        chunks: list[CountsByEndpoint] = []
        for round_ in range(max((len(p) for p in parts.values()), default=1)):
            names = [name for name, p in parts.items() if round_ < len(p)]
            chunks += [
                {name: parts[name][round_] for name in names[i : i + ENDPOINTS_PER_TRANSACTION]}
                for i in range(0, len(names), ENDPOINTS_PER_TRANSACTION)
            ]
        chunks = chunks or [{}]
        applied = False
        for n, chunk in enumerate(chunks):
            key = object_key if len(chunks) == 1 else f"{object_key}#chunk{n}"
            applied |= self._apply_chunk(key, chunk, now)
        return applied

    def _apply_chunk(self, record_key: str, counts: CountsByEndpoint, now: float) -> bool:
        record = {
            "Put": {
                "TableName": self.metrics_table,
                "Item": {
                    "endpoint_name": {"S": OBJECT_PREFIX + record_key},
                    "applied_at": _n(now),
                    "ttl": _n(int(now) + OBJECT_RECORD_TTL_SECONDS),
                },
                "ConditionExpression": "attribute_not_exists(endpoint_name)",
            }
        }
        for attempt in range(MAX_ATTEMPTS):
            actions = [record]
            for endpoint_name, by_variant in counts.items():
                current = self._endpoint_item(endpoint_name, consistent=True)
                if current is None:
                    continue
                known = current["variants"]["M"]
                deltas = {v: d for v, d in by_variant.items() if v in known and d}
                if deltas:
                    actions.append({"Update": self._increments(endpoint_name, deltas)})
            written = _transact(self._call, actions, attempt)
            if written is not None:
                return written  # False: the idempotency record exists, applied before
            # A concurrent transaction or throttling got in the way (or a variant went
            # missing, which registration no longer does: it retires): re-read and retry.
        raise StoreUnavailableError(f"aggregation of {record_key} contended")

    def _increments(self, endpoint_name: str, deltas: Mapping[str, VariantCounts]) -> Item:
        sets: list[str] = []
        exists: list[str] = []
        names: dict[str, str] = {}
        values: dict[str, Any] = {":zero": _n(0)}
        for i, (variant, d) in enumerate(deltas.items()):
            names[f"#v{i}"] = variant
            path = f"variants.#v{i}"
            exists.append(f"attribute_exists({path})")
            for j, counter in enumerate(COUNTERS):
                delta = getattr(d, counter.name)
                if delta:
                    # if_not_exists: a variant written before this counter existed has none.
                    # A name placeholder: some counters' names (`users`) are reserved words.
                    names[f"#c{j}"] = counter.name
                    at = f"{path}.#c{j}"
                    sets.append(f"{at} = if_not_exists({at}, :zero) + :d{i}_{j}")
                    values[f":d{i}_{j}"] = _n(delta)
        return {
            "TableName": self.metrics_table,
            "Key": {"endpoint_name": {"S": endpoint_name}},
            "UpdateExpression": f"SET {', '.join(sets)}",
            "ConditionExpression": " AND ".join(exists),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }

    # -- lifecycle ---------------------------------------------------------

    def change_lifecycle(
        self,
        endpoint_name: str,
        expected: Lifecycle,
        new: Lifecycle,
        entry: AuditEntry,
        new_variant: VariantConfig | None = None,
    ) -> bool:
        # The audit item is rewritten whole (trimmed to the retention), in one transaction
        # with the conditional lifecycle write: a racing change fails that condition, so
        # the entries read here are the ones the write replaces.
        sets = ["lifecycle = :new"]
        names: dict[str, str] = {}
        values = {":new": {"S": new.to_json()}, ":old": {"S": expected.to_json()}}
        if new_variant is not None:  # last in order; one already there keeps its counters
            names["#added"] = new_variant.name
            sets.append("variants.#added = if_not_exists(variants.#added, :variant)")
            item = self._endpoint_item(endpoint_name, consistent=True)
            position = len(item["variants"]["M"]) if item is not None else 0
            values[":variant"] = _variant(new_variant.initial_weight, position)
        update: Item = {
            "TableName": self.metrics_table,
            "Key": {"endpoint_name": {"S": endpoint_name}},
            "UpdateExpression": "SET " + ", ".join(sets),
            "ConditionExpression": "attribute_exists(variants) AND " + _lifecycle_is(expected),
            "ExpressionAttributeValues": values,
        }
        if names:
            update["ExpressionAttributeNames"] = names
        for attempt in range(MAX_ATTEMPTS):
            actions = [{"Update": update}, self._audit_put(endpoint_name, entry)]
            written = _transact(self._call, actions, attempt)
            if written is not None:
                return written  # False: another change won, or no such endpoint
            # An aggregation's transaction on the same item: its increments leave the
            # lifecycle alone, so the condition still holds; try again.
        raise StoreUnavailableError(f"lifecycle change of {endpoint_name} contended")

    def _audit_put(self, endpoint_name: str, *new: AuditEntry) -> Item:
        """The Put of the endpoint's audit item with `new` appended, for a transaction
        whose lifecycle condition guarantees no other change appended meanwhile."""
        audit_key = {"endpoint_name": {"S": AUDIT_PREFIX + endpoint_name}}
        stored = self._call(
            "get_item", TableName=self.metrics_table, Key=audit_key, ConsistentRead=True
        ).get("Item")
        entries = [e["S"] for e in stored["entries"]["L"]] if stored else []
        entries = [*entries, *(e.to_json() for e in new)][-AUDIT_RETENTION:]
        return {
            "Put": {
                "TableName": self.metrics_table,
                "Item": {**audit_key, "entries": {"L": [{"S": e} for e in entries]}},
            }
        }

    def audit_log(self, endpoint_name: str) -> list[AuditEntry]:
        item = self._call(
            "get_item",
            TableName=self.metrics_table,
            Key={"endpoint_name": {"S": AUDIT_PREFIX + endpoint_name}},
            ConsistentRead=True,
        ).get("Item")
        return [AuditEntry.from_json(e["S"]) for e in item["entries"]["L"]] if item else []

    def endpoint_names(self) -> list[str]:
        names: list[str] = []
        kwargs: dict[str, Any] = {
            "TableName": self.metrics_table,
            "ProjectionExpression": "endpoint_name",
            "FilterExpression": "attribute_exists(variants)",  # not objects nor audit logs
        }
        while True:
            page = self._call("scan", **kwargs)
            names += [item["endpoint_name"]["S"] for item in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return sorted(names)
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def create_tables(client: Any, assignment_table: str, metrics_table: str) -> None:
    """Create both tables (on-demand, TTL on `ttl`) with the schema the CDK stack deploys."""
    keys = {
        assignment_table: [("user_id", "HASH"), ("endpoint_name", "RANGE")],
        metrics_table: [("endpoint_name", "HASH")],
    }
    for table, schema in keys.items():
        client.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": name, "KeyType": kind} for name, kind in schema],
            AttributeDefinitions=[
                {"AttributeName": name, "AttributeType": "S"} for name, _ in schema
            ],
            BillingMode="PAY_PER_REQUEST",
        )
    for table in keys:
        client.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1})
        client.update_time_to_live(
            TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"}
        )


@contextmanager
def _translated() -> Iterator[None]:
    """Every failure the caller does not handle itself becomes StoreUnavailableError.

    Throttling, server faults and network failures pass; a missing table, a denied action
    or a request DynamoDB refuses do not, so they are logged at ERROR for an operator. The
    API answers both 503 (the invocation falls back), never an unhandled exception.
    """
    try:
        yield
    except (BotoConnectionError, HTTPClientError) as error:
        raise StoreUnavailableError(f"DynamoDB unreachable: {error}") from error
    except ClientError as error:
        code = _code(error)
        if code in _HANDLED_BY_CALLER:
            raise
        if code not in _UNAVAILABLE_CODES:
            logger.error("DynamoDB refused a request (%s): %s", code, error)
        raise StoreUnavailableError(f"DynamoDB unavailable: {code}") from error


def _parts(by_variant: Mapping[str, VariantCounts]) -> list[dict[str, VariantCounts]]:
    """The variants' deltas in groups (by sorted name) of at most MAX_INCREMENTS_PER_UPDATE
    moved counters each (a variant's own are never split: it has fewer than that)."""
    parts: list[dict[str, VariantCounts]] = [{}]
    size = 0
    for variant in sorted(by_variant):
        moved = sum(1 for c in COUNTERS if getattr(by_variant[variant], c.name))
        if size + moved > MAX_INCREMENTS_PER_UPDATE and parts[-1]:
            parts.append({})
            size = 0
        parts[-1][variant] = by_variant[variant]
        size += moved
    return parts


def _variant(initial_weight: float, position: int) -> Item:
    return {
        "M": {
            "initial_variant_weight": _n(float(initial_weight)),
            **{c.name: _n(c.type(0)) for c in COUNTERS},
            "position": _n(position),
        }
    }


def _new_endpoint_item(config: EndpointConfig, now: float) -> Item:
    return {
        "endpoint_name": {"S": config.endpoint_name},
        "strategy": {"S": config.strategy},
        "strategy_params": _params(config.strategy_params),
        "warmup": _n(int(config.warmup)),
        "settings": {"S": config.settings.to_json()},
        "status": {"S": ACTIVE},
        "updated_at": _n(now),
        "variants": {
            "M": {v.name: _variant(v.initial_weight, i) for i, v in enumerate(config.variants)}
        },
    }


def _reregistration(config: EndpointConfig, current: tuple[str, ...], now: float) -> Item:
    """UpdateItem arguments that change the variants in place, leaving counters untouched.

    The condition pins the variant set that was read, so a concurrent
    registration forces a retry, while increments (which never change the set)
    neither conflict nor get overwritten. No variant is removed: those the config
    dropped go last, in their order (the lifecycle retires them).
    """
    sets = [
        "strategy = :strategy",
        "strategy_params = :params",
        "warmup = :warmup",
        "settings = :settings",
        "#status = :status",
        "updated_at = :now",
    ]
    conditions: list[str] = []
    names = {"#status": "status"}
    values = {
        ":strategy": {"S": config.strategy},
        ":params": _params(config.strategy_params),
        ":warmup": _n(int(config.warmup)),
        ":settings": {"S": config.settings.to_json()},
        ":status": {"S": ACTIVE},
        ":now": _n(now),
    }
    wanted = [v.name for v in config.variants]
    for i, v in enumerate(config.variants):
        names[f"#v{i}"] = v.name
        path = f"variants.#v{i}"
        if v.name in current:
            sets += [f"{path}.initial_variant_weight = :w{i}", f"{path}.#position = :p{i}"]
            values |= {f":w{i}": _n(float(v.initial_weight)), f":p{i}": _n(i)}
            names["#position"] = "position"
            conditions.append(f"attribute_exists({path})")
        else:
            sets.append(f"{path} = :v{i}")
            values[f":v{i}"] = _variant(v.initial_weight, i)
            conditions.append(f"attribute_not_exists({path})")
    for i, name in enumerate(n for n in current if n not in wanted):
        names[f"#r{i}"] = name
        names["#position"] = "position"
        sets.append(f"variants.#r{i}.#position = :r{i}")
        values[f":r{i}"] = _n(len(wanted) + i)
        conditions.append(f"attribute_exists(variants.#r{i})")
    # The attribute strategy_params replaced, if the item still has it.
    expression = f"SET {', '.join(sets)} REMOVE epsilon"
    return {
        "UpdateExpression": expression,
        "ConditionExpression": " AND ".join(conditions) or "attribute_exists(variants)",
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }


def _lifecycle_is(expected: Lifecycle) -> str:
    """The condition that the item's lifecycle is still `expected` (`:old`)."""
    if expected == Lifecycle():  # never changed: no attribute yet, or written as default
        return "(attribute_not_exists(lifecycle) OR lifecycle = :old)"
    return "lifecycle = :old"


# The attributes of an endpoint item its figures are worked out from.
_FIGURES_BASIS = (
    "variants",
    "strategy",
    "strategy_params",
    "epsilon",
    "warmup",
    "settings",
    "lifecycle",
)


def _endpoint(item: Item) -> Endpoint:
    variants = sorted(item["variants"]["M"].items(), key=lambda kv: _num(kv[1]["M"]["position"]))
    metrics = tuple(
        VariantCounters(
            variant_name=name,
            initial_variant_weight=float(_num(v["M"]["initial_variant_weight"])),
            counts=_counts(v["M"]),
        )
        for name, v in variants
    )
    return Endpoint(
        endpoint_name=item["endpoint_name"]["S"],
        strategy=item["strategy"]["S"],
        strategy_params=_read_params(item),
        warmup=int(_num(item["warmup"])),
        variants=metrics,
        status=item["status"]["S"],
        updated_at=float(_num(item["updated_at"])),
        figures=Figures.from_json(item["figures"]["S"]) if "figures" in item else None,
        lifecycle=Lifecycle.from_json(item.get("lifecycle", {}).get("S")),
        settings=ExperimentSettings.from_json(item.get("settings", {}).get("S")),
    )


def _counts(variant: Item) -> VariantCounts:
    """A variant's counters; one declared after the item was written is 0 until counted."""
    return VariantCounts(
        *(c.type(_num(variant[c.name])) if c.name in variant else c.type(0) for c in COUNTERS)
    )


def _event_key(key: EventKey) -> Item:
    """Beside the user's assignment; `#` cannot occur in an endpoint name, so no clash."""
    return {
        "user_id": {"S": key.user_id},
        "endpoint_name": {"S": f"{key.endpoint_name}#{key.event_type}#{key.inference_id}"},
    }


def _assignment(item: Item) -> Assignment:
    return Assignment(
        endpoint_name=item["endpoint_name"]["S"],
        user_id=item["user_id"]["S"],
        variant_name=item["variant_name"]["S"],
        strategy=item["strategy"]["S"],
        propensity=float(_num(item["propensity"])),
        assigned_at=float(_num(item["assigned_at"])),
        ttl=int(_num(item["ttl"])),
    )


def _params(params: StrategyParams) -> Item:
    return {"M": {name: _n(value) for name, value in params.items()}}


def _read_params(item: Item) -> StrategyParams:
    """The `strategy_params` map; items written before it have a top-level `epsilon`."""
    if "strategy_params" in item:
        return {name: _num(value) for name, value in item["strategy_params"]["M"].items()}
    legacy = item.get("epsilon")
    return params_from_epsilon(item["strategy"]["S"], float(_num(legacy)) if legacy else None)


def _n(value: int | float) -> dict[str, str]:
    """A DynamoDB number; repr keeps every digit a float has."""
    return {"N": str(value) if isinstance(value, int) else repr(float(value))}


def _num(attribute: dict[str, str]) -> int | float:
    text = attribute["N"]
    try:
        return int(text)
    except ValueError:
        return float(text)


def _code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


def _transact(call: Any, actions: list[Item], attempt: int) -> bool | None:
    """One transaction: True if written; False if its first action's condition failed (the
    caller's own check: a repeat, a lost race); None if it was cancelled for a reason a
    retry can clear (contention, throttling), after backing off. Raises on anything else."""
    try:
        call("transact_write_items", TransactItems=actions)
        return True
    except ClientError as error:
        if _code(error) != "TransactionCanceledException":
            raise
        reasons = [r.get("Code") for r in error.response.get("CancellationReasons", [])]
        if reasons and reasons[0] == "ConditionalCheckFailed":
            return False
        if not set(reasons) <= _RETRYABLE_CANCELLATIONS:
            raise
        _backoff(attempt)
        return None


def _backoff(attempt: int) -> None:
    """Full jitter, from ~10 ms: losers of a race must not collide again in lockstep."""
    time.sleep(random.uniform(0, 0.01 * 2**attempt))
