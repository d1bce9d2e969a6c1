"""ModelEndpoint for the embedded runtime: each variant is a Python callable or an HTTP URL.

A callable is called as `fn(data, content_type)` and returns JSON-able predictions; a URL
is POSTed the payload with its content type (like SageMaker's InvokeEndpoint) and its JSON
(or text) answer is the predictions. Whatever goes wrong inside a model is a ModelError
naming the variant: the API answers 502, never a bare 500.

A callable runs on a model thread, so a call over the timeout can be given up on. One
declared `inline` runs on the caller's own thread instead (the server's event loop, for
invocations): no hand-off, which for a model of microseconds costs more than the model,
and no timeout, so only for fast callables that never wait on anything.
"""

from __future__ import annotations

import importlib
import json
import random
import re
import sys
import threading
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as CallTimeout
from json.encoder import c_make_encoder, encode_basestring_ascii
from pathlib import Path
from typing import Any

from abtest.adapters.model_answers import check_encodable
from abtest.errors import BadRequestError, ConfigError, ConflictError, ModelError, NotFoundError
from abtest.ports import ModelResult

ModelFunction = Callable[[str, str], Any]

_CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def is_url(model: str) -> bool:
    return model.startswith(("http://", "https://"))


def a_model(model: str) -> str:
    """`model` if it is a model reference (the config's `model` and add-variant's alike)."""
    if is_url(model):
        _a_url(model)
    elif not _CALLABLE.match(model):
        raise ValueError(f"{model!r} is neither 'package.module:function' nor an http(s):// URL")
    return model


def _a_url(model: str) -> None:
    """Refuse a URL the model client cannot call: one it could not parse ('https://[::1')
    was taken here, and every call to the variant then failed with a 500, not a 502."""
    import httpx  # only URL variants need it

    try:
        host = httpx.URL(model).host
    except (httpx.InvalidURL, ValueError) as error:
        raise ValueError(f"{model!r} is not a URL: {error}") from None
    if not host:
        raise ValueError(f"{model!r} is not a URL: it names no host")


DEFAULT_TIMEOUT_SECONDS = 30.0
# Callables run here, so a call can be given up on: a hung one keeps its thread (Python
# cannot stop it) and, once all are hung, further calls time out in the queue instead.
MODEL_THREADS = 16


