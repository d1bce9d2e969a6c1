"""Concluding through the conclude function over moto: SageMaker's production-variant weights
go to the winner; a throttled or refused update is answered as such and leaves the promotion
pending (never reported done) until a conclusion finishes it; re-registration keeps it all."""

from __future__ import annotations

import boto3
import pytest
from moto.core.exceptions import JsonRESTError
from moto.sagemaker.models import SageMakerModelBackend, sagemaker_backends

from lambdas.wiring import PROMOTION_CLIENT
from tests.api_gateway import Context, api_event, call
from tests.lambdas.doubles import ENDPOINT, create_endpoint, state_change, store_unreachable

TAGS = {"ab-testing:strategy": "ThompsonSampling", "ab-testing:warmup": "0"}
NAME = {"endpoint_name": ENDPOINT}
CONCLUDE = {**NAME, "winner": "Challenger1", "reason": "clear win"}
EVEN = {"Champion1": (1.0, 1.0), "Challenger1": (1.0, 1.0)}
PROMOTED = {"Champion1": (0.0, 0.0), "Challenger1": (1.0, 1.0)}


@pytest.fixture
def registered(aws):
    create_endpoint(TAGS)
    aws.register.lambda_handler(state_change(ENDPOINT, "IN_SERVICE"), Context())
    return aws


def admin(aws, route: str, body: dict):
    return call(getattr(aws, route), api_event(f"/admin/{route}", body))


def sagemaker_weights() -> dict[str, tuple[float, float]]:
    """(CurrentWeight, DesiredWeight) of each production variant, as SageMaker describes them."""
    variants = boto3.client("sagemaker").describe_endpoint(EndpointName=ENDPOINT)
    return {
        v["VariantName"]: (v["CurrentWeight"], v["DesiredWeight"])
        for v in variants["ProductionVariants"]
    }


class Refused:
    """SageMaker (moto) answering UpdateEndpointWeightsAndCapacities with `code` until
    `cleared`; the error goes back over HTTP, through the function's botocore retries."""

    def __init__(self, monkeypatch, code: str, status: int) -> None:
        self.code, self.status, self.refusing, self.sent = code, status, True, 0
        self.real = SageMakerModelBackend.update_endpoint_weights_and_capacities
        monkeypatch.setattr(
            SageMakerModelBackend,
            "update_endpoint_weights_and_capacities",
            lambda backend, **kwargs: self.answer(backend, **kwargs),
        )

    def answer(self, backend, **kwargs):
        self.sent += 1
        if not self.refusing:
            return self.real(backend, **kwargs)
        error = JsonRESTError(self.code, "Rate exceeded" if self.status < 500 else "Internal")
        error.code = self.status
        raise error


def test_conclude_sets_sagemakers_weights_to_the_winner(registered) -> None:
    assert sagemaker_weights() == EVEN

    status, body = admin(registered, "conclude", CONCLUDE)

    assert status == 200
    assert (body["state"], body["winner"], body["promotion"]) == (
        "concluded",
        "Challenger1",
        "done",
    )
    assert sagemaker_weights() == PROMOTED
    promote = body["audit_log"][-1]
    assert (promote["action"], promote["reason"]) == ("promote", "clear win")
    assert promote["details"]["weights"] == {"Champion1": 0.0, "Challenger1": 1.0}


@pytest.mark.parametrize(
    ("code", "status", "answered"),
    [
        ("ThrottlingException", 400, (503, "model_host_unavailable")),
        ("InternalFailure", 500, (503, "model_host_unavailable")),
        ("AccessDeniedException", 400, (502, "model_host_error")),
    ],
)
def test_a_failed_weight_update_is_not_reported_done_and_a_retry_finishes_it(
    registered, monkeypatch, code, status, answered
) -> None:
    refused = Refused(monkeypatch, code, status)

    got, body = admin(registered, "conclude", CONCLUDE)

    # THEN the answer names the call, what SageMaker said, and what is left to do
    assert (got, body["error"]) == answered
    assert (
        f"UpdateEndpointWeightsAndCapacities on SageMaker endpoint {ENDPOINT} failed"
        in (body["message"])
    )
    assert code in body["message"]
    assert "promotion in the model host pending: conclude again to finish it" in body["message"]
    transient = code != "AccessDeniedException"
    assert refused.sent == (PROMOTION_CLIENT.attempts if transient else 1)
    # AND the state says what is true: concluded here, not yet in SageMaker
    shown = admin(registered, "show", NAME)[1]
    assert (shown["state"], shown["winner"], shown["promotion"]) == (
        "concluded",
        "Challenger1",
        "pending",
    )
    assert shown["allowed_actions"] == ["conclude"]
    assert [e["action"] for e in shown["audit_log"]] == ["conclude"]
    assert sagemaker_weights() == EVEN
    # (the API itself serves the winner already)
    invoked = call(
        registered.invocation, api_event("/invocation", {**NAME, "user_id": "u", "data": "x"})
    )
    assert invoked[1]["endpoint_variant"] == "Challenger1"

    # WHEN SageMaker takes updates again and the conclusion is retried, naming no winner
    refused.refusing = False
    got, body = admin(registered, "conclude", NAME)

    assert (got, body["promotion"]) == (200, "done")
    assert sagemaker_weights() == PROMOTED
    assert [e["action"] for e in body["audit_log"]] == ["conclude", "promote"]
    assert admin(registered, "conclude", NAME)[0] == 409  # done: concluded is final


