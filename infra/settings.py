"""Deployment settings: the `cdk.json` context keys, validated once at synth.

Every knob the stacks read lives here with its default, so `cdk.json`, the
tests and the README agree on one list. An unknown or bad key fails synth with
the key's name instead of deploying something half-configured.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from abtest.config_types import describe_errors

Auth = Literal["iam", "api_key", "none"]
PythonRuntime = Literal["python3.12", "python3.13"]
LOG_RETENTION_DAYS = (7, 14, 30, 90, 180, 365)


class SettingsError(ValueError):
    """A context key is missing, unknown or out of range."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # No hyphen: endpoints are `<prefix><stage>-<project>`, and `dev-eu` would sit under `dev`'s.
    stage_name: str = Field("dev", pattern=r"^[a-z][a-z0-9]{0,15}$")
    project_name: str = Field("reviews", pattern=r"^[a-z][a-z0-9-]{0,31}$")
    # SageMaker lower-cases endpoint names in ARNs, so the IAM prefix must be lower case.
    endpoint_prefix: str = Field("abtest-", pattern=r"^[a-z0-9][a-z0-9-]{0,40}$")

    auth: Auth = "iam"
    throttle_rate_limit: float = Field(100.0, gt=0)
    throttle_burst_limit: int = Field(200, gt=0)

    python_runtime: PythonRuntime = "python3.13"
    powertools_layer_version: int = Field(25, ge=1)
    api_memory_mb: int = Field(256, ge=128, le=10240)
    api_timeout_seconds: int = Field(15, ge=1, le=29)
    metrics_memory_mb: int = Field(512, ge=128, le=10240)
    metrics_timeout_seconds: int = Field(120, ge=1, le=900)
    register_memory_mb: int = Field(256, ge=128, le=10240)
    register_timeout_seconds: int = Field(30, ge=1, le=900)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_retention_days: int = 30

    assignment_ttl_seconds: int = Field(30 * 24 * 3600, ge=60)
    metrics_cache_seconds: float = Field(5.0, ge=0)

    firehose_buffer_interval_seconds: int = Field(60, ge=0, le=900)
    firehose_buffer_size_mb: int = Field(5, ge=1, le=128)
    event_retention_days: int = Field(90, ge=1)
    metrics_retry_attempts: int = Field(2, ge=0, le=2)

    # Stages whose tables and event bucket survive `cdk destroy`.
    retained_stages: tuple[str, ...] = ("prod",)
    alarm_email: str = ""
    # Query the model registry at synth (the pipeline's CodeBuild step does); needs AWS.
    select_models: bool = False

    @field_validator("log_retention_days")
    @classmethod
    def _a_cloudwatch_retention(cls, days: int) -> int:
        if days not in LOG_RETENTION_DAYS:
            raise ValueError(f"must be one of {', '.join(map(str, LOG_RETENTION_DAYS))}")
        return days

    @field_validator("retained_stages", mode="before")
    @classmethod
    def _comma_separated(cls, stages: Any) -> Any:
        """`-c retained_stages=prod,qa` arrives as one string."""
        return (
            tuple(s.strip() for s in stages.split(",") if s.strip())
            if isinstance(stages, str)
            else stages
        )

    @property
    def retain_data(self) -> bool:
        return self.stage_name in self.retained_stages

    @property
    def runtime_tag(self) -> str:
        """`python3.13` -> `python313`, the spelling in the Powertools layer name."""
        return self.python_runtime.replace(".", "")


def settings_from_context(context: dict[str, Any]) -> Settings:
    """Validate the keys this app owns: the snake_case ones.

    CDK's own keys (`@aws-cdk/...` flags, `aws:cdk:...`, `acknowledged-issue-numbers`,
    lookup caches) all contain `@`, `:` or `-`, and pass through.
    """
    ours = {k: v for k, v in context.items() if k.isidentifier()}
    try:
        return Settings.model_validate(ours)
    except ValidationError as err:
        raise SettingsError(
            f"bad cdk.json context: {describe_errors(err, model=Settings)}"
        ) from None
