"""Names the stacks agree on: endpoints, the deployment stack, the model role's path.

Endpoints are `<endpoint_prefix><stage>-<project>`. Dev and prod may share an
account: each stage's API may invoke, and its register function registers,
only the endpoints under its own stage prefix, so a dev caller can never reach
the prod endpoint. Stage names have no hyphen (see `Settings.stage_name`), so
no stage's prefix covers another's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from infra.settings import Settings

SAGEMAKER_NAME_MAX = 63


def stage_prefix(settings: Settings) -> str:
    """`abtest-dev-`: the IAM resource prefix, the register rule's and function's filter."""
    return f"{settings.endpoint_prefix}{settings.stage_name}-"


def endpoint_name(settings: Settings) -> str:
    """The endpoint the project's deployment stack creates in this stage."""
    return f"{stage_prefix(settings)}{settings.project_name}"


def endpoint_config_name(settings: Settings, variants: Sequence[Mapping[str, Any]]) -> str:
    """`<endpoint name>-<hash of its variants>`: under the stage prefix, so that the stage's
    register function may describe it (its grant covers only that prefix); new for every
    change of variants, since an endpoint config cannot change and CloudFormation
    replaces it by creating the new one before it deletes the old."""
    digest = hashlib.sha256(json.dumps(list(variants), sort_keys=True).encode()).hexdigest()
    return f"{endpoint_name(settings)[: SAGEMAKER_NAME_MAX - 9]}-{digest[:8]}"


def deployment_stack_name(project_name: str, stage_name: str) -> str:
    return f"abtest-deployment-{project_name}-{stage_name}"


def model_role_path(project_name: str, stage_name: str) -> str:
    """The IAM path of a deployment stack's model role: the pipeline's deploy role manages those."""
    return f"/abtest/{project_name}/{stage_name}/"
