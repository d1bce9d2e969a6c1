"""The commonest invocation body is checked without the model, to the same core request.

`InvocationRequest.plain_core` takes a body of `endpoint_name`, ASCII `data` and maybe an
ASCII `user_id` and repeats the model's checks on it; anything else is left to the model
(None). So it may only ever accept what the model accepts, and give what the model's
`to_core` gives: both are compared on random and hostile bodies, the edges included.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from pydantic import ValidationError

from abtest.http.api import Api
from abtest.http.bodies import MAX_ID_LENGTH
from abtest.http.invocation_bodies import InvocationRequest
from abtest.usecases.invoke import Invocation

# Names at the pattern's edges: hyphens inside, at the ends, doubled; a last newline (which a
# Python `$` would let through and pydantic's regex does not), non-ASCII letters and digits.
NAMES = [
    "bench", "a", "a-b", "a--b", "-a", "a-", "A9", "a_b", "a b", "a\n", "\na", "é", "a١", "",
    "a" * 63, "a" * 64, "a-" * 31 + "a", "a-" * 32,
]  # fmt: skip
TEXTS = [
    "", "x", "{}", '{"instances": [1]}', "é", "\ud800", "a\ud800", "\x00", "\n", " ", "用",
    "x" * MAX_ID_LENGTH, "x" * (MAX_ID_LENGTH + 1),
]  # fmt: skip
OTHERS: list[Any] = [None, 1, 1.5, True, [], {}, ["x"], {"a": 1}]
KEYS = ["endpoint_name", "data", "user_id", "content_type", "inference_id", "context", "extra"]


def _random_body(rng: random.Random) -> dict[str, Any]:
    body: dict[str, Any] = {}
    extra = rng.sample(KEYS, rng.randrange(1, 4)) if rng.random() < 0.3 else []
    for key in [*extra, "endpoint_name", "data"]:
        pool = NAMES if key == "endpoint_name" and rng.random() < 0.8 else TEXTS + OTHERS
        if rng.random() < 0.9:
            body[key] = rng.choice(pool)
    if rng.random() < 0.3:
        body["user_id"] = rng.choice(TEXTS + OTHERS + [f"u{rng.randrange(10**6)}"])
    return body


def _by_model(body: dict[str, Any]) -> Invocation | None:
    try:
        return InvocationRequest.model_validate(body).to_core()
    except ValidationError:
        return None


@pytest.mark.parametrize("seed", range(3))
def test_it_accepts_only_what_the_model_accepts_and_gives_the_same_core(seed: int) -> None:
    rng = random.Random(seed)
    taken = 0
    for _ in range(5_000):
        body = _random_body(rng)
        plain = InvocationRequest.plain_core(body)
        if plain is not None:
            taken += 1
            assert plain == _by_model(body), body
    assert taken > 250  # the comparison ran on accepted bodies too, not only on refusals


@pytest.mark.parametrize(
    "body",
    [
        {"endpoint_name": "bench", "data": "{}"},
        {"endpoint_name": "bench", "user_id": "r1", "data": "{}"},
        {"endpoint_name": "bench", "user_id": None, "data": ""},
        {"endpoint_name": "a" * 63, "user_id": "x" * MAX_ID_LENGTH, "data": '{"a": [1, 2]}'},
    ],
)
def test_the_commonest_bodies_take_it(body: dict[str, Any]) -> None:
    assert InvocationRequest.plain_core(body) == _by_model(body) is not None


@pytest.mark.parametrize(
    "body",
    [
        {"endpoint_name": "bench", "data": {"instances": [1]}},  # JSON data: serialized
        {"endpoint_name": "bench", "data": "{}", "context": {"country": "de"}},
        {"endpoint_name": "bench", "data": "{}", "inference_id": "i-1"},
        {"endpoint_name": "bench", "data": "{}", "unknown": 1},  # ignored by the model
        {"endpoint_name": "bench", "data": "é"},  # non-ASCII: the model decides
        {"endpoint_name": "bench", "data": "{}", "user_id": "\ud800"},
        {"endpoint_name": "bench\n", "data": "{}"},
        {"endpoint_name": "a" * 64, "data": "{}"},
        {"endpoint_name": "bench", "data": "{}", "user_id": ""},
        {"endpoint_name": "bench"},
    ],
)
def test_anything_else_is_left_to_the_model(body: dict[str, Any]) -> None:
    assert InvocationRequest.plain_core(body) is None


def test_the_api_answers_alike_whichever_way_a_body_is_checked() -> None:
    """Through the request path: the same core request reaches the use case both ways, and
    a body the plain check refuses still gets the model's 400 naming the field."""
    seen: list[Invocation] = []
    api = Api({"invocation": seen.append})
    plain = '{"endpoint_name": "bench", "user_id": "r1", "data": "{}"}'
    modelled = '{"endpoint_name": "bench", "user_id": "r1", "data": "{}", "unknown": 1}'
    for body in (plain, modelled):
        api.answer("POST", "/invocation", "application/json", body)
    assert seen[0] == seen[1] == Invocation(endpoint_name="bench", data="{}", user_id="r1")

    answer = api.answer("POST", "/invocation", None, '{"endpoint_name": "bench\\n", "data": ""}')
    assert answer.status == 400
    assert b'"field":"endpoint_name"' in answer.body.replace(b" ", b"")
