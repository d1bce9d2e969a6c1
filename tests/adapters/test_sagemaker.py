"""SageMaker adapters: the runtime through botocore Stubber, the catalog through moto."""

from __future__ import annotations

import io
import re

import boto3
import pytest
from botocore.exceptions import ReadTimeoutError
from botocore.response import StreamingBody
from botocore.stub import Stubber
from moto.core.exceptions import JsonRESTError
from moto.sagemaker.models import SageMakerModelBackend, sagemaker_backends

from abtest.adapters.endpoint_tags import STRATEGY_TAG, WARMUP_TAG
from abtest.adapters.sagemaker import (
    SageMakerEndpointCatalog,
    SageMakerModelEndpoint,
    SageMakerModelHost,
)
from abtest.errors import (
    ConfigError,
    ConflictError,
    ModelError,
    ModelHostError,
    ModelHostUnavailableError,
    NotFoundError,
)
from abtest.ports import ModelResult
from abtest.records import VariantConfig
from lambdas.wiring import PROMOTION_CLIENT

ENDPOINT = "reviews-helpfulness"


# ---- runtime: invoke_endpoint ---------------------------------------------------------


@pytest.fixture
def runtime(aws_credentials):
    client = boto3.client("sagemaker-runtime", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield SageMakerModelEndpoint(client=client), stubber
        stubber.assert_no_pending_responses()


def _body(payload: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(payload), len(payload))


def _request(variant: str | None = "Challenger1") -> dict:
    params = {
        "EndpointName": ENDPOINT,
        "Body": b'{"text": "great"}',
        "ContentType": "application/json",
        "Accept": "application/json",
        "InferenceId": "inf-1",
    }
    if variant is not None:
        params["TargetVariant"] = variant
    return params


def _invoke(endpoint: SageMakerModelEndpoint, variant: str | None = "Challenger1") -> ModelResult:
    return endpoint.invoke(ENDPOINT, variant, '{"text": "great"}', "application/json", "inf-1")


def test_invoke_targets_the_variant_and_parses_json(runtime):
    # GIVEN the endpoint answers JSON from the targeted variant
    endpoint, stubber = runtime
    stubber.add_response(
        "invoke_endpoint",
        {
            "Body": _body(b'{"score": 0.93}'),
            "ContentType": "application/json",
            "InvokedProductionVariant": "Challenger1",
        },
        _request("Challenger1"),
    )
    # WHEN invoked with a variant THEN TargetVariant and InferenceId are sent, JSON comes back
    assert _invoke(endpoint) == ModelResult("Challenger1", {"score": 0.93})


def test_invoke_without_variant_lets_the_endpoint_choose_and_reports_its_choice(runtime):
    endpoint, stubber = runtime
    stubber.add_response(
        "invoke_endpoint",
        {
            "Body": _body(b"[1, 2]"),
            "ContentType": "application/json; charset=utf-8",
            "InvokedProductionVariant": "Champion1",
        },
        _request(None),  # no TargetVariant key at all
    )
    assert _invoke(endpoint, None) == ModelResult("Champion1", [1, 2])


def test_invoke_returns_text_when_the_model_answers_something_else_than_json(runtime):
    endpoint, stubber = runtime
    stubber.add_response(
        "invoke_endpoint",
        {
            "Body": _body("0.5,positive,é".encode()),
            "ContentType": "text/csv",
            "InvokedProductionVariant": "Challenger1",
        },
        _request(),
    )
    assert _invoke(endpoint) == ModelResult("Challenger1", "0.5,positive,é")


def test_invalid_json_under_a_json_content_type_is_a_model_error(runtime):
    endpoint, stubber = runtime
    stubber.add_response(
        "invoke_endpoint",
        {
            "Body": _body(b"{not json"),
            "ContentType": "application/json",
            "InvokedProductionVariant": "Challenger1",
        },
        _request(),
    )
    with pytest.raises(ModelError, match="variant Challenger1 failed"):
        _invoke(endpoint)


@pytest.mark.parametrize(
    ("body", "served"),
    [
        (b'{"text": "\\ud83d\\ude00"}', True),  # an emoji, escaped as a pair: served
        (b'{"text": "\\ud83d"}', False),  # half of it (a JavaScript model's cut): UTF-8 cannot
        (b'{"text": "\\uDE00"}', False),
    ],
)
def test_an_answer_utf8_cannot_encode_is_a_model_error(runtime, body, served):
    # It was served as a 500: the response could not be serialized.
    endpoint, stubber = runtime
    answer = {"Body": _body(body), "ContentType": "application/json"}
    stubber.add_response("invoke_endpoint", {**answer, "InvokedProductionVariant": "A"}, _request())
    if served:
        assert _invoke(endpoint).predictions == {"text": "\U0001f600"}
        return
    with pytest.raises(ModelError, match=r"variant A failed.*surrogates not allowed"):
        _invoke(endpoint)


def test_unknown_endpoint_is_not_found(runtime):
    endpoint, stubber = runtime
    stubber.add_client_error(
        "invoke_endpoint",
        service_error_code="ValidationError",
        service_message=f"Endpoint {ENDPOINT} of account 123456789012 not found.",
        http_status_code=400,
    )
    with pytest.raises(NotFoundError) as raised:
        _invoke(endpoint)
    assert raised.value.status == 404
    assert ENDPOINT in raised.value.message


def test_variant_not_on_the_endpoint_is_a_conflict(runtime):
    endpoint, stubber = runtime
    stubber.add_client_error(
        "invoke_endpoint",
        service_error_code="ValidationError",
        service_message=f'Variant "Challenger9" does not exist on endpoint "{ENDPOINT}".',
        http_status_code=400,
    )
    with pytest.raises(ConflictError) as raised:
        _invoke(endpoint, "Challenger9")
    assert raised.value.status == 409
    assert "Challenger9" in raised.value.message


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ModelError", 424),
        ("ModelNotReadyException", 429),
        ("ServiceUnavailable", 503),
        ("InternalFailure", 500),
    ],
)
def test_runtime_failures_are_model_errors_naming_the_variant(runtime, code, status):
    endpoint, stubber = runtime
    stubber.add_client_error(
        "invoke_endpoint",
        service_error_code=code,
        service_message="Received server error (500) from primary with message boom",
        http_status_code=status,
    )
    with pytest.raises(ModelError) as raised:
        _invoke(endpoint)
    error = raised.value
    assert error.status == 502
    assert error.message.startswith("variant Challenger1 failed: ")
    assert code in error.message
    assert error.details[0]["variant_name"] == "Challenger1"


