"""The admin routes' Lambda functions over moto: every transition, the IAM principal in the
audit log, a request with no principal refused, and re-registration keeping the state."""

from __future__ import annotations

import pytest

from tests.api_gateway import Context, api_event, call
from tests.lambdas.doubles import ENDPOINT, create_endpoint, state_change

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


@pytest.mark.parametrize("route", ["list", "show", "pause", "resume", "conclude", "retire-variant"])
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
