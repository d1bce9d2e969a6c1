"""The plain decoder (made once) and the checked one agree on every body: same value or
the same 400, so the faster way for common bodies changes no answer."""

from __future__ import annotations

import json

import pytest

from abtest.errors import BadRequestError
from abtest.http import api
from tests.hostile_bodies import hostile_bodies

PREFIX = '{"endpoint_name": "e", "user_id": "u", '
BODIES = [
    *(body for _, body in hostile_bodies("e").values()),
    PREFIX + '"data": "{}"}',
    PREFIX + '"data": [1.5, -0.0, 1e308, 2e-320, 10]}',
    PREFIX + '"reward": NaN}',
    PREFIX + '"reward": -Infinity}',
    PREFIX + '"reward": 1e400}',
    PREFIX + '"reward": -1e400}',
    PREFIX + '"data": ' + "[" * 128 + "]" * 128 + "}",
    PREFIX + '"data": ' + "[" * 127 + "]" * 127 + "}",
    '\ufeff{"endpoint_name": "e"}',  # a byte order mark
    "  [1, 2]  ",
    "null",
    '"text"',
    "{not json",
    '{"a": 1} trailing',
    "",
    json.dumps({"endpoint_name": "é", "context": {"k": True, "n": None}}),
    # Whitespace around the value or more after it: past the scanner-only way, to decode().
    '{"a": 1}\n',
    ' {"a": 1}',
    '{"a": 1}{"b": 2}',
    '{"a": 1} ,',
    "{",
    "}",
]


def _outcome(parse, text: str):
    try:
        return "value", parse(text)
    except BadRequestError as error:
        return "400", error.status, error.body()


@pytest.mark.parametrize("text", BODIES, ids=range(len(BODIES)))
def test_the_plain_path_answers_as_the_checked_one(text: str) -> None:
    def checked(t: str):
        return api._checked_json(t) if t else None

    assert _outcome(api._json_body, text) == _outcome(checked, text)
