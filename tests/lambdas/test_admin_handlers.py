"""The admin routes' Lambda functions over moto: every transition, the IAM principal in the
audit log, a request with no principal refused, and re-registration keeping the state."""

from __future__ import annotations

import boto3
import pytest

from abtest.adapters.dynamodb import DynamoDBStore
from abtest.http.routes import ADMIN_ROUTE_NAMES
from abtest.records import VariantCounts, latency_counter
from tests.api_gateway import Context, api_event, call
from tests.lambdas.doubles import ENDPOINT, ENVIRONMENT, create_endpoint, state_change

TAGS = {"ab-testing:strategy": "ThompsonSampling", "ab-testing:warmup": "0"}
NAME = {"endpoint_name": ENDPOINT}
# The principal of the recorded (SigV4-signed) event.
PRINCIPAL = "arn:aws:sts::123456789012:assumed-role/abtest-simulate/abtest-simulate"


@pytest.fixture
def registered(aws):
    create_endpoint(TAGS)
    aws.register.lambda_handler(state_change(ENDPOINT, "IN_SERVICE"), Context())
    return aws


def admin(aws, route: str, body: dict, *, principal: bool = True):
    event = api_event(f"/admin/{route}", body)
    if not principal:  # an API key, or no authorizer: API Gateway names nobody
        event["requestContext"]["identity"].update(userArn=None, caller=None, user=None)
    return call(getattr(aws, route), event)


# Over 3 s on a shared machine (several servers or moto transactions).
@pytest.mark.slow
def test_every_transition_through_the_handlers(registered) -> None:
    aws = registered
    assert admin(aws, "list", {})[1]["endpoints"][0]["state"] == "running"

    assert admin(aws, "pause", {**NAME, "reason": "incident"})[1]["state"] == "paused"
    status, body = admin(aws, "pause", NAME)
    assert (status, body["error"]) == (409, "conflict")
    assert "is paused: cannot pause; allowed: resume, conclude" in body["message"]
    assert admin(aws, "resume", NAME)[1]["state"] == "running"
    assert admin(aws, "conclude", NAME)[0] == 409  # no winner yet, none named
    status, body = admin(aws, "conclude", {**NAME, "winner": "Challenger1"})
    assert (status, body["state"], body["winner"]) == (200, "concluded", "Challenger1")
    assert admin(aws, "resume", NAME)[0] == 409

    status, shown = admin(aws, "show", NAME)
    assert status == 200
    assert [(e["actor"], e["action"]) for e in shown["audit_log"]] == [
        (PRINCIPAL, "pause"),
        (PRINCIPAL, "resume"),
        (PRINCIPAL, "conclude"),
        (PRINCIPAL, "promote"),  # SageMaker's weights: see test_promotion_handlers.py
    ]
    assert shown["audit_log"][0]["reason"] == "incident"
    # The winner serves a new user
    invoked = call(aws.invocation, api_event("/invocation", {**NAME, "user_id": "u", "data": "x"}))
    assert (invoked[1]["endpoint_variant"], invoked[1]["assignment"]) == (
        "Challenger1",
        "concluded",
    )


@pytest.mark.parametrize("route", ADMIN_ROUTE_NAMES)
def test_admin_calls_without_an_iam_principal_are_403(registered, route) -> None:
    status, body = admin(registered, route, NAME, principal=False)

    assert (status, body["error"]) == (403, "forbidden")
    assert admin(registered, "show", NAME)[1]["version"] == 0  # nothing changed


def test_reregistration_from_sagemaker_keeps_the_state(registered) -> None:
    admin(registered, "pause", NAME)
    status, body = admin(registered, "retire-variant", {**NAME, "variant": "Challenger1"})
    assert (status, body["retired"]) == (200, ["Challenger1"])

    registered.register.lambda_handler(state_change(ENDPOINT, "IN_SERVICE"), Context())

    shown = admin(registered, "show", NAME)[1]
    assert (shown["state"], shown["retired"]) == ("paused", ["Challenger1"])
    assert [e["action"] for e in shown["audit_log"]] == ["pause", "retire-variant"]


# -- variants over time -----------------------------------------------------


