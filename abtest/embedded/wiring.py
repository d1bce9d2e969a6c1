"""The embedded runtime: one config file and one data dir wired into a Service.

  <data-dir>/abtest.sqlite3   assignments and metrics (SqliteStore)
  <data-dir>/events/          the local event log (LocalEventLog): buffer, sealed files

A restart on the same data dir resumes: registration keeps the counters of variants
still in the config, and the event log re-aggregates what a crash left behind.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

from abtest.adapters.eventlog import LocalEventLog
from abtest.adapters.local_models import LocalModels, load_callable
from abtest.adapters.sqlite import SqliteStore
from abtest.clock import SystemClock
from abtest.embedded.config import AbtestConfig, ConfigCatalog, load_config
from abtest.errors import ConfigError
from abtest.ports import Clock
from abtest.service import Service, ServiceSettings

logger = logging.getLogger("abtest")

STORE_NAME = "abtest.sqlite3"
EVENTS_DIR = "events"


class Runtime:
    def __init__(
        self,
        config: AbtestConfig | str | Path,
        data_dir: str | Path,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """Builds everything and checks every model reference; `start()` opens for traffic."""
        self.config = config if isinstance(config, AbtestConfig) else load_config(config)
        self.data_dir = Path(data_dir)
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(f"{self.data_dir}: cannot create data dir: {error}") from None
        clock = clock or SystemClock()
        self.models = LocalModels(
            _models(self.config),
            weights={v.name: v.initial_weight for v in self.config.variants},
            endpoint_name=self.config.endpoint_name,
            timeout_seconds=self.config.model_timeout_seconds,
            rng=rng,
        )
        self.store = SqliteStore(self.data_dir / STORE_NAME)
        self.events = LocalEventLog(
            self.data_dir / EVENTS_DIR,
            buffer_interval_seconds=self.config.event_log.buffer_interval_seconds,
            buffer_size_bytes=self.config.event_log.buffer_size_bytes,
            on_seal=self._aggregate,
            clock=clock,
        )
        self.service = Service(
            self.store,
            self.events,
            self.models,
            ConfigCatalog(self.config),
            clock,
            settings=ServiceSettings(assignment_ttl_seconds=self.config.assignment_ttl_seconds),
            rng=rng,
        )
        self._started = False
        self._closed = False

    @property
    def endpoint_name(self) -> str:
        return self.config.endpoint_name

    def start(self) -> None:
        """Register the endpoint, then recover and aggregate the event log.

        Registration comes first: aggregation ignores endpoints the store does not know.
        """
        self.service.register(self.config.endpoint_name)
        self.store.purge_expired(self.service.clock.now())
        self.events.start()
        self._started = True

    def close(self) -> None:
        """Seal and aggregate what is buffered, then close the store. Safe to call twice."""
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
        result = self.service.aggregate(self.events, object_key)
        logger.debug(
            "aggregated %s: %d events, applied=%s", object_key, result.events, result.applied
        )


def _models(config: AbtestConfig) -> dict[str, object]:
    """Resolve callables now, so a bad reference fails at start naming the file and key."""
    models: dict[str, object] = {}
    for i, variant in enumerate(config.variants):
        if variant.is_url:
            models[variant.name] = variant.model
            continue
        try:
            models[variant.name] = load_callable(variant.model)
        except ConfigError as error:
            raise ConfigError(f"{config.path}: variants[{i}].model: {error}") from None
    return models
