"""Local model variants: callables, `module:function` references, HTTP URLs, failures."""

from __future__ import annotations

import json
import math
import random
import re
from collections import Counter

import pytest

from abtest.adapters.local_models import LocalModels, load_callable
from abtest.errors import ConfigError, ConflictError, ModelError, NotFoundError
from tests.embedded.helpers import echo


def test_a_callable_gets_the_payload_and_content_type() -> None:
    models = LocalModels({"A": echo})
    result = models.invoke("e", "A", '{"instances": ["x"]}', "application/json", "inf-1")
    assert result.variant_name == "A"
    assert result.predictions == {
        "data": '{"instances": ["x"]}',
        "content_type": "application/json",
    }


def test_a_module_function_reference_is_imported() -> None:
    models = LocalModels({"A": "tests.embedded.helpers:echo"})
    assert models.invoke("e", "A", "hi", "text/plain", "i").predictions["data"] == "hi"
    assert load_callable("abtest.demo.reviews:champion").__name__ == "champion"


@pytest.mark.parametrize(
    ("reference", "reason"),
    [
        ("no_such_module_xyz:f", "cannot import"),
        ("tests.embedded.helpers:absent", "no attribute"),
        ("tests.embedded.helpers:ENDPOINT", "not callable"),
    ],
)
def test_a_bad_reference_is_a_config_error(reference: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        LocalModels({"A": reference})


def test_a_url_is_posted_the_payload(model_url: str) -> None:
    models = LocalModels({"B": f"{model_url}/invocations"})
    result = models.invoke("e", "B", "some text", "text/plain", "i")
    assert result.predictions == {"got": "some text", "content_type": "text/plain"}
    models.close()


@pytest.mark.parametrize(
    ("variants", "reason"),
    [
        ({"Broken": "tests.embedded.helpers:broken"}, "weights file is corrupt"),
        ({"Broken": "tests.embedded.helpers:not_json"}, "TypeError"),
        ({"Broken": "tests.embedded.helpers:half_an_emoji"}, "surrogates not allowed"),
    ],
)
def test_a_failing_callable_is_a_model_error_naming_the_variant(variants, reason: str) -> None:
    models = LocalModels(variants)
    with pytest.raises(ModelError) as raised:
        models.invoke("e", "Broken", "{}", "application/json", "i")
    assert "'Broken'" in raised.value.message
    assert reason in raised.value.message
    assert raised.value.status == 502


def _circular() -> list:
    answer: list = []
    answer.append(answer)
    return answer


@pytest.mark.parametrize(
    "answer",
    [
        [1, 2.5, "é", None, True], {"scores": [0.1]}, "text", "😀", 10**30, math.nan, math.inf,
        {1: "int key", None: "null key", 1.5: "float key"}, [[[[]]]], (1, 2),
        {1, 2}, b"bytes", {(1,): "tuple key"}, object(), [1, object()], _circular(),
    ],
    ids=lambda answer: re.sub(r" at 0x[0-9a-f]+", "", repr(answer)),  # the same in every worker
)  # fmt: skip
def test_an_answer_is_taken_exactly_when_json_dumps_takes_it_and_refused_in_its_words(
    answer: object,
) -> None:
    """The check of a model's answer is json.dumps's (made faster, the same verdict): what it
    encodes is served, what it refuses is the variant's failure with json.dumps's error. (And
    then UTF-8's: a lone surrogate, which json.dumps escapes, is refused too, above.)"""
    try:
        json.dumps(answer)
        expected = None
    except Exception as error:
        expected = f"{type(error).__name__}: {error}"
    models = LocalModels({"A": lambda data, content_type: answer}, inline={"A"})
    if expected is None:
        assert models.invoke("e", "A", "{}", "application/json", "i").predictions is answer
        return
    with pytest.raises(ModelError) as raised:
        models.invoke("e", "A", "{}", "application/json", "i")
    assert raised.value.message == f"model variant 'A' failed: {expected}"


def test_a_failing_url_is_a_model_error_naming_the_variant(model_url: str) -> None:
    models = LocalModels(
        {
            "Remote": f"{model_url}/fail",
            "Gone": "http://127.0.0.1:9/x",
            "Cut": f"{model_url}/half-an-emoji",
        }
    )
    with pytest.raises(ModelError, match=r"'Remote'.*answered 500: out of memory"):
        models.invoke("e", "Remote", "{}", "application/json", "i")
    with pytest.raises(ModelError, match=r"'Cut'.*surrogates not allowed"):
        models.invoke("e", "Cut", "{}", "application/json", "i")
    with pytest.raises(ModelError, match=r"'Gone'.*did not answer"):
        models.invoke("e", "Gone", "{}", "application/json", "i")


def test_unknown_variant_and_endpoint_are_refused() -> None:
    models = LocalModels({"A": echo}, endpoint_name="e")
    with pytest.raises(ConflictError, match="'Z'"):
        models.invoke("e", "Z", "{}", "application/json", "i")
    with pytest.raises(NotFoundError, match="'other'"):
        models.invoke("other", "A", "{}", "application/json", "i")


def test_without_a_variant_the_initial_weights_choose() -> None:
    # GIVEN weights 1:3; WHEN 4,000 calls name no variant (the fallback path)
    models = LocalModels({"A": echo, "B": echo}, weights={"A": 1, "B": 3}, rng=random.Random(7))
    n = 4_000
    chosen = Counter(models.invoke("e", None, "{}", "x", "i").variant_name for _ in range(n))
    # THEN B's share is 3/4 within 5 binomial standard errors (sd = sqrt(p(1-p)/n) ~ 0.0068)
    assert abs(chosen["B"] / n - 0.75) < 5 * math.sqrt(0.75 * 0.25 / n)
    # AND a zero weight is never chosen
    never = LocalModels({"A": echo, "B": echo}, weights={"A": 0, "B": 1})
    assert {never.invoke("e", None, "{}", "x", "i").variant_name for _ in range(200)} == {"B"}


def test_an_added_model_is_called_by_name_and_never_by_the_fallback() -> None:
    from abtest.errors import BadRequestError

    models = LocalModels(
        {"A": "tests.embedded.helpers:constant"}, rng=random.Random(0), endpoint_name="e"
    )
    with pytest.raises(BadRequestError, match=r"^model: ") as error:
        models.add("B", "no_such_module_x:f")
    assert error.value.details[0]["field"] == "model"

    models.add("B", "tests.embedded.helpers:echo")

    assert models.invoke("e", "B", "x", "text/plain", "i").predictions["data"] == "x"
    assert {models.invoke("e", None, "x", "text/plain", "i").variant_name for _ in range(50)} == {
        "A"
    }