def test_add_variant_takes_a_production_variant_of_the_sagemaker_endpoint(registered) -> None:
    aws = registered
    # GIVEN a running experiment with counted users
    for n in range(6):
        call(aws.invocation, api_event("/invocation", {**NAME, "user_id": f"u{n}", "data": "x"}))
    before = admin(aws, "show", NAME)[1]

    # WHEN a variant the SageMaker endpoint lacks is added: 409 naming it, nothing stored
    status, body = admin(aws, "add-variant", {**NAME, "variant": "Challenger2"})
    assert (status, body["details"][0]["field"]) == (409, "variant")
    assert "not a production variant" in body["message"]
    # a model on AWS: 400 naming it
    status, body = admin(aws, "add-variant", {**NAME, "variant": "Challenger2", "model": "m:f"})
    assert (status, body["details"][0]["field"]) == (400, "model")
    assert admin(aws, "show", NAME)[1]["version"] == 0

    # WHEN it is deployed there first (and the register function has not run yet)
    create_endpoint(TAGS, variants=("Champion1", "Challenger1", "Challenger2"))
    status, body = admin(aws, "add-variant", {**NAME, "variant": "Challenger2", "reason": "v2"})

    # THEN it joins at zero, the others' counters untouched, logged with the IAM principal
    assert status == 200, body
    assert body["variants"] == ["Champion1", "Challenger1", "Challenger2"]
    assert body["added"] == {"Challenger2": None}
    assert body["variant_metrics"][:2] == before["variant_metrics"]
    assert body["allocation"]["Challenger2"] > 0
    assert [(e["actor"], e["action"]) for e in body["audit_log"]] == [(PRINCIPAL, "add-variant")]
    # ... and the endpoint's state change, re-registering it, changes nothing more
    aws.register.lambda_handler(state_change(ENDPOINT, "IN_SERVICE"), Context())
    shown = admin(aws, "show", NAME)[1]
    assert (shown["version"], shown["added"]) == (1, {"Challenger2": None})
    # adding it again is 409 naming it
    assert admin(aws, "add-variant", {**NAME, "variant": "Challenger2"})[0] == 409


def test_a_new_production_variant_joins_by_registration_and_a_dropped_one_is_retired(
    registered,
) -> None:
    aws = registered
    create_endpoint(TAGS, variants=("Champion1", "Challenger2"))

    aws.register.lambda_handler(state_change(ENDPOINT, "IN_SERVICE"), Context())

    shown = admin(aws, "show", NAME)[1]
    assert shown["variants"] == ["Champion1", "Challenger2", "Challenger1"]
    assert (shown["retired"], shown["added"]) == (["Challenger1"], {"Challenger2": None})
    assert sorted(e["action"] for e in shown["audit_log"]) == ["add-variant", "retire-variant"]


def test_weights_through_the_handlers(aws) -> None:
    create_endpoint({"ab-testing:strategy": "WeightedSampling", "ab-testing:warmup": "0"})
    aws.register.lambda_handler(state_change(ENDPOINT, "IN_SERVICE"), Context())

    status, body = admin(aws, "weights", {**NAME, "weights": {"Challenger1": 3}})

    assert status == 200, body
    assert body["allocation"] == pytest.approx({"Champion1": 0.25, "Challenger1": 0.75})
    assert body["audit_log"][-1]["actor"] == PRINCIPAL
    assert admin(aws, "weights", {**NAME, "weights": {"Nope": 1}})[0] == 400
    # paused, the fixed weights stay the ones set by hand
    assert admin(aws, "pause", NAME)[1]["allocation"] == pytest.approx(
        {"Champion1": 0.25, "Challenger1": 0.75}
    )


def test_weights_of_a_bandit_through_the_handlers_are_409_naming_strategy(registered) -> None:
    status, body = admin(registered, "weights", {**NAME, "weights": {"Challenger1": 3}})

    assert (status, body["details"][0]["field"]) == (409, "strategy")