def load_callable(reference: str, near: Path | None = None) -> ModelFunction:
    """Import `package.module:function` (dotted attributes allowed after the colon).

    `near`, a folder (the config's), goes on the import path first: a `mymodels.py` next
    to the file that names it is found without setting PYTHONPATH.
    """
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"{reference!r} is not 'package.module:function'")
    if near is not None and str(near) not in sys.path:
        sys.path.insert(0, str(near))
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(f"cannot import {module_name!r}: {error}") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ConfigError(f"module {module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ConfigError(f"{reference!r} is not callable")
    return target


class LocalModels:
    def __init__(
        self,
        variants: Mapping[str, str | ModelFunction],
        *,
        weights: Mapping[str, float] | None = None,
        endpoint_name: str | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        rng: random.Random | None = None,
        inline: Collection[str] = (),
        near: Path | None = None,
        discover: Callable[[str], str | None] | None = None,
    ) -> None:
        """`variants` maps names to callables, `module:function` references or URLs.

        `weights` (default 1 each) route calls that name no variant (the fallback of a
        server process that could not read the endpoint as it started);
        with `endpoint_name` set, other endpoint names are NotFoundError. A call (callable
        or URL) that takes longer than `timeout_seconds` is a ModelError, except for the
        callables named in `inline`: called on the caller's thread, never cut off.
        Variants added later (`add`) are imported from `near` (the config's folder); a
        variant this process does not know is looked up with `discover` (its `model`, or
        None): another process of the same server may have added it.
        """
        if not variants:
            raise ValueError("at least one variant is needed")
        self.endpoint_name = endpoint_name
        self.timeout_seconds = timeout_seconds
        self._models: dict[str, ModelFunction | str] = {}
        for name, model in variants.items():
            if isinstance(model, str) and not model.startswith(("http://", "https://")):
                model = load_callable(model)
            self._models[name] = model
        for name in inline:
            if name not in self._models or isinstance(self._models[name], str):
                raise ValueError(f"inline: {name!r} is not a callable variant")
        self._inline = frozenset(inline)
        self._all_inline = self._inline == set(self._models)
        # The fallback (no variant named) picks among the configured models only.
        self._fallback = list(self._models)
        self._weights = [float((weights or {}).get(name, 1.0)) for name in self._models]
        if sum(self._weights) <= 0:
            raise ValueError("variant weights must not all be 0")
        self._near = near
        self._discover = discover
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()
        self._http: Any = None
        self._http_lock = threading.Lock()
        self._calls = ThreadPoolExecutor(MODEL_THREADS, thread_name_prefix="abtest-model")

    @property
    def variant_names(self) -> tuple[str, ...]:
        return tuple(self._models)

    @property
    def all_inline(self) -> bool:
        """Whether every call runs on the caller's thread (then none ever waits on another)."""
        return self._all_inline

    def invoke(
        self,
        endpoint_name: str,
        variant_name: str | None,
        data: str,
        content_type: str,
        inference_id: str,
    ) -> ModelResult:
        if self.endpoint_name is not None and endpoint_name != self.endpoint_name:
            raise NotFoundError(f"endpoint_name: {endpoint_name!r} has no local models")
        if variant_name is None:
            with self._rng_lock:
                variant_name = self._rng.choices(self._fallback, self._weights)[0]
        model = self._models.get(variant_name)
        if model is None and self._discover is not None:
            model = self._discovered(variant_name)
        if model is None:
            raise ConflictError(
                f"variant {variant_name!r} is not a model of {endpoint_name!r} "
                f"(variants: {', '.join(self._models)})"
            )
        if isinstance(model, str):
            predictions = self._post(variant_name, model, data, content_type, inference_id)
        else:
            predictions = self._call(variant_name, model, data, content_type)
        return ModelResult(variant_name, predictions)

    def add(self, variant_name: str, model: str) -> None:
        """Make `model` (a `package.module:function` or a URL) callable as `variant_name`
        now; BadRequestError naming `model` if it is neither or does not import."""
        try:
            a_model(model)
            loaded = model if is_url(model) else load_callable(model, near=self._near)
        except (ValueError, ConfigError) as error:
            raise BadRequestError.field("model", str(error)) from None
        # Before the model is reachable: from now on invocations leave the event loop for a
        # thread, where a call can be timed out (one a worker discovers on the loop is the
        # exception: that one call runs there).
        self._all_inline = False
        self._models[variant_name] = loaded

    def _discovered(self, variant_name: str) -> ModelFunction | str | None:
        assert self._discover is not None
        model = self._discover(variant_name)
        if model is None:
            return None
        try:
            self.add(variant_name, model)
        except BadRequestError as error:
            raise ModelError(f"model variant {variant_name!r}: {error.message}") from None
        return self._models[variant_name]

    def close(self) -> None:
        self._calls.shutdown(wait=False, cancel_futures=True)
        if self._http is not None:
            self._http.close()
            self._http = None

    def _call(self, variant: str, model: ModelFunction, data: str, content_type: str) -> Any:
        if variant in self._inline:
            try:
                return _checked(model, data, content_type)
            except Exception as error:
                raise ModelError(f"model variant {variant!r} failed: {_describe(error)}") from error
        call = self._calls.submit(_checked, model, data, content_type)
        try:
            return call.result(timeout=self.timeout_seconds)
        except CallTimeout:
            call.cancel()  # still queued behind hung calls: never start it
            raise ModelError(
                f"model variant {variant!r} did not answer within {self.timeout_seconds:g} s"
            ) from None
        except Exception as error:
            raise ModelError(f"model variant {variant!r} failed: {_describe(error)}") from error

    def _post(self, variant: str, url: str, data: str, content_type: str, inference_id: str) -> Any:
        import httpx  # only URL variants need it

        with self._http_lock:
            if self._http is None:
                self._http = httpx.Client(timeout=self.timeout_seconds)
        headers = {"Content-Type": content_type, "X-Amzn-SageMaker-Inference-Id": inference_id}
        try:
            response = self._http.post(url, content=data.encode(), headers=headers)
        except httpx.HTTPError as error:
            raise ModelError(
                f"model variant {variant!r} at {url} did not answer: {_describe(error)}"
            ) from error
        if response.status_code >= 300:
            raise ModelError(
                f"model variant {variant!r} at {url} answered {response.status_code}: "
                f"{response.text[:200]}"
            )
        if "json" in response.headers.get("content-type", ""):
            try:
                answer = response.json()
                check_encodable(answer, response.content)
            except ValueError as error:  # UnicodeEncodeError is one
                raise ModelError(
                    f"model variant {variant!r} at {url} answered invalid JSON: {error}"
                ) from error
            return answer
        return response.text


def _checked(model: ModelFunction, data: str, content_type: str) -> Any:
    predictions = model(data, content_type)
    # A non-JSON answer is the model's failure, not a 500: json.dumps must take it. First
    # the encoder made once (json.dumps makes one per call, most of its cost); anything it
    # refuses goes to json.dumps itself, which raises what it always raised. And UTF-8 must
    # encode it (`check_encodable`).
    try:
        text = "".join(_JSON_CHECK(predictions, 0))
    except Exception:
        text = json.dumps(predictions)
    check_encodable(predictions, text)
    return predictions


def _json_check() -> Callable[[Any, int], Any]:
    """json.dumps's C encoder with json.dumps's settings, made once; no circular check (a
    circular answer fails anyway, and json.dumps then names it)."""
    encoder = json.JSONEncoder()
    if c_make_encoder is None:
        return lambda value, _: encoder.encode(value)
    # markers, default, encoder, indent, key and item separators, sort_keys, skipkeys, allow_nan
    return c_make_encoder(
        None, encoder.default, encode_basestring_ascii, None, ": ", ", ", False, False, True
    )


_JSON_CHECK = _json_check()


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


class EndpointModels:
    """ModelEndpoint of a server of several endpoints: each endpoint's own LocalModels,
    picked by the endpoint name (an unknown one is NotFoundError, as with one endpoint)."""

    def __init__(self, by_endpoint: Mapping[str, LocalModels]) -> None:
        self._by_endpoint = dict(by_endpoint)

    def __getitem__(self, endpoint_name: str) -> LocalModels:
        return self._by_endpoint[endpoint_name]

    @property
    def all_inline(self) -> bool:
        """Whether every call of every endpoint runs on the caller's thread (asked for every
        invocation the server answers: a loop, cheaper than all() over a generator)."""
        for models in self._by_endpoint.values():  # noqa: SIM110
            if not models.all_inline:
                return False
        return True

    def invoke(
        self,
        endpoint_name: str,
        variant_name: str | None,
        data: str,
        content_type: str,
        inference_id: str,
    ) -> ModelResult:
        models = self._by_endpoint.get(endpoint_name)
        if models is None:
            raise NotFoundError(f"endpoint_name: {endpoint_name!r} has no local models")
        return models.invoke(endpoint_name, variant_name, data, content_type, inference_id)

    def add(self, endpoint_name: str, variant_name: str, model: str) -> None:
        """Load a variant added at run time into its endpoint's models."""
        self[endpoint_name].add(variant_name, model)

    def close(self) -> None:
        for models in self._by_endpoint.values():
            models.close()


class LocalModelHost:
    """ModelHost of the embedded server: no weights to promote a winner in.

    Every call of a local model goes through the server (nobody can bypass it), and the
    server serves a concluded endpoint's winner to everyone itself; so a conclusion is done
    once stored, with no promotion step. (The fallback, taken only when the server cannot
    use its own SQLite file, serves by the record it last read, winner included; only a
    server process that could not read the endpoint as it started routes by the config's
    `initial_weight`s.)
    """

    keeps_weights = False

    def promote(self, endpoint_name: str, winner: str) -> dict[str, float]:
        raise AssertionError("the embedded server keeps no weights to promote a winner in")