def test_a_model_error_keeps_the_status_the_model_container_answered(runtime):
    endpoint, stubber = runtime
    stubber.add_client_error(
        "invoke_endpoint",
        service_error_code="ModelError",
        service_message="Received client error (400) from primary with message bad input",
        http_status_code=424,
        modeled_fields={"OriginalStatusCode": 400, "OriginalMessage": "bad input"},
    )
    with pytest.raises(ModelError) as raised:
        _invoke(endpoint)
    assert raised.value.details == [
        {
            "endpoint_name": ENDPOINT,
            "variant_name": "Challenger1",
            "code": "ModelError",
            "model_status": 400,
        }
    ]


def test_a_validation_error_about_something_else_is_a_model_error(runtime):
    endpoint, stubber = runtime
    stubber.add_client_error(
        "invoke_endpoint",
        service_error_code="ValidationError",
        service_message="Inference id must match pattern",
        http_status_code=400,
    )
    with pytest.raises(ModelError, match="variant Challenger1 failed"):
        _invoke(endpoint)


class TimingOutRuntime:
    def invoke_endpoint(self, **params):
        raise ReadTimeoutError(endpoint_url="https://runtime.sagemaker.us-east-1.amazonaws.com")


def test_a_timeout_is_a_model_error_naming_the_variant():
    endpoint = SageMakerModelEndpoint(client=TimingOutRuntime())
    with pytest.raises(ModelError, match="variant Challenger1 failed: ReadTimeoutError"):
        _invoke(endpoint)


