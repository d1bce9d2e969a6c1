"""One TLS context for every httpx client a test builds with the default settings.

httpx builds a new `ssl.SSLContext` for each client, loading certifi's CA bundle into it
(about 20 ms on a quiet machine; `httpx.get` and `httpx.post` build a client per call),
even for plain http:// URLs. The suite's tests and the product code they run built 716 of
them in-process in the embedded, http, lambdas and adapters tests: 27 s of their work at
load average 3-4. Tests talk to 127.0.0.1 over plain HTTP only, but the shared context is
still what httpx would build (the same CA bundle, the same checks: `test_http_clients.py`).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from typing import Any

import httpx._transports.default as transports
import pytest

Create = Callable[..., ssl.SSLContext]


def _shared(create: Create) -> Create:
    """`create`, but the default case (verify a bool, no client certificate) built once per
    set of arguments and CA environment variables."""
    contexts: dict[tuple[Any, ...], ssl.SSLContext] = {}

    def create_once(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        if args or kwargs.get("cert") is not None or not isinstance(kwargs.get("verify"), bool):
            return create(*args, **kwargs)
        ca_env = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
        key = (*sorted(kwargs.items()), ca_env)
        if key not in contexts:
            contexts[key] = create(**kwargs)
        return contexts[key]

    return create_once


def share_tls_contexts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Patch the name httpx's transports build their context with, for `monkeypatch`'s scope."""
    monkeypatch.setattr(transports, "create_ssl_context", _shared(transports.create_ssl_context))
