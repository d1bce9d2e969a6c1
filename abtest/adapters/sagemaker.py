"""SageMaker: invoke a production variant (runtime), describe an endpoint (registration), and
set its production-variant weights to a concluded experiment's winner (promotion)."""

from __future__ import annotations

import json
import re
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from abtest.adapters.endpoint_tags import strategy_from_tags
from abtest.adapters.model_answers import check_encodable
from abtest.config_types import ExperimentSettings
from abtest.errors import (
    BadRequestError,
    ConflictError,
    ModelError,
    ModelHostError,
    ModelHostUnavailableError,
    NotFoundError,
)
from abtest.ports import ModelResult
from abtest.records import EndpointConfig, VariantConfig

# What the runtime says for a missing endpoint: "Endpoint <name> of account <id> not found."
_ENDPOINT_NOT_FOUND = re.compile(r"Endpoint \S+ of account \S+ not found", re.IGNORECASE)
# SageMaker's default when an endpoint config leaves InitialVariantWeight out.
DEFAULT_VARIANT_WEIGHT = 1.0
# The only status in which SageMaker takes new weights; any other answers a ValidationException
# ("Cannot update in-progress endpoint"), as does an update that races another one.
IN_SERVICE = "InService"
_IN_PROGRESS = re.compile(r"in[- ]progress|is (updating|creating|system ?updating)", re.IGNORECASE)
# Errors that pass: botocore's standard mode retried them already, and a later request can
# succeed. 5xx answers are transient too.
_TRANSIENT_CODES = frozenset(
    {"ThrottlingException", "Throttling", "ThrottledException", "TooManyRequestsException"}
)


def _error(exc: ClientError) -> tuple[str, str]:
    error = exc.response.get("Error", {})
    return str(error.get("Code", "")), str(error.get("Message", ""))


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


class SageMakerModelEndpoint:
    """ModelEndpoint on the SageMaker runtime: `invoke_endpoint` with TargetVariant."""

    def __init__(self, *, client: Any) -> None:
        """`client` is a boto3 `sagemaker-runtime` client."""
        self.client = client

    def invoke(
        self,
        endpoint_name: str,
        variant_name: str | None,
        data: str,
        content_type: str,
        inference_id: str,
    ) -> ModelResult:
        params: dict[str, Any] = {
            "EndpointName": endpoint_name,
            "Body": data.encode(),
            "ContentType": content_type,
            "Accept": "application/json",
            "InferenceId": inference_id,
        }
        if variant_name is not None:
            params["TargetVariant"] = variant_name
        variant = variant_name or "(chosen by the endpoint)"
        try:
            response = self.client.invoke_endpoint(**params)
            body = response["Body"].read()
        except ClientError as exc:
            raise _invoke_error(exc, endpoint_name, variant_name) from exc
        except BotoCoreError as exc:  # timeouts, connection errors
            raise _model_error(endpoint_name, variant, type(exc).__name__, str(exc)) from exc
        answered = response.get("InvokedProductionVariant") or variant_name or ""
        if not _is_json(response.get("ContentType", "")):
            return ModelResult(answered, body.decode(errors="replace"))
        try:
            answer = json.loads(body)
            check_encodable(answer, body)
        except ValueError as exc:  # UnicodeEncodeError is one
            raise _model_error(
                endpoint_name, answered, "InvalidJSON", f"response is not valid JSON: {exc}"
            ) from exc
        return ModelResult(answered, answer)


def _invoke_error(exc: ClientError, endpoint_name: str, variant_name: str | None) -> Exception:
    code, message = _error(exc)
    variant = variant_name or "(chosen by the endpoint)"
    if code in ("ValidationError", "ValidationException"):
        if _ENDPOINT_NOT_FOUND.match(message):
            return NotFoundError(f"endpoint {endpoint_name} not found: {message}")
        # A TargetVariant the endpoint lacks is a ValidationError whose message names it.
        if variant_name is not None and (variant_name in message or "variant" in message.lower()):
            return ConflictError(
                f"variant {variant_name} is not on endpoint {endpoint_name}: {message}",
                details=[{"field": "endpoint_variant", "message": message}],
            )
    return _model_error(endpoint_name, variant, code or type(exc).__name__, message, exc)


