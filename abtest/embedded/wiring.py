"""The embedded runtime: one config (of one endpoint or several) and one data dir wired
into every use case.

  <data-dir>/abtest.sqlite3   assignments and metrics of every endpoint (SqliteStore)
  <data-dir>/events/          the local event log (LocalEventLog): buffer, sealed files

Several endpoints share the store, the event log and the server; each keeps its own
settings, models and lifecycle (the use cases take the endpoint name from each request).
A restart on the same data dir resumes: registration keeps every variant's counters and the
lifecycle (a variant gone from the config is retired, one added at run time keeps serving
its stored `model`), and the event log re-aggregates what a crash left behind.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from abtest.adapters.config_catalog import ConfigCatalog
from abtest.adapters.eventlog import LocalEventLog, make_folder
from abtest.adapters.local_models import EndpointModels, LocalModelHost, LocalModels, load_callable
from abtest.adapters.sqlite import SqliteStore
from abtest.adapters.telemetry import CountingTelemetry
from abtest.clock import SystemClock
from abtest.embedded.config import AbtestConfig, EndpointSpec, load_config
from abtest.errors import AbtestError, BadRequestError, ConfigError
from abtest.http.routes import ALL_ROUTES
from abtest.ports import Clock
from abtest.records import DELETED
from abtest.usecases.aggregate import Aggregate
from abtest.usecases.endpoints import EndpointCache
from abtest.usecases.register import Register

logger = logging.getLogger("abtest")

STORE_NAME = "abtest.sqlite3"
EVENTS_DIR = "events"
# How long a request reuses an endpoint's metrics record: aggregation here runs in this
# process and forgets what it changes, so this only bounds what another process changed.
METRICS_CACHE_SECONDS = 5.0


class Runtime:
    """Every port, built up front (it is `Ports` for `UseCase.from_ports`), and every use case."""

    def __init__(
        self,
        config: AbtestConfig | str | Path,
        data_dir: str | Path,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        worker: int | None = None,
    ) -> None:
        """Builds everything and checks every model reference; `start()` opens for traffic.

        `worker` n makes this one of several processes serving the data dir (`abtest serve
        --workers`), started after the one that owns it: see `abtest.embedded.workers`."""
        self.config = config if isinstance(config, AbtestConfig) else load_config(config)
        self.data_dir = Path(data_dir)
        self.clock = clock or SystemClock()
        self.rng = rng or random.Random()
        specs = self.config.endpoints
        self.assignment_ttl_seconds = {e.endpoint_name: e.assignment_ttl_seconds for e in specs}
        self.telemetry = CountingTelemetry()
        self.models = EndpointModels({e.endpoint_name: self._local_models(e, rng) for e in specs})
        # Only once every model imports: a config refused leaves no data dir behind.
        make_folder(self.data_dir, "the data dir")
        self.model_host = LocalModelHost()  # nothing to promote a winner in
        self.store = SqliteStore(self.data_dir / STORE_NAME)
        self.history = self.store  # its own tables in the same file
        self.events = LocalEventLog(
            self.data_dir / EVENTS_DIR,
            buffer_interval_seconds=self.config.event_log.buffer_interval_seconds,
            buffer_size_bytes=self.config.event_log.buffer_size_bytes,
            on_seal=self._aggregate,
            clock=self.clock,
            retention_seconds=self.config.event_log.retention_days * 24 * 3600,
            worker=worker,
        )
        self.worker = worker
        self.catalog = ConfigCatalog(
            *(e.endpoint_config() for e in specs),
            source=str(self.config.path),
            models=self.models,
        )
        self.endpoints = EndpointCache(self.store, METRICS_CACHE_SECONDS)
        self.use_cases: dict[str, Callable[[Any], Any]] = {
            route.name: route.use_case.from_ports(self) for route in ALL_ROUTES
        }
        self.registration = Register.from_ports(self)
        self.aggregate = Aggregate.from_ports(self)
        self._started = False
        self._closed = False
        # Closing is serialized: a second caller (the server's lifespan and its owner both
        # close) waits for the first to finish, never closes the store under its drain.
        self._close_lock = threading.Lock()

    @property
    def endpoint_names(self) -> tuple[str, ...]:
        """The endpoints served, in config order."""
        return self.config.endpoint_names

    def start(self) -> None:
        """Own the data dir, register the endpoints, then recover and aggregate the event log.

        The lock comes first: a second server refused the data dir must not re-register the
        endpoints from its own config (that would drop the running server's variants and
        their counters). An endpoint registered by an earlier start but no longer in the
        config is deregistered: no longer served, its counters and history still readable
        (otherwise it would keep answering invocations nobody configures). Registration
        comes before recovery: aggregation ignores unknown endpoints. A worker does none
        of that (its parent did, and holds the lock): it only recovers what its own buffer
        holds.
        """
        if self.worker is not None:
            self._load_added_models()
            self.events.start()
            self._read_endpoints()
            self._started = True
            return
        self.events.own_folder()
        try:
            for name in self.endpoint_names:
                self.registration.register(name)
            self._deregister_dropped()
            self._load_added_models()
            self.store.purge_expired(self.clock.now())
            self.events.start()
        except BaseException:
            self.events.close()  # let the folder go: nothing was buffered yet
            raise
        self._started = True

    def _read_endpoints(self) -> None:
        """A worker reads each endpoint once as it starts (its owner registered them, which
        read them there), so that its fallback has a record to serve by should the store fail
        before its first request. Stamped as expired: that request still reads it again,
        and sees what changed in between (another process may have added a variant)."""
        for name in self.endpoint_names:
            with contextlib.suppress(AbtestError):
                self.endpoints.reread(name, -math.inf)

    def _deregister_dropped(self) -> None:
        for name in self.store.endpoint_names():
            if name in self.endpoint_names:
                continue
            endpoint = self.store.get_endpoint(name)
            if endpoint is not None and endpoint.status != DELETED:
                self.registration.deregister(name)

    def _local_models(self, spec: EndpointSpec, rng: random.Random | None) -> LocalModels:
        name = spec.endpoint_name
        return LocalModels(
            _models(spec),
            weights={v.name: v.initial_weight for v in spec.variants},
            endpoint_name=name,
            timeout_seconds=spec.model_timeout_seconds,
            rng=rng,
            inline=[v.name for v in spec.variants if v.inline],
            near=spec.path.resolve().parent,
            discover=lambda variant_name: self._added_model(name, variant_name),
        )

    def _load_added_models(self) -> None:
        """Load the models of variants added at run time now, so the first request does not
        wait for an import; one that no longer imports is logged (its calls answer 502)."""
        for name in self.endpoint_names:
            endpoint = self.store.get_endpoint(name)
            if endpoint is None:
                continue
            models = self.models[name]
            for variant, model in endpoint.lifecycle.added_models.items():
                if model is None or variant in models.variant_names:
                    continue
                try:
                    models.add(variant, model)
                except BadRequestError as error:
                    logger.error("%s: added variant %s: %s", name, variant, error.message)

    def _added_model(self, endpoint_name: str, variant_name: str) -> str | None:
        """The model of a variant added at run time (`abtest endpoints add-variant`): kept
        with the endpoint's lifecycle, so a restart or another worker process finds it."""
        endpoint = self.store.get_endpoint(endpoint_name)
        return None if endpoint is None else endpoint.lifecycle.added_models.get(variant_name)

    def close(self) -> None:
        """Seal and aggregate what is buffered, then close the store. Safe to call twice."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            if self._started:
                self.events.close()
            self.models.close()
            self.store.close()

    def __enter__(self) -> Runtime:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _aggregate(self, object_key: str) -> None:
        result = self.aggregate(self.events, object_key)
        logger.debug(
            "aggregated %s: %d events, applied=%s", object_key, result.events, result.applied
        )


def _models(spec: EndpointSpec) -> dict[str, object]:
    """Resolve callables now, so a bad reference fails at start naming the file and key."""
    models: dict[str, object] = {}
    where = "variants" if spec.key == "endpoint" else f"{spec.key}.variants"
    for i, variant in enumerate(spec.variants):
        if variant.is_url:
            models[variant.name] = variant.model
            continue
        try:
            models[variant.name] = load_callable(variant.model, near=spec.path.resolve().parent)
        except ConfigError as error:
            raise ConfigError(f"{spec.path}: {where}[{i}].model: {error}") from None
    return models
