"""Retained data stays put, and every log expires."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.infra.synth import CDK_CONTEXT, Synth, resources

# Slow: reads the synthesized stages.
pytestmark = pytest.mark.slow

RETENTION_DAYS = CDK_CONTEXT["log_retention_days"]


def _templates(synth: Synth) -> list[dict[str, Any]]:
    """Every template of the stage, the Service Catalog product's included."""
    products = [json.loads(p.read_text()) for p in synth.outdir.glob("*.product.template.json")]
    return [*synth.templates.values(), *products]


def _expiring_groups(template: dict[str, Any]) -> set[str]:
    groups = resources(template, "AWS::Logs::LogGroup")
    for logical_id, group in groups.items():
        assert group["Properties"].get("RetentionInDays") == RETENTION_DAYS, logical_id
    return set(groups)


def test_retained_stages_tables_refuse_deletion(stage: Synth) -> None:
    tables = resources(stage.templates["api"], "AWS::DynamoDB::Table").values()
    assert len(tables) == 2
    protected = stage.stage in CDK_CONTEXT["retained_stages"]
    assert [t["Properties"].get("DeletionProtectionEnabled", False) for t in tables] == [
        protected,
        protected,
    ]
    assert {t["DeletionPolicy"] for t in tables} == {"Retain" if protected else "Delete"}


def test_every_log_group_expires_and_every_writer_uses_one(stage: Synth) -> None:
    for template in _templates(stage):
        groups = _expiring_groups(template)
        for logical_id, fn in resources(template, "AWS::Lambda::Function").items():
            # The bucket-notification handler included: CDK gives it no group of its own.
            target = fn["Properties"].get("LoggingConfig", {}).get("LogGroup", {})
            assert target.get("Ref") in groups, logical_id
        for logical_id, build in resources(template, "AWS::CodeBuild::Project").items():
            logs = build["Properties"]["LogsConfig"]["CloudWatchLogs"]
            assert logs["Status"] == "ENABLED"
            assert logs["GroupName"]["Ref"] in groups, logical_id
        streams = resources(template, "AWS::KinesisFirehose::DeliveryStream")
        for logical_id, stream in streams.items():
            options = stream["Properties"]["ExtendedS3DestinationConfiguration"][
                "CloudWatchLoggingOptions"
            ]
            assert options["Enabled"] is True
            assert options["LogGroupName"]["Ref"] in groups, logical_id
