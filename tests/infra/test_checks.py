"""cdk-nag, cfn-lint and the CDK CLI over the synthesized stages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra.synth import REPO, Synth

# cdk-nag over synthesized stages, cfn-lint and the CDK CLI as subprocesses: the slowest checks.
pytestmark = pytest.mark.slow


def test_cdk_nag_aws_solutions_has_no_unacknowledged_findings(stage: Synth, qa: Synth) -> None:
    for synth in (stage, qa):
        reports = {r["pluginName"]: r for r in synth.report["pluginReports"]}
        # Every finding, warning or error, either fails synth or is acknowledged with a reason.
        assert reports.get("AwsSolutions", {"violations": []})["violations"] == []
        assert all(r["conclusion"] == "success" for r in reports.values())


def test_every_stack_was_checked_by_cdk_nag(stage: Synth) -> None:
    """A stack outside the app's Validations would pass silently: make sure all are inside."""
    manifest = json.loads((stage.outdir / "manifest.json").read_text())
    stacks = [
        a for a, v in manifest["artifacts"].items() if v["type"] == "aws:cloudformation:stack"
    ]
    assert sorted(stacks) == sorted(
        f"abtest-{c}-{stage.stage}"
        if c in ("api", "service-catalog")
        else f"abtest-{c}-reviews-{stage.stage}"
        for c in ("api", "service-catalog", "pipeline", "deployment")
    )


def _cfn_lint(paths: list[Path]) -> list[dict]:
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run(
        [str(cfn_lint), "--format", "json", *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
    )
    return json.loads(result.stdout or "[]")


@pytest.mark.slow(seconds=7)
def test_cfn_lint_finds_no_errors(prod: Synth, qa: Synth) -> None:
    """prod (HTTP API, IAM auth, every setting off its default) and qa (REST API, API
    keys): between them every resource kind; dev would repeat prod at 3 s a template."""
    templates = [p for synth in (prod, qa) for p in synth.outdir.glob("*.template.json")]
    assert len(templates) == 5 + 4  # 4 stacks + the product template; qa has no endpoint
    errors = [m for m in _cfn_lint(templates) if m["Level"] == "Error"]
    assert errors == []


@pytest.mark.slow(seconds=15)  # a whole synth in node, the CLI's own
def test_npx_cdk_synth_prod_works_offline_without_credentials(tmp_path: Path) -> None:
    npx = shutil.which("npx")
    assert npx, "node and npm are needed (make test installs the pinned CDK CLI)"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_"))}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
        AWS_EC2_METADATA_DISABLED="true",
        NPM_CONFIG_UPDATE_NOTIFIER="false",
        CDK_DISABLE_VERSION_CHECK="1",
    )
    env.pop("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", None)  # the banner must not show
    out = tmp_path / "cdk.out"
    result = subprocess.run(
        [
            npx,
            "--no-install",
            "cdk",
            "synth",
            "-c",
            "stage_name=prod",
            "--no-notices",
            "--quiet",
            "-o",
            str(out),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # make runs it on a supported Node.js (a Node 24 LTS in .node/ if the system's is older)
    assert "end-of-life" not in result.stdout + result.stderr, result.stderr[:1500]
    for name in (
        "abtest-api-prod",
        "abtest-deployment-reviews-prod",
        "abtest-pipeline-reviews-prod",
        "abtest-service-catalog-prod",
    ):
        assert (out / f"{name}.template.json").is_file(), name
