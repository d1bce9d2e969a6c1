"""Model-registry selection, against a stubbed SageMaker client (no AWS)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from infra.deployment_config import DeploymentConfig
from infra.model_registry import (
    ModelRegistryError,
    from_json,
    pinned_variants,
    select_variants,
    to_json,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ARN = "arn:aws:sagemaker:us-east-1:111122223333:model-package"


def package(group: str, version: int, status: str = "Approved", day: int = 0) -> dict[str, Any]:
    return {
        "ModelPackageGroupName": group,
        "ModelPackageVersion": version,
        "ModelPackageArn": f"{ARN}/{group}/{version}",
        "CreationTime": T0 + timedelta(days=day),
        "ModelPackageStatus": "Completed",
        "ModelApprovalStatus": status,
    }


@pytest.fixture
def sagemaker(aws_credentials: None) -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("sagemaker")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def listing(stubber: Stubber, group: str, *pages: list[dict[str, Any]]) -> None:
    for i, page in enumerate(pages):
        response: dict[str, Any] = {"ModelPackageSummaryList": page}
        params: dict[str, Any] = {
            "ModelPackageGroupName": group,
            "SortBy": "CreationTime",
            "SortOrder": "Descending",
        }
        if i + 1 < len(pages):
            response["NextToken"] = f"page{i + 1}"
        if i:
            params["NextToken"] = f"page{i}"
        stubber.add_response("list_model_packages", response, params)


def config(**fields: Any) -> DeploymentConfig:
    return DeploymentConfig(stage_name="dev", **fields)


def test_latest_approved_champion_and_newer_approved_challengers(sagemaker) -> None:
    client, stubber = sagemaker
    listing(
        stubber,
        "reviews-champion",
        [
            package("reviews-champion", 4, "PendingManualApproval", day=9),
            package("reviews-champion", 3, day=5),
            package("reviews-champion", 2, day=1),
        ],
    )
    listing(
        stubber,
        "reviews-challenger",
        [
            package("reviews-challenger", 9, day=8),
            package("reviews-challenger", 8, "Rejected", day=7),
            package("reviews-challenger", 7, day=6),
            package("reviews-challenger", 6, day=6),
            package("reviews-challenger", 2, day=2),  # older than the champion
        ],
    )
    selected = select_variants(client, "reviews", config(challenger_variant_count=2))
    assert [(v.variant_name, v.model_package_version) for v in selected] == [
        ("Champion3", 3),
        ("Challenger7", 7),  # the two newest approved, listed oldest first
        ("Challenger9", 9),
    ]
    assert selected[0].model_package_arn == f"{ARN}/reviews-champion/3"
    assert {(v.instance_count, v.instance_type) for v in selected} == {(1, "ml.m5.large")}


def test_challengers_never_older_than_the_champion(sagemaker) -> None:
    client, stubber = sagemaker
    listing(stubber, "reviews-champion", [package("reviews-champion", 5, day=10)])
    listing(stubber, "reviews-challenger", [package("reviews-challenger", 1, day=2)])
    selected = select_variants(client, "reviews", config(challenger_variant_count=3))
    assert [v.variant_name for v in selected] == ["Champion5"]


def test_pages_are_followed(sagemaker) -> None:
    client, stubber = sagemaker
    listing(
        stubber,
        "reviews-champion",
        [package("reviews-champion", 2, "PendingManualApproval", day=2)],
        [package("reviews-champion", 1, day=1)],
    )
    listing(stubber, "reviews-challenger", [])
    assert [v.variant_name for v in select_variants(client, "reviews", config())] == ["Champion1"]


def test_no_approved_champion_is_a_clear_error(sagemaker) -> None:
    client, stubber = sagemaker
    listing(stubber, "reviews-champion", [package("reviews-champion", 1, "PendingManualApproval")])
    with pytest.raises(ModelRegistryError, match="no approved model package in reviews-champion"):
        select_variants(client, "reviews", config())


def test_named_versions_and_names_are_used_as_given(sagemaker) -> None:
    client, stubber = sagemaker
    listing(
        stubber,
        "reviews-champion",
        [package("reviews-champion", 2), package("reviews-champion", 1)],
    )
    listing(stubber, "reviews-challenger", [package("reviews-challenger", 4)])
    selected = select_variants(
        client,
        "reviews",
        config(
            champion_variant_config={"model_package_version": 1, "variant_name": "Champion"},
            challenger_variant_config=[
                {"model_package_version": 4, "instance_type": "ml.c5.xlarge", "instance_count": 2}
            ],
        ),
    )
    assert [(v.variant_name, v.model_package_version) for v in selected] == [
        ("Champion", 1),
        ("Challenger4", 4),
    ]
    assert (selected[1].instance_type, selected[1].instance_count) == ("ml.c5.xlarge", 2)


def test_a_named_version_that_does_not_exist_is_an_error_not_a_shift(sagemaker) -> None:
    client, stubber = sagemaker
    listing(
        stubber,
        "reviews-champion",
        [package("reviews-champion", 2), package("reviews-champion", 1)],
    )
    with pytest.raises(
        ModelRegistryError, match=r"reviews-champion has no version 7 \(has: 1, 2\)"
    ):
        select_variants(
            client, "reviews", config(champion_variant_config={"model_package_version": 7})
        )


def test_a_named_version_that_is_not_approved_is_an_error(sagemaker) -> None:
    client, stubber = sagemaker
    listing(stubber, "reviews-champion", [package("reviews-champion", 1)])
    listing(stubber, "reviews-challenger", [package("reviews-challenger", 3, "Rejected")])
    with pytest.raises(ModelRegistryError, match="reviews-challenger version 3 is Rejected"):
        select_variants(
            client,
            "reviews",
            config(
                champion_variant_config={"model_package_version": 1},
                challenger_variant_config=[{"model_package_version": 3}],
            ),
        )


def test_duplicate_variant_names_are_refused(sagemaker) -> None:
    client, stubber = sagemaker
    listing(stubber, "reviews-champion", [package("reviews-champion", 1)])
    listing(stubber, "reviews-challenger", [package("reviews-challenger", 1)])
    with pytest.raises(ModelRegistryError, match="unique on an endpoint: Same"):
        select_variants(
            client,
            "reviews",
            config(
                champion_variant_config={"model_package_version": 1, "variant_name": "Same"},
                challenger_variant_config=[{"model_package_version": 1, "variant_name": "Same"}],
            ),
        )


def test_pinned_configs_build_arns_without_asking_the_registry() -> None:
    selected = pinned_variants(
        config(
            champion_variant_config={"model_package_version": 2},
            challenger_variant_config=[{"model_package_version": 5}],
        ),
        "reviews",
        "aws",
        "eu-west-1",
        "111122223333",
    )
    assert [v.model_package_arn for v in selected] == [
        "arn:aws:sagemaker:eu-west-1:111122223333:model-package/reviews-champion/2",
        "arn:aws:sagemaker:eu-west-1:111122223333:model-package/reviews-challenger/5",
    ]
    assert from_json(to_json(selected)) == selected
    with pytest.raises(ModelRegistryError, match="query the registry"):
        pinned_variants(config(), "reviews", "aws", "eu-west-1", "111122223333")


# Builds the stage's stacks: loads the CDK libraries (node).
@pytest.mark.slow
def test_synth_queries_the_registry_only_when_asked(monkeypatch, sagemaker) -> None:
    from infra.settings import Settings
    from infra.stages import selected_variants

    client, stubber = sagemaker
    calls: list[str] = []

    def fake_client(service: str) -> Any:
        calls.append(service)
        return client

    monkeypatch.setattr(boto3, "client", fake_client)
    latest = config()  # takes the latest approved versions: needs the registry
    assert selected_variants(Settings(), latest) == []
    assert calls == []

    listing(stubber, "reviews-champion", [package("reviews-champion", 1)])
    listing(stubber, "reviews-challenger", [])
    chosen = selected_variants(Settings(select_models=True), latest)
    assert calls == ["sagemaker"]
    assert [v.variant_name for v in chosen] == ["Champion1"]
