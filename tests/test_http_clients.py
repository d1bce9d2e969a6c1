"""The suite's httpx clients share one TLS context (`tests/http_clients.py`), and it checks
servers as the context httpx builds itself does."""

from __future__ import annotations

import ssl

import httpx
import httpx._transports.default as transports


def test_clients_with_the_default_settings_share_one_context() -> None:
    first = transports.create_ssl_context(verify=True, cert=None, trust_env=True)
    second = transports.create_ssl_context(verify=True, cert=None, trust_env=True)
    assert first is second


def test_the_shared_context_verifies_as_httpxs_own() -> None:
    shared = transports.create_ssl_context(verify=True, cert=None, trust_env=True)
    own = httpx.create_ssl_context()  # httpx's public function: not shared
    assert own is not shared
    assert (shared.verify_mode, shared.check_hostname) == (ssl.CERT_REQUIRED, True)
    assert shared.cert_store_stats() == own.cert_store_stats()  # the same CA bundle
    assert shared.minimum_version == own.minimum_version
    assert shared.options == own.options


def test_a_client_that_does_not_verify_gets_a_context_that_does_not() -> None:
    unchecked = transports.create_ssl_context(verify=False, cert=None, trust_env=True)
    assert (unchecked.verify_mode, unchecked.check_hostname) == (ssl.CERT_NONE, False)
    assert unchecked is transports.create_ssl_context(verify=False, cert=None, trust_env=True)
    checked = transports.create_ssl_context(verify=True, cert=None, trust_env=True)
    assert unchecked is not checked
