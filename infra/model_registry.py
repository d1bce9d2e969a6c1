"""Which model packages become the endpoint's variants.

From the registry groups `<project>-champion` and `<project>-challenger`:
the latest approved champion, and up to N approved challengers created after
it, unless the deployment config names versions. A named version that does
not exist, or is not approved, is an error: never a silent shift to another.

Runs only where AWS is reachable (the pipeline's CodeBuild step, via
`-c select_models=true`); the stacks take its result as plain data.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from infra.deployment_config import DeploymentConfig, VariantConfig

APPROVED = "Approved"


class ModelRegistryError(LookupError):
    """No approved champion, or a named version that cannot be used."""


@dataclass(frozen=True)
class ModelPackage:
    arn: str
    version: int
    status: str
    created: datetime


@dataclass(frozen=True)
class SelectedVariant:
    variant_name: str
    model_package_arn: str
    model_package_version: int
    instance_count: int
    instance_type: str
    initial_variant_weight: float = 1.0


def champion_group(project_name: str) -> str:
    return f"{project_name}-champion"


def challenger_group(project_name: str) -> str:
    return f"{project_name}-challenger"


def list_packages(client: Any, group: str) -> list[ModelPackage]:
    """Every version in the group, newest first."""
    packages: list[ModelPackage] = []
    kwargs = {"ModelPackageGroupName": group, "SortBy": "CreationTime", "SortOrder": "Descending"}
    while True:
        page = client.list_model_packages(**kwargs)
        packages += [
            ModelPackage(
                arn=p["ModelPackageArn"],
                version=int(p["ModelPackageVersion"]),
                status=p["ModelApprovalStatus"],
                created=p["CreationTime"],
            )
            for p in page["ModelPackageSummaryList"]
        ]
        if not page.get("NextToken"):
            return sorted(packages, key=lambda p: p.created, reverse=True)
        kwargs["NextToken"] = page["NextToken"]


def _named(packages: list[ModelPackage], group: str, version: int) -> ModelPackage:
    found = next((p for p in packages if p.version == version), None)
    if found is None:
        have = ", ".join(str(p.version) for p in sorted(packages, key=lambda p: p.version))
        raise ModelRegistryError(
            f"model package group {group} has no version {version} (has: {have or 'none'})"
        )
    if found.status != APPROVED:
        raise ModelRegistryError(f"{group} version {version} is {found.status}, not {APPROVED}")
    return found


def _variant(
    package: ModelPackage,
    role: str,
    config: DeploymentConfig,
    named: VariantConfig | None,
) -> SelectedVariant:
    return SelectedVariant(
        variant_name=(named and named.variant_name) or f"{role}{package.version}",
        model_package_arn=package.arn,
        model_package_version=package.version,
        instance_count=(named and named.instance_count) or config.instance_count,
        instance_type=(named and named.instance_type) or config.instance_type,
        initial_variant_weight=named.initial_variant_weight if named else 1.0,
    )


def select_variants(
    client: Any, project_name: str, config: DeploymentConfig
) -> list[SelectedVariant]:
    """The champion first, then the challengers oldest to newest."""
    group = champion_group(project_name)
    champions = list_packages(client, group)
    named = config.champion_variant_config
    if named:
        champion = _named(champions, group, named.model_package_version)
    else:
        champion = next((p for p in champions if p.status == APPROVED), None)
        if champion is None:
            raise ModelRegistryError(
                f"no approved model package in {group}: approve a champion before deploying"
            )
    selected = [_variant(champion, "Champion", config, named)]

    group = challenger_group(project_name)
    challengers = list_packages(client, group)
    if config.challenger_variant_config:
        for named in config.challenger_variant_config:
            package = _named(challengers, group, named.model_package_version)
            selected.append(_variant(package, "Challenger", config, named))
    else:
        newer = [p for p in challengers if p.status == APPROVED and p.created > champion.created]
        latest = sorted(newer[: config.challenger_variant_count], key=lambda p: p.created)
        selected += [_variant(p, "Challenger", config, None) for p in latest]
    _check_unique(selected)
    return selected


def pinned_variants(
    config: DeploymentConfig, project_name: str, partition: str, region: str, account: str
) -> list[SelectedVariant]:
    """The variants of a config that names every version, with ARNs built, not looked up."""
    if not config.pins_every_version:
        raise ModelRegistryError("the config does not name every version; query the registry")

    def arn(group: str, version: int) -> str:
        return f"arn:{partition}:sagemaker:{region}:{account}:model-package/{group}/{version}"

    def variant(named: VariantConfig, role: str, group: str) -> SelectedVariant:
        package = ModelPackage(
            arn(group, named.model_package_version),
            named.model_package_version,
            APPROVED,
            datetime.min,
        )
        return _variant(package, role, config, named)

    assert config.champion_variant_config is not None  # pins_every_version guarantees it
    selected = [variant(config.champion_variant_config, "Champion", champion_group(project_name))]
    selected += [
        variant(n, "Challenger", challenger_group(project_name))
        for n in config.challenger_variant_config
    ]
    _check_unique(selected)
    return selected


def _check_unique(selected: list[SelectedVariant]) -> None:
    names = [v.variant_name for v in selected]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ModelRegistryError(f"variant names must be unique on an endpoint: {', '.join(dupes)}")


def to_json(selected: list[SelectedVariant]) -> str:
    return json.dumps([asdict(v) for v in selected], indent=2)


def from_json(text: str) -> list[SelectedVariant]:
    return [SelectedVariant(**v) for v in json.loads(text)]