# ---- catalog: DescribeEndpoint + tags (moto) ------------------------------------------


@pytest.fixture
def sagemaker(fake_aws):
    client = boto3.client("sagemaker", region_name="us-east-1")
    for model in ("champion-model", "challenger-model"):
        client.create_model(
            ModelName=model,
            ExecutionRoleArn="arn:aws:iam::123456789012:role/sagemaker",
            PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/m:1"},
        )
    return client


def _create_endpoint(client, weights: dict[str, float], tags: dict[str, str]) -> None:
    variants = []
    for name, weight in weights.items():
        variants.append(
            {
                "VariantName": name,
                "ModelName": "champion-model" if name == "Champion1" else "challenger-model",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
                "InitialVariantWeight": weight,
            }
        )
    client.create_endpoint_config(
        EndpointConfigName=f"{ENDPOINT}-config", ProductionVariants=variants
    )
    client.create_endpoint(
        EndpointName=ENDPOINT,
        EndpointConfigName=f"{ENDPOINT}-config",
        Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
    )


def test_describe_reads_variants_weights_and_tags(sagemaker):
    # GIVEN an endpoint with two variants, tagged by the deployment stack
    _create_endpoint(
        sagemaker,
        {"Champion1": 3.0, "Challenger1": 1.0},
        {STRATEGY_TAG: "UCB1", WARMUP_TAG: "50", "team": "reviews"},
    )
    # WHEN registration describes it
    config = SageMakerEndpointCatalog(client=sagemaker).describe(ENDPOINT)
    # THEN weights come from the endpoint, parameters from the tags (defaults where absent)
    assert config.endpoint_name == ENDPOINT
    assert (config.strategy, config.strategy_params, config.warmup) == ("UCB1", {"floor": 0.01}, 50)
    assert config.variants == (VariantConfig("Champion1", 3.0), VariantConfig("Challenger1", 1.0))


def test_describe_uses_current_weights_once_they_changed(sagemaker):
    _create_endpoint(sagemaker, {"Champion1": 1.0, "Challenger1": 1.0}, {})
    sagemaker.update_endpoint_weights_and_capacities(
        EndpointName=ENDPOINT,
        DesiredWeightsAndCapacities=[
            {"VariantName": "Champion1", "DesiredWeight": 4.0},
            {"VariantName": "Challenger1", "DesiredWeight": 1.0},
        ],
    )
    config = SageMakerEndpointCatalog(client=sagemaker).describe(ENDPOINT)
    assert config.variants == (VariantConfig("Champion1", 4.0), VariantConfig("Challenger1", 1.0))


def test_a_variant_without_a_current_weight_falls_back_to_its_initial_weight(aws_credentials):
    # GIVEN an endpoint still being created: one variant has no CurrentWeight yet
    client = boto3.client("sagemaker", region_name="us-east-1")
    arn = f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{ENDPOINT}"
    with Stubber(client) as stubber:
        stubber.add_response(
            "describe_endpoint",
            {
                "EndpointName": ENDPOINT,
                "EndpointArn": arn,
                "EndpointConfigName": "cfg",
                "EndpointStatus": "Creating",
                "CreationTime": "2026-01-01T00:00:00Z",
                "LastModifiedTime": "2026-01-01T00:00:00Z",
                "ProductionVariants": [
                    {"VariantName": "Champion1", "CurrentWeight": 2.0},
                    {"VariantName": "Challenger1"},
                ],
            },
            {"EndpointName": ENDPOINT},
        )
        # Tags come in pages.
        stubber.add_response(
            "list_tags",
            {"Tags": [{"Key": STRATEGY_TAG, "Value": "EpsilonGreedy"}], "NextToken": "t2"},
            {"ResourceArn": arn},
        )
        stubber.add_response(
            "list_tags",
            {"Tags": [{"Key": "ab-testing:epsilon", "Value": "0.2"}]},
            {"ResourceArn": arn, "NextToken": "t2"},
        )
        stubber.add_response(
            "describe_endpoint_config",
            {
                "EndpointConfigName": "cfg",
                "EndpointConfigArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/cfg",
                "CreationTime": "2026-01-01T00:00:00Z",
                "ProductionVariants": [
                    {"VariantName": "Champion1", "ModelName": "m1", "InitialVariantWeight": 1.0},
                    {"VariantName": "Challenger1", "ModelName": "m2", "InitialVariantWeight": 0.5},
                ],
            },
            {"EndpointConfigName": "cfg"},
        )
        config = SageMakerEndpointCatalog(client=client).describe(ENDPOINT)
        stubber.assert_no_pending_responses()
    assert (config.strategy, config.strategy_params) == (
        "EpsilonGreedy",
        {"epsilon": 0.2, "floor": 0.01},
    )
    assert config.variants == (VariantConfig("Champion1", 2.0), VariantConfig("Challenger1", 0.5))


