"""The multi-variant endpoint: one model per selected variant, tags the register function reads."""

from __future__ import annotations

from typing import Any

import pytest

from abtest.adapters.endpoint_tags import strategy_from_tags
from tests.infra.synth import DEV_SELECTION, Synth, resources

# Reads the synthesized stages: CDK synth runs node, seconds a stage.
pytestmark = pytest.mark.slow


def _props(template: dict[str, Any], type_: str) -> list[dict[str, Any]]:
    return [r["Properties"] for r in resources(template, type_).values()]


def test_dev_deploys_the_selected_model_packages_as_variants(dev: Synth) -> None:
    deployment = dev.templates["deployment"]
    models = resources(deployment, "AWS::SageMaker::Model")
    packages = [m["Properties"]["Containers"][0]["ModelPackageName"] for m in models.values()]
    assert sorted(packages) == sorted(v["model_package_arn"] for v in DEV_SELECTION)
    (config,) = _props(deployment, "AWS::SageMaker::EndpointConfig")
    variants = config["ProductionVariants"]
    assert [v["VariantName"] for v in variants] == ["Champion3", "Challenger5"]
    for variant in variants:
        assert variant["InitialInstanceCount"] == 1
        assert variant["InstanceType"] == "ml.m5.large"
        assert variant["InitialVariantWeight"] == 1
        assert variant["ModelName"]["Fn::GetAtt"][0] in models


def test_prod_pins_the_versions_its_config_names(prod: Synth) -> None:
    deployment = prod.templates["deployment"]
    (config,) = _props(deployment, "AWS::SageMaker::EndpointConfig")
    by_name = {v["VariantName"]: v for v in config["ProductionVariants"]}
    assert list(by_name) == ["Champion1", "Challenger1", "Challenger2"]
    # Per-variant overrides win over the top-level instance settings.
    assert (by_name["Champion1"]["InstanceType"], by_name["Champion1"]["InitialInstanceCount"]) == (
        "ml.m5.large",
        2,
    )
    assert (
        by_name["Challenger1"]["InstanceType"],
        by_name["Challenger1"]["InitialInstanceCount"],
    ) == (
        "ml.c5.large",
        2,
    )
    assert by_name["Challenger2"]["InitialInstanceCount"] == 1
    packages = [
        m["Containers"][0]["ModelPackageName"]["Fn::Join"][1][-1]
        for m in _props(deployment, "AWS::SageMaker::Model")
    ]
    assert sorted(packages) == [
        ":model-package/reviews-challenger/1",
        ":model-package/reviews-challenger/2",
        ":model-package/reviews-champion/1",
    ]


def test_endpoint_name_carries_prefix_and_stage_and_the_ab_testing_tags(stage: Synth) -> None:
    (endpoint,) = _props(stage.templates["deployment"], "AWS::SageMaker::Endpoint")
    assert endpoint["EndpointName"] == f"abtest-{stage.stage}-reviews"
    tags = {t["Key"]: t["Value"] for t in endpoint["Tags"]}
    expected_warmup = "100" if stage.stage == "prod" else "0"
    # The shipped configs run the default allocation: its two parameters, tagged at their
    # defaults, so the register function reads back exactly what the config meant.
    assert tags == {
        "ab-testing:strategy": "TopTwoThompson",
        "ab-testing:beta": "0.9",
        "ab-testing:floor": "0.01",
        "ab-testing:warmup": expected_warmup,
        # The experiment settings, at their defaults (the shipped configs set none).
        "ab-testing:reward": "binary",
        "ab-testing:unit": "user",
        "ab-testing:attribution_window_seconds": "604800",
        "ab-testing:planned_sample_size": "40000",
        "ab-testing:auto_conclude": "false",
    }
    read = strategy_from_tags(tags)
    assert (read.strategy, read.strategy_params, str(read.warmup)) == (
        "TopTwoThompson",
        {"beta": 0.9, "floor": 0.01},
        expected_warmup,
    )


def test_models_run_isolated_under_their_own_role(stage: Synth) -> None:
    deployment = stage.templates["deployment"]
    (role_id,) = resources(deployment, "AWS::IAM::Role")
    for model in _props(deployment, "AWS::SageMaker::Model"):
        assert model["EnableNetworkIsolation"] is True
        assert model["ExecutionRoleArn"] == {"Fn::GetAtt": [role_id, "Arn"]}
    (role,) = _props(deployment, "AWS::IAM::Role")
    principal = role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
    assert principal == {"Service": "sagemaker.amazonaws.com"}


def test_dashboard_plots_reward_rate_per_variant(prod: Synth) -> None:
    (dashboard,) = _props(prod.templates["deployment"], "AWS::CloudWatch::Dashboard")
    body = str(dashboard["DashboardBody"])
    assert "Reward rate per variant" in body
    for variant in ("Champion1", "Challenger1", "Challenger2"):
        assert (
            f'\\"variant_name\\",\\"{variant}\\"' in body or f'"variant_name","{variant}"' in body
        )
    assert "IF(inv0 > 0, reward0 / inv0, 0)" in body