def _model_error(
    endpoint_name: str, variant: str, code: str, message: str, exc: ClientError | None = None
) -> ModelError:
    detail: dict[str, Any] = {"endpoint_name": endpoint_name, "variant_name": variant, "code": code}
    if exc is not None and "OriginalStatusCode" in exc.response:
        # A ModelError carries what the model container itself answered.
        detail["model_status"] = exc.response["OriginalStatusCode"]
    return ModelError(f"variant {variant} failed: {code}: {message}", details=[detail])


class SageMakerEndpointCatalog:
    """EndpointCatalog on SageMaker: DescribeEndpoint weights and the `ab-testing:*` tags."""

    def __init__(self, *, client: Any) -> None:
        """`client` is a boto3 `sagemaker` client."""
        self.client = client

    def describe(self, endpoint_name: str) -> EndpointConfig:
        try:
            endpoint = self.client.describe_endpoint(EndpointName=endpoint_name)
        except ClientError as exc:
            code, message = _error(exc)
            # SageMaker answers a missing endpoint with: Could not find endpoint "<arn>".
            missing = "could not find endpoint" in message.lower()
            if code in ("ValidationException", "ValidationError") and missing:
                raise NotFoundError(f"endpoint {endpoint_name} not found") from exc
            raise
        tagged = strategy_from_tags(self._tags(endpoint["EndpointArn"]))
        return EndpointConfig(
            endpoint_name=endpoint_name,
            strategy=tagged.strategy,
            strategy_params=tagged.strategy_params,
            warmup=tagged.warmup,
            variants=self._variants(endpoint),
            settings=ExperimentSettings.of(tagged),
        )

    def prepare_variant(self, endpoint_name: str, variant_name: str, model: str | None) -> None:
        """A SageMaker variant is a production variant of the endpoint, deployed there first."""
        if model is not None:
            raise BadRequestError.field(
                "model",
                "not taken on AWS: deploy the model as a production variant of the SageMaker "
                "endpoint, then add the variant by name",
            )
        try:
            endpoint = self.client.describe_endpoint(EndpointName=endpoint_name)
        except ClientError as exc:
            if "could not find endpoint" in _error(exc)[1].lower():
                raise NotFoundError(f"endpoint {endpoint_name} not found") from exc
            raise
        production = [v["VariantName"] for v in endpoint.get("ProductionVariants", [])]
        if variant_name not in production:
            raise ConflictError(
                f"variant: {variant_name!r} is not a production variant of the SageMaker "
                f"endpoint {endpoint_name!r} (production variants: {', '.join(production)}); "
                "deploy it there first",
                details=[{"field": "variant", "message": "not a production variant"}],
            )

    def _variants(self, endpoint: dict[str, Any]) -> tuple[VariantConfig, ...]:
        """Current weights; the endpoint config's initial ones where the endpoint has none yet."""
        current = {
            v["VariantName"]: v.get("CurrentWeight") for v in endpoint.get("ProductionVariants", [])
        }
        if current and all(w is not None for w in current.values()):
            return tuple(VariantConfig(name, float(w)) for name, w in current.items())
        config = self.client.describe_endpoint_config(
            EndpointConfigName=endpoint["EndpointConfigName"]
        )
        initial = {
            v["VariantName"]: float(v.get("InitialVariantWeight", DEFAULT_VARIANT_WEIGHT))
            for v in config["ProductionVariants"]
        }
        variants = []
        for name in current or initial:  # an endpoint still creating may list no variants yet
            weight = current.get(name)
            if weight is None:
                weight = initial.get(name, DEFAULT_VARIANT_WEIGHT)
            variants.append(VariantConfig(name, float(weight)))
        return tuple(variants)

    def _tags(self, arn: str) -> dict[str, str]:
        tags: dict[str, str] = {}
        params = {"ResourceArn": arn}
        while True:
            page = self.client.list_tags(**params)
            tags.update((t["Key"], t["Value"]) for t in page.get("Tags", []))
            if not page.get("NextToken"):
                return tags
            params["NextToken"] = page["NextToken"]


