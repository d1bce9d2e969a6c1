"""Doubles for the service tests: models, event log and catalog at the port boundary."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

from abtest.adapters.sqlite import SqliteStore
from abtest.errors import ConflictError, ModelError, NotFoundError
from abtest.ports import ModelResult
from abtest.records import EndpointConfig, RejectedLine, VariantConfig

ENDPOINT = "reviews-dev"


class EventLog:
    """Events as the sink received them, and delivered objects as an archive would hold them."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.objects: dict[str, bytes] = {}
        self.rejected: dict[str, list[RejectedLine]] = {}
        self._delivered = 0

    def put(self, events: list[dict[str, Any]]) -> None:
        self.events.extend(json.loads(json.dumps(event)) for event in events)

    def put_lines(self, lines: list[bytes]) -> None:
        assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in lines)
        self.events.extend(json.loads(line) for line in lines)

    def deliver(self, key: str | None = None) -> str:
        """Seal what arrived since the last delivery into one object, like Firehose does."""
        key = key or f"events/{len(self.objects):05d}.jsonl"
        lines = self.events[self._delivered :]
        self._delivered = len(self.events)
        self.objects[key] = b"".join(json.dumps(e).encode() + b"\n" for e in lines)
        return key

    def read_blocks(self, object_key: str) -> Iterator[bytes]:
        yield self.objects[object_key]

    @contextmanager
    def open_rejected(self, object_key: str) -> Iterator[SimpleNamespace]:
        kept: list[RejectedLine] = []
        yield SimpleNamespace(write=kept.append)
        if kept:
            self.rejected[object_key] = kept


class Models:
    """Answers with the variant's name; a variant listed in `failing` raises ModelError."""

    def __init__(self, variants: list[str]) -> None:
        self.variants = variants
        self.failing: set[str] = set()
        self.calls: list[tuple[str | None, str, str]] = []

    def invoke(self, endpoint_name, variant_name, data, content_type, inference_id):
        self.calls.append((variant_name, data, inference_id))
        if endpoint_name != ENDPOINT:
            raise NotFoundError(f"no endpoint {endpoint_name}")
        if variant_name in self.failing:
            raise ModelError(f"variant {variant_name} failed: boom")
        served = variant_name or self.variants[0]
        return ModelResult(served, {"variant": served, "data": data})


class Catalog:
    def __init__(self, config: EndpointConfig, deployed: tuple[str, ...] = ()) -> None:
        self.config = config
        self.deployed = deployed  # variants prepare_variant accepts without a model
        self.prepared: list[tuple[str, str | None]] = []

    def describe(self, endpoint_name: str) -> EndpointConfig:
        if endpoint_name != self.config.endpoint_name:
            raise NotFoundError(f"no endpoint {endpoint_name}")
        return self.config

    def prepare_variant(self, endpoint_name: str, variant_name: str, model: str | None) -> None:
        self.describe(endpoint_name)
        if model is None and variant_name not in self.deployed:
            raise ConflictError(
                f"variant: {variant_name!r} is not deployed", details=[{"field": "variant"}]
            )
        self.prepared.append((variant_name, model))


class CountingStore:
    """Counts calls through to the real store: each call is one store round trip."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.store, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return method(*args, **kwargs)

        return counted


def config(strategy: str = "ThompsonSampling", warmup: int = 0, strategy_params=None):
    return EndpointConfig(
        ENDPOINT,
        strategy,
        strategy_params or {},
        warmup,
        (VariantConfig("Champion1"), VariantConfig("Challenger1")),
    )
