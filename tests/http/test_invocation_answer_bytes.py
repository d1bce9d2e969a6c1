"""An invocation's answer is serialized without building its response model, to the same bytes.

`InvocationResponse.json_of` skips the model's validation (the use case's result is typed
already) and writes the fields with the model's own serializers. Any difference from
`InvocationResponse.of(result).model_dump_json()` on any value a result can hold (ids a
client sent, a model's arbitrary predictions, every assignment kind and propensity)
would be a different answer, so both are compared byte for byte, errors included.
"""

from __future__ import annotations

import json
import random
from decimal import Decimal
from typing import Any

import pytest

from abtest.embedded.wiring import Runtime
from abtest.http.api import JSON, Api
from abtest.http.invocation_bodies import InvocationResponse
from abtest.records import AssignmentKind
from abtest.usecases.invoke import InvocationResult
from tests.embedded.helpers import ENDPOINT, logged_events, write_config

# Quotes, backslashes, control characters, DEL, non-ASCII, an astral character, HTML.
ALPHABET = 'aZ09-_ "\\/\t\n\r\x00\x07\x1f\x7f\x80é用\U0001f600</>'
SPECIAL_FLOATS = [
    0.0, -0.0, 1.0, 0.1 + 0.2, 1e-5, 5e-324, 1e-320, 1e16, 1e300, -1e300, 1.7976931348623157e308,
    float("nan"), float("inf"), float("-inf"), 123456789.123, 2.5e-7,
]  # fmt: skip


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(0, 30)))


def _value(rng: random.Random, depth: int = 0) -> Any:
    """Anything a model may answer (json.dumps accepts it): nested containers, NaN, big ints."""
    kinds = ["text", "float", "int", "bool", "none"] + (
        ["list", "dict", "tuple"] if depth < 3 else []
    )
    kind = rng.choice(kinds)
    if kind == "text":
        return _text(rng)
    if kind == "float":
        return rng.choice([rng.random(), rng.uniform(-1e20, 1e20), rng.choice(SPECIAL_FLOATS)])
    if kind == "int":
        return rng.choice([rng.randrange(-100, 100), rng.randrange(-(10**30), 10**30), 2**63])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "none":
        return None
    items = [_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    if kind == "list":
        return items
    if kind == "tuple":
        return tuple(items)
    return {_text(rng): item for item in items}


def _result(rng: random.Random) -> InvocationResult:
    return InvocationResult(
        endpoint_name=_text(rng),
        user_id=_text(rng),
        inference_id=rng.choice([_text(rng), f"{rng.getrandbits(128):032x}"]),
        strategy=_text(rng),
        target_variant=rng.choice([None, _text(rng)]),
        endpoint_variant=_text(rng),
        assignment=rng.choice(list(AssignmentKind)),
        propensity=rng.choice([None, 1, rng.random(), *SPECIAL_FLOATS]),
        predictions=_value(rng),
    )


def _model_dump(result: InvocationResult) -> bytes:
    return InvocationResponse.of(result).model_dump_json().encode()


@pytest.mark.parametrize("seed", range(4))
def test_the_same_bytes_as_the_model_for_random_hostile_results(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(2_500):
        result = _result(rng)
        assert InvocationResponse.json_of(result) == _model_dump(result), result


@pytest.mark.parametrize(
    "propensity", [1, 0, True, Decimal("0.25"), 0.5, None], ids=lambda p: repr(p)
)
def test_a_propensity_is_written_as_the_models_float(propensity: Any) -> None:
    """The model validates an int or a Decimal into a float ("1.0", not "1"): so does json_of."""
    result = InvocationResult("e", "u", "i", "s", "A", "A", AssignmentKind.NEW, propensity, [1])
    assert InvocationResponse.json_of(result) == _model_dump(result)


def test_a_lone_surrogate_fails_alike() -> None:
    """A string JSON can carry but UTF-8 cannot (a lone surrogate) is the same error both ways
    (a model's answer holding one is refused before: the next test)."""
    result = InvocationResult("e", "\ud800", "i", "s", "A", "A", AssignmentKind.NEW, 0.5, [1])
    with pytest.raises(Exception) as by_model:
        _model_dump(result)
    with pytest.raises(Exception) as by_json_of:
        InvocationResponse.json_of(result)
    assert type(by_json_of.value) is type(by_model.value)
    assert str(by_json_of.value) == str(by_model.value)


def test_a_model_answering_a_lone_surrogate_is_a_502_naming_it_and_logged_as_its_error(
    tmp_path,
) -> None:
    # It was a 500 at the answer's serialization, the invocation logged as a success.
    config = write_config(tmp_path, variants={"Cut": "tests.embedded.helpers:half_an_emoji"})
    body = json.dumps({"endpoint_name": ENDPOINT, "user_id": "u", "data": "x"})
    with Runtime(config, tmp_path / "data", rng=random.Random(0)) as runtime:
        answer = Api(runtime.use_cases).answer("POST", "/invocation", JSON, body)

    assert answer.status == 502
    assert "model variant 'Cut' failed" in json.loads(answer.body)["message"]
    (event,) = logged_events(tmp_path / "data")
    assert (event["variant_name"], event["outcome"]) == ("Cut", "error")


def test_the_api_answers_an_invocation_with_json_of() -> None:
    """The request path uses it (and the routes without one build their model as before)."""
    result = InvocationResult("e", 'u"\\', "i", "s", None, "A", AssignmentKind.FALLBACK, None, {})
    api = Api({"invocation": lambda _: result, "stats": lambda _: None})
    served = {route.name: serialized for route, _, serialized in api._served.values()}
    assert served["invocation"] == InvocationResponse.json_of
    answer = api.answer(
        "POST", "/invocation", "application/json", '{"endpoint_name":"e","data":"x"}'
    )
    assert answer.status == 200
    assert answer.body == _model_dump(result)