class SageMakerModelHost:
    """ModelHost on SageMaker: `UpdateEndpointWeightsAndCapacities`, winner 1, the rest 0.

    The endpoint is described first, for two reasons: its variants (those the API retired or
    never knew get 0 too), and what it is already doing. Weights already desired (a retry
    after an answer lost, or a person who did it by hand) are not set again, which would
    fail anyway while SageMaker applies them (the endpoint is `Updating`); other weights
    while it is not InService are a 503: SageMaker refuses them until it is.
    """

    keeps_weights = True

    def __init__(self, *, client: Any) -> None:
        """`client` is a boto3 `sagemaker` client (its retries absorb brief throttling)."""
        self.client = client

    def promote(self, endpoint_name: str, winner: str) -> dict[str, float]:
        where = f"SageMaker endpoint {endpoint_name}"
        try:
            endpoint = self.client.describe_endpoint(EndpointName=endpoint_name)
        except (ClientError, BotoCoreError) as exc:
            raise _host_error(exc, where, "DescribeEndpoint") from exc
        variants = endpoint.get("ProductionVariants", [])
        names = [v["VariantName"] for v in variants]
        if winner not in names:
            raise ModelHostError(
                f"winner: {winner!r} is not a production variant of {where} "
                f"(variants: {', '.join(names) or 'none'})",
                details=[{"field": "winner", "message": f"not a variant of {where}"}],
            )
        weights = {name: 1.0 if name == winner else 0.0 for name in names}
        desired = {
            v["VariantName"]: v.get("DesiredWeight", v.get("CurrentWeight")) for v in variants
        }
        if desired == weights:
            return weights  # set already, or being set
        status = endpoint.get("EndpointStatus", "")
        if status != IN_SERVICE:
            raise ModelHostUnavailableError(
                f"{where} is {status}: SageMaker takes new weights only when it is {IN_SERVICE}",
                details=[{"field": "endpoint_status", "message": status}],
            )
        try:
            self.client.update_endpoint_weights_and_capacities(
                EndpointName=endpoint_name,
                DesiredWeightsAndCapacities=[
                    {"VariantName": name, "DesiredWeight": weight}
                    for name, weight in weights.items()
                ],
            )
        except (ClientError, BotoCoreError) as exc:
            raise _host_error(exc, where, "UpdateEndpointWeightsAndCapacities") from exc
        return weights


def _host_error(exc: ClientError | BotoCoreError, where: str, operation: str) -> Exception:
    """503 for what can pass (throttling after botocore's retries, 5xx, timeouts, the endpoint
    busy updating), 404 for an endpoint SageMaker does not have, 502 for any other refusal."""
    if isinstance(exc, BotoCoreError):  # timeouts, connection errors
        return ModelHostUnavailableError(
            f"{operation} on {where} failed: {type(exc).__name__}: {exc}",
            details=[{"operation": operation, "code": type(exc).__name__}],
        )
    code, message = _error(exc)
    details = [{"operation": operation, "code": code, "message": message}]
    text = f"{operation} on {where} failed: {code}: {message}"
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code in _TRANSIENT_CODES or status >= 500 or _IN_PROGRESS.search(message):
        return ModelHostUnavailableError(text, details=details)
    if "could not find endpoint" in message.lower():
        return NotFoundError(f"{where} not found: {message}", details=details)
    return ModelHostError(text, details=details)
