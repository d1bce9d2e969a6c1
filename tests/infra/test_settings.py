"""cdk.json context -> Settings: defaults documented in one place, bad keys named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.settings import Settings, SettingsError, settings_from_context
from tests.infra.synth import CDK_CONTEXT

README = Path(__file__).resolve().parents[2] / "README.md"


def test_cdk_json_sets_every_key_to_its_default() -> None:
    """cdk.json is the readable list of knobs: every field, at the value the code defaults to."""
    defaults = Settings()
    assert set(CDK_CONTEXT) == set(Settings.model_fields)
    for key, value in CDK_CONTEXT.items():
        default = getattr(defaults, key)
        assert (list(default) if isinstance(default, tuple) else default) == value, key


def test_deploy_guide_documents_every_context_key() -> None:
    text = README.read_text()
    missing = [key for key in Settings.model_fields if f"`{key}`" not in text]
    assert missing == []


def _json_or_text(token: str) -> object:
    try:
        return json.loads(token)
    except ValueError:  # dev, INFO, python3.13: plain text
        return token


def test_the_context_key_table_shows_each_default() -> None:
    """README, "Context keys": a row per key, in the code's order, with the code's default."""
    section = README.read_text().split("### Context keys (`cdk.json`)", 1)[1].split("\n#", 1)[0]
    rows = [line.split(" | ")[:2] for line in section.splitlines() if line.startswith("| `")]
    shown = {key.strip("| `"): _json_or_text(default.strip("`")) for key, default in rows}
    assert list(shown) == list(Settings.model_fields)
    defaults = Settings()
    for key, value in shown.items():
        default = getattr(defaults, key)
        assert (list(default) if isinstance(default, tuple) else default) == value, key


def test_cdk_cli_keys_pass_through() -> None:
    settings = settings_from_context(
        {
            "stage_name": "prod",
            "@aws-cdk/core:newStyleStackSynthesis": True,
            "aws:cdk:enable-path-metadata": True,
            "acknowledged-issue-numbers": [32775],
        }
    )
    assert settings.stage_name == "prod"


def test_command_line_strings_are_converted() -> None:
    """`-c throttle_rate_limit=500` arrives as a string."""
    settings = settings_from_context(
        {
            "throttle_rate_limit": "500",
            "select_models": "true",
            "log_retention_days": "90",
            "retained_stages": "prod, qa",
        }
    )
    assert settings.throttle_rate_limit == 500
    assert settings.select_models is True
    assert settings.log_retention_days == 90
    assert settings.retained_stages == ("prod", "qa")


@pytest.mark.parametrize(
    ("context", "key", "reason"),
    [
        ({"auth": "cognito"}, "auth", "Input should be 'iam', 'api_key' or 'none'"),
        ({"throttle_rate_limit": 0}, "throttle_rate_limit", "greater than 0"),
        ({"stage_name": "Prod"}, "stage_name", "should match pattern"),
        # A hyphen would put `dev-eu`'s endpoints under `dev`'s prefix.
        ({"stage_name": "dev-eu"}, "stage_name", "should match pattern"),
        ({"endpoint_prefix": "AB-"}, "endpoint_prefix", "should match pattern"),
        ({"api_timeout_seconds": 60}, "api_timeout_seconds", "less than or equal to 29"),
        ({"throttle_rat_limit": 5}, "throttle_rat_limit", "unknown key"),
        ({"python_runtime": "python3.9"}, "python_runtime", "python3.12"),
        ({"log_retention_days": 31}, "log_retention_days", "must be one of 7, 14, 30"),
    ],
)
def test_bad_context_names_the_key_and_the_reason(context: dict, key: str, reason: str) -> None:
    with pytest.raises(SettingsError) as err:
        settings_from_context(context)
    assert f"{key}: " in str(err.value)
    assert reason in str(err.value)


def test_data_is_retained_only_in_retained_stages() -> None:
    assert settings_from_context({"stage_name": "prod"}).retain_data
    assert not settings_from_context({"stage_name": "dev"}).retain_data
    assert settings_from_context({"stage_name": "dev", "retained_stages": ["dev"]}).retain_data


def test_every_allowed_log_retention_maps_to_a_cloudwatch_period() -> None:
    from infra.functions import RETENTION
    from infra.settings import LOG_RETENTION_DAYS

    assert set(RETENTION) == set(LOG_RETENTION_DAYS)