def test_an_add_racing_a_pause_through_the_handlers_leaves_the_pause_alone(
    registered, monkeypatch
) -> None:
    # GIVEN the production variant deployed, and a pause landing between the add's read and
    # its conditional write (the pause goes through another function, as it would)
    aws = registered
    create_endpoint(TAGS, variants=("Champion1", "Challenger1", "Challenger2"))
    store = getattr(aws, "add-variant").use_case.store
    real = store.change_lifecycle

    def pause_first(*args):
        monkeypatch.setattr(store, "change_lifecycle", real)
        assert admin(aws, "pause", NAME)[0] == 200
        return real(*args)

    monkeypatch.setattr(store, "change_lifecycle", pause_first)

    # WHEN the add is written, THEN it lost: 409, and the record is the pause's alone
    status, body = admin(aws, "add-variant", {**NAME, "variant": "Challenger2"})
    assert (status, body["details"][0]["message"]) == (409, "changed concurrently")
    shown = admin(aws, "show", NAME)[1]
    assert (shown["state"], shown["variants"]) == ("paused", ["Champion1", "Challenger1"])
    assert [e["action"] for e in shown["audit_log"]] == ["pause"]


def test_variant_changes_of_a_concluded_endpoint_are_409_naming_the_state(aws) -> None:
    create_endpoint({"ab-testing:strategy": "WeightedSampling", "ab-testing:warmup": "0"})
    aws.register.lambda_handler(state_change(ENDPOINT, "IN_SERVICE"), Context())
    create_endpoint(
        {"ab-testing:strategy": "WeightedSampling", "ab-testing:warmup": "0"},
        variants=("Champion1", "Challenger1", "Challenger2"),
    )
    admin(aws, "conclude", {**NAME, "winner": "Champion1"})

    for route, body in (
        ("add-variant", {"variant": "Challenger2"}),
        ("weights", {"weights": {"Champion1": 2}}),
    ):
        status, answer = admin(aws, route, {**NAME, **body})
        assert (status, answer["details"][0]["field"]) == (409, "state"), route
        assert "is concluded: cannot" in answer["message"]


def test_reinstate_through_the_handlers(aws) -> None:
    # GIVEN an endpoint with an error guardrail whose challenger failed 40 of its 200 calls
    create_endpoint({**TAGS, "ab-testing:max_error_rate": "0.05"})
    aws.register.lambda_handler(state_change(ENDPOINT, "IN_SERVICE"), Context())
    store = DynamoDBStore(
        ENVIRONMENT["ASSIGNMENT_TABLE"],
        ENVIRONMENT["METRICS_TABLE"],
        client=boto3.client("dynamodb"),
    )
    calls = latency_counter(8.0)  # every call took 8 ms
    store.apply_counts(
        "obj-1",
        {
            ENDPOINT: {
                "Champion1": VariantCounts(**{calls: 200}),
                "Challenger1": VariantCounts(model_errors=40, **{calls: 200}),
            }
        },
        1_700_000_000.0,
    )
    # A variant that is not demoted cannot be reinstated
    status, body = admin(aws, "reinstate", {**NAME, "variant": "Champion1"})
    assert (status, body["details"][0]["field"]) == (409, "variant")
    shown = admin(aws, "show", NAME)[1]
    assert "reinstate" in shown["allowed_actions"]
    assert shown["allocation"]["Challenger1"] == 0.0

    # WHEN a person reinstates it
    status, body = admin(aws, "reinstate", {**NAME, "variant": "Challenger1", "reason": "fixed"})

    # THEN it serves again, the audit log names who, and a second reinstate is refused
    assert status == 200, body
    assert body["allocation"]["Challenger1"] > 0.0
    assert "reinstate" not in body["allowed_actions"]
    last = body["audit_log"][-1]
    assert (last["actor"], last["action"], last["reason"]) == (PRINCIPAL, "reinstate", "fixed")
    assert admin(aws, "reinstate", {**NAME, "variant": "Challenger1"})[0] == 409
    # and once concluded nothing can be: reinstate is no longer offered, and is refused
    assert (
        "reinstate"
        not in admin(aws, "conclude", {**NAME, "winner": "Champion1"})[1]["allowed_actions"]
    )
    assert admin(aws, "reinstate", {**NAME, "variant": "Challenger1"})[0] == 409