def test_an_endpoint_updating_is_503_until_it_is_in_service(registered) -> None:
    endpoint = sagemaker_backends["123456789012"]["us-east-1"].endpoints[ENDPOINT]
    endpoint.endpoint_status = "Updating"

    got, body = admin(registered, "conclude", CONCLUDE)

    assert (got, body["error"]) == (503, "model_host_unavailable")
    assert f"SageMaker endpoint {ENDPOINT} is Updating" in body["message"]
    assert admin(registered, "show", NAME)[1]["promotion"] == "pending"
    assert sagemaker_weights() == EVEN

    endpoint.endpoint_status = "InService"
    assert admin(registered, "conclude", NAME)[1]["promotion"] == "done"
    assert sagemaker_weights() == PROMOTED


def test_reregistration_after_a_promotion_keeps_it_concluded_with_its_winner(registered) -> None:
    admin(registered, "conclude", CONCLUDE)

    # WHEN SageMaker's state change (the weight update) registers the endpoint again
    result = registered.register.lambda_handler(state_change(ENDPOINT, "IN_SERVICE"), Context())

    assert result["action"] == "registered"
    shown = admin(registered, "show", NAME)[1]
    assert (shown["state"], shown["winner"], shown["promotion"]) == (
        "concluded",
        "Challenger1",
        "done",
    )
    assert [e["action"] for e in shown["audit_log"]] == ["conclude", "promote"]
    # The weights read are SageMaker's new ones; the winner serves everyone regardless
    weights = {m["variant_name"]: m["initial_variant_weight"] for m in shown["variant_metrics"]}
    assert weights == {"Champion1": 0.0, "Challenger1": 1.0}
    assert shown["allocation"] == {"Champion1": 0.0, "Challenger1": 1.0}
    for user in ("old", "new"):
        invoked = call(
            registered.invocation, api_event("/invocation", {**NAME, "user_id": user, "data": "x"})
        )
        assert (invoked[1]["endpoint_variant"], invoked[1]["assignment"]) == (
            "Challenger1",
            "concluded",
        )


def test_the_register_function_finishes_a_pending_promotion_once_in_service(registered) -> None:
    # GIVEN a conclusion made while the endpoint was updating: pending
    endpoint = sagemaker_backends["123456789012"]["us-east-1"].endpoints[ENDPOINT]
    endpoint.endpoint_status = "Updating"
    assert admin(registered, "conclude", CONCLUDE)[0] == 503

    # WHEN SageMaker says the endpoint is in service again (EventBridge -> register)
    endpoint.endpoint_status = "InService"
    registered.register.lambda_handler(state_change(ENDPOINT, "IN_SERVICE"), Context())

    # THEN the winner is promoted there, recorded as the register function's doing
    assert sagemaker_weights() == PROMOTED
    shown = admin(registered, "show", NAME)[1]
    assert (shown["state"], shown["promotion"]) == ("concluded", "done")
    assert [(e["actor"], e["action"]) for e in shown["audit_log"]][-1] == (
        "registration",
        "promote",
    )


def test_a_pending_promotion_and_a_store_outage_still_serve_only_the_winner(
    registered, monkeypatch
) -> None:
    def invoke(user: str) -> tuple[int, dict]:
        body = {**NAME, "user_id": user, "data": "x"}
        return call(registered.invocation, api_event("/invocation", body))

    # GIVEN a conclusion whose promotion SageMaker refused (its weights still even), read
    # by the invocation function, whose store then becomes unreachable
    Refused(monkeypatch, "AccessDeniedException", 400)
    assert admin(registered, "conclude", CONCLUDE)[0] == 502
    assert sagemaker_weights() == EVEN
    assert invoke("u")[1]["assignment"] == "concluded"
    store_unreachable(registered, monkeypatch)
    registered.runtime.calls.clear()

    # WHEN users arrive
    answers = [invoke(f"u{n}") for n in range(20)]

    # THEN the winner serves every one, named to SageMaker, not its even weights
    assert {status for status, _ in answers} == {200}
    assert {
        (a["assignment"], a["target_variant"], a["endpoint_variant"], a["propensity"])
        for _, a in answers
    } == {("fallback", "Challenger1", "Challenger1", 1.0)}
    assert {c["TargetVariant"] for c in registered.runtime.calls} == {"Challenger1"}
