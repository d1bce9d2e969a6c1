"""The per-stage deployment config (`infra/config/<stage>.json`), as in the original template.

It says which strategy the endpoint runs and which model versions become its
variants. A bad file fails with the key and the reason, before anything is
deployed.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from abtest.config_types import Name, StrategyFields, describe_errors

CONFIG_DIR = Path(__file__).resolve().parent / "config"
REPO = CONFIG_DIR.parents[1]


class DeploymentConfigError(ValueError):
    """The config file is missing, not JSON, or has a bad key."""


class VariantConfig(BaseModel):
    """One explicitly chosen model version; unset fields fall back to the top-level ones."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_package_version: int = Field(ge=1)
    variant_name: Name | None = None
    instance_count: int | None = Field(None, ge=1)
    instance_type: str | None = Field(None, pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
    initial_variant_weight: float = Field(1.0, gt=0)


class DeploymentConfig(StrategyFields):
    """The file: the strategy keys every surface shares (`strategy`, `strategy_params`,
    `warmup`, and the original template's `epsilon`), then the variants' instances."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stage_name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,15}$")
    instance_count: int = Field(1, ge=1)
    instance_type: str = Field("ml.m5.large", pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
    challenger_variant_count: int = Field(1, ge=0, le=9)
    champion_variant_config: VariantConfig | None = None
    challenger_variant_config: list[VariantConfig] = Field(default_factory=list, max_length=9)

    @model_validator(mode="after")
    def _challengers_agree(self) -> DeploymentConfig:
        named = len(self.challenger_variant_config)
        count_given = "challenger_variant_count" in self.model_fields_set
        if named and count_given and self.challenger_variant_count != named:
            raise ValueError(
                f"challenger_variant_count is {self.challenger_variant_count} but "
                f"challenger_variant_config names {named} versions"
            )
        return self

    @property
    def pins_every_version(self) -> bool:
        """True when no variant needs the registry's "latest approved" lookup."""
        return self.champion_variant_config is not None and (
            bool(self.challenger_variant_config) or self.challenger_variant_count == 0
        )


def _shown(path: Path) -> Path:
    """The path as a person finds it: from the repository's top when it is inside."""
    try:
        return path.resolve().relative_to(REPO)
    except ValueError:
        return path


def load_deployment_config(path: Path | str) -> DeploymentConfig:
    path = Path(path)
    shown = _shown(path)
    try:
        raw = json.loads(path.read_text())
    except OSError as err:
        raise DeploymentConfigError(f"{shown}: cannot read: {err.strerror}") from None
    except json.JSONDecodeError as err:
        raise DeploymentConfigError(f"{shown}: not JSON: {err.msg} at line {err.lineno}") from None
    try:
        return DeploymentConfig.model_validate(raw)
    except ValidationError as err:
        raise DeploymentConfigError(
            f"{shown}: {describe_errors(err, model=DeploymentConfig)}"
        ) from None


def config_for_stage(stage_name: str, config_dir: Path = CONFIG_DIR) -> DeploymentConfig:
    config = load_deployment_config(config_dir / f"{stage_name}.json")
    if config.stage_name != stage_name:
        raise DeploymentConfigError(
            f"{_shown(config_dir / f'{stage_name}.json')}: stage_name: is {config.stage_name!r}, "
            f"expected {stage_name!r}"
        )
    return config