def test_describe_of_a_missing_endpoint_is_not_found(sagemaker):
    with pytest.raises(NotFoundError, match="no-such-endpoint"):
        SageMakerEndpointCatalog(client=sagemaker).describe("no-such-endpoint")


def test_describe_with_a_bad_tag_is_a_config_error(sagemaker):
    _create_endpoint(
        sagemaker,
        {"Champion1": 1.0, "Challenger1": 1.0},
        {STRATEGY_TAG: "EpsilonGreedy", "ab-testing:epsilon": "2"},
    )
    with pytest.raises(ConfigError, match="ab-testing:epsilon"):
        SageMakerEndpointCatalog(client=sagemaker).describe(ENDPOINT)


# ---- model host: UpdateEndpointWeightsAndCapacities (moto) ----------------------------


class Refusals:
    """SageMaker (moto) answering `operation` with an error `times` times, then doing it: the
    error travels as an HTTP answer, so botocore's retries see it as they would SageMaker's."""

    def __init__(
        self, monkeypatch, operation: str, code: str, status: int, times: int, message: str = ""
    ) -> None:
        self.code, self.status, self.left, self.sent = code, status, times, 0
        self.message = message or f"{code} (injected)"
        method = re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()
        self.real = getattr(SageMakerModelBackend, method)
        monkeypatch.setattr(
            SageMakerModelBackend, method, lambda backend, **kwargs: self.answer(backend, **kwargs)
        )

    def answer(self, backend, **kwargs):
        self.sent += 1
        if self.left == 0:
            return self.real(backend, **kwargs)
        self.left -= 1
        error = JsonRESTError(self.code, self.message)
        error.code = self.status
        raise error


@pytest.fixture
def host(sagemaker):
    _create_endpoint(sagemaker, {"Champion1": 1.0, "Challenger1": 1.0}, {})
    # The conclude function's client: its timeouts and tries
    client = boto3.client("sagemaker", region_name="us-east-1", config=PROMOTION_CLIENT.config())
    return SageMakerModelHost(client=client), client


def _weights(client) -> dict[str, tuple[float, float]]:
    variants = client.describe_endpoint(EndpointName=ENDPOINT)["ProductionVariants"]
    return {v["VariantName"]: (v["CurrentWeight"], v["DesiredWeight"]) for v in variants}


def test_promote_sets_the_winner_1_and_every_other_variant_0(host):
    model_host, client = host

    weights = model_host.promote(ENDPOINT, "Challenger1")

    assert weights == {"Champion1": 0.0, "Challenger1": 1.0}
    assert _weights(client) == {"Champion1": (0.0, 0.0), "Challenger1": (1.0, 1.0)}
    # What registration reads next: the winner's weight 1, the loser's 0
    config = SageMakerEndpointCatalog(client=client).describe(ENDPOINT)
    assert config.variants == (VariantConfig("Champion1", 0.0), VariantConfig("Challenger1", 1.0))


