"""Synthesis of each test stage, shared by all tests, and template look-ups.

Synth runs CDK's node process (~10 s a stage), so every test reads the same
cloud assembly. With pytest-xdist the workers share it through a locked
directory: the first worker synthesizes, the others read the JSON; a worker that finds
a stage being synthesized synthesizes the others meanwhile instead of waiting idle.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The value lists Node majors whose end-of-life banner is silenced.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")

REPO = Path(__file__).resolve().parents[2]
CDK_CONTEXT = json.loads((REPO / "cdk.json").read_text())["context"]

REGISTRY = "arn:aws:sagemaker:us-east-1:111122223333:model-package"
# dev: the cdk.json defaults, with the registry's answer supplied as data.
DEV_SELECTION = [
    {
        "variant_name": "Champion3",
        "model_package_arn": f"{REGISTRY}/reviews-champion/3",
        "model_package_version": 3,
        "instance_count": 1,
        "instance_type": "ml.m5.large",
        "initial_variant_weight": 1.0,
    },
    {
        "variant_name": "Challenger5",
        "model_package_arn": f"{REGISTRY}/reviews-challenger/5",
        "model_package_version": 5,
        "instance_count": 1,
        "instance_type": "ml.m5.large",
        "initial_variant_weight": 1.0,
    },
]
# prod: values that differ from the defaults, to see context reach the template.
PROD_CONTEXT = {
    "stage_name": "prod",
    "throttle_rate_limit": 500,
    "throttle_burst_limit": 1000,
    "api_memory_mb": 512,
    "api_timeout_seconds": 20,
    "firehose_buffer_interval_seconds": 120,
    "firehose_buffer_size_mb": 16,
    "event_retention_days": 365,
}
# qa: the REST API with API keys.
QA_CONTEXT = {"stage_name": "qa", "auth": "api_key", "throttle_rate_limit": 50}
STAGES: dict[str, tuple[dict[str, Any], list[dict[str, Any]] | None]] = {
    "dev": ({}, DEV_SELECTION),
    "prod": (PROD_CONTEXT, None),
    "qa": (QA_CONTEXT, DEV_SELECTION),
}


@dataclass
class Synth:
    stage: str
    outdir: Path
    templates: dict[str, dict[str, Any]]

    def template(self, concern: str) -> Any:
        from aws_cdk.assertions import Template

        return Template.from_json(self.templates[concern])

    @property
    def report(self) -> dict[str, Any]:
        return json.loads((self.outdir / "validation-report.json").read_text())


def _synthesize(stage: str, outdir: Path) -> None:
    import aws_cdk as cdk

    from infra.model_registry import SelectedVariant
    from infra.stages import build_stage

    context, selection = STAGES[stage]
    variants = [SelectedVariant(**v) for v in selection] if selection else None
    app = cdk.App(context={**CDK_CONTEXT, **context}, outdir=str(outdir))
    stacks = build_stage(app, variants)
    app.synth()
    names = {concern: stack.artifact_id for concern, stack in stacks.items()}
    (outdir / "stacks.json").write_text(json.dumps(names))


def _synthesize_once(stage: str, synth_dir: Path, *, wait: bool) -> bool:
    """Synthesize `stage` unless another process has; False if one holds it and not `wait`."""
    with open(synth_dir / f"{stage}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            return False
        if not (synth_dir / stage / "stacks.json").exists():
            _synthesize(stage, synth_dir / stage)
    return True


def synth_stage(stage: str, synth_dir: Path) -> Synth:
    outdir = synth_dir / stage
    if not _synthesize_once(stage, synth_dir, wait=False):
        # Another worker is synthesizing it: rather than wait idle, synthesize the stages
        # nobody has started (the infra tests read all three), then wait for this one.
        for other in [s for s in STAGES if s != stage]:
            _synthesize_once(other, synth_dir, wait=False)
        _synthesize_once(stage, synth_dir, wait=True)
    names = json.loads((outdir / "stacks.json").read_text())
    templates = {
        concern: json.loads((outdir / f"{name}.template.json").read_text())
        for concern, name in names.items()
    }
    return Synth(stage, outdir, templates)


def resources(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def function(template: dict[str, Any], name: str) -> tuple[str, dict[str, Any]]:
    """The function `abtest-<name>-<stage>`: logical id and properties."""
    for logical_id, res in resources(template, "AWS::Lambda::Function").items():
        fn_name = res["Properties"].get("FunctionName", "")
        if fn_name.startswith(f"abtest-{name}-"):
            return logical_id, res["Properties"]
    raise KeyError(name)


def role_statements(template: dict[str, Any], role_logical_id: str) -> list[dict[str, Any]]:
    """Every statement of every policy attached to a role."""
    return [
        statement
        for policy in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": role_logical_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def function_permissions(template: dict[str, Any], name: str) -> dict[str, list[Any]]:
    """{action: [resources]} for the function's role, log-stream grant included."""
    _, props = function(template, name)
    role_id = props["Role"]["Fn::GetAtt"][0]
    granted: dict[str, list[Any]] = {}
    for statement in role_statements(template, role_id):
        assert statement["Effect"] == "Allow"
        actions = statement["Action"]
        targets = statement["Resource"]
        for action in [actions] if isinstance(actions, str) else actions:
            granted.setdefault(action, []).extend(
                targets if isinstance(targets, list) else [targets]
            )
    return granted