def test_promote_again_does_not_update_again(host, monkeypatch):
    model_host, _ = host
    model_host.promote(ENDPOINT, "Challenger1")
    # A second update while SageMaker applies the first would be refused: none is sent
    updates = Refusals(
        monkeypatch, "UpdateEndpointWeightsAndCapacities", "ValidationException", 400, 1
    )

    assert model_host.promote(ENDPOINT, "Challenger1") == {"Champion1": 0.0, "Challenger1": 1.0}
    assert updates.sent == 0


def test_brief_throttling_is_retried_by_botocore(host, monkeypatch):
    model_host, client = host
    throttled = Refusals(
        monkeypatch, "UpdateEndpointWeightsAndCapacities", "ThrottlingException", 400, 1
    )

    model_host.promote(ENDPOINT, "Challenger1")

    assert throttled.sent == 2  # refused once, then through
    assert _weights(client)["Challenger1"] == (1.0, 1.0)


@pytest.mark.parametrize(
    ("code", "status"),
    [("ThrottlingException", 400), ("InternalFailure", 500)],
)
def test_throttling_past_the_retries_is_503_naming_the_call_and_changes_nothing(
    host, monkeypatch, code, status
):
    model_host, client = host
    refused = Refusals(monkeypatch, "UpdateEndpointWeightsAndCapacities", code, status, 99)

    with pytest.raises(ModelHostUnavailableError) as raised:
        model_host.promote(ENDPOINT, "Challenger1")

    assert refused.sent == PROMOTION_CLIENT.attempts
    assert raised.value.status == 503
    assert raised.value.message.startswith(
        f"UpdateEndpointWeightsAndCapacities on SageMaker endpoint {ENDPOINT} failed: {code}"
    )
    assert _weights(client) == {"Champion1": (1.0, 1.0), "Challenger1": (1.0, 1.0)}


def test_an_endpoint_updating_is_503_and_not_updated(host, monkeypatch):
    model_host, _ = host
    # GIVEN the endpoint busy with another update (moto finishes its own at once)
    sagemaker_backends["123456789012"]["us-east-1"].endpoints[ENDPOINT].endpoint_status = "Updating"
    updates = Refusals(
        monkeypatch, "UpdateEndpointWeightsAndCapacities", "ValidationException", 400, 1
    )

    with pytest.raises(ModelHostUnavailableError, match="is Updating: SageMaker takes new weights"):
        model_host.promote(ENDPOINT, "Challenger1")
    assert updates.sent == 0


def test_an_update_refused_as_in_progress_is_503(host, monkeypatch):
    # GIVEN the endpoint starts updating between the description and the update
    model_host, _ = host
    arn = f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{ENDPOINT}"
    message = f'Cannot update in-progress endpoint "{arn}".'
    operation = "UpdateEndpointWeightsAndCapacities"
    Refusals(monkeypatch, operation, "ValidationException", 400, 1, message)

    with pytest.raises(ModelHostUnavailableError, match="Cannot update in-progress endpoint"):
        model_host.promote(ENDPOINT, "Challenger1")


@pytest.mark.parametrize(
    ("code", "status"), [("AccessDeniedException", 400), ("ValidationException", 400)]
)
def test_a_refusal_that_will_recur_is_502(host, code, status, monkeypatch):
    model_host, _ = host
    Refusals(monkeypatch, "UpdateEndpointWeightsAndCapacities", code, status, 1)

    with pytest.raises(ModelHostError, match=f"failed: {code}") as raised:
        model_host.promote(ENDPOINT, "Challenger1")
    assert raised.value.status == 502


def test_a_winner_sagemaker_does_not_have_is_502_naming_winner(host):
    model_host, _ = host

    with pytest.raises(ModelHostError, match="winner: 'Challenger2' is not a production variant"):
        model_host.promote(ENDPOINT, "Challenger2")


def test_promote_on_a_missing_endpoint_is_not_found(sagemaker):
    with pytest.raises(NotFoundError, match="not found"):
        SageMakerModelHost(client=sagemaker).promote("nope", "Challenger1")
