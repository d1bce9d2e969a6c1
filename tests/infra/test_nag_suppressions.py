"""Every cdk-nag acknowledgement covers a real finding, and says exactly what it allows.

A synth with the acknowledgements switched off lists what cdk-nag actually
finds; the real synth's metadata lists what was acknowledged, with its reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.infra.synth import Synth, _synthesize

# Slow: synthesizes a stage with cdk-nag's suppressions off.
pytestmark = pytest.mark.slow

ACK = "aws:cdk:acknowledged-rules"
# `service:Action` names in a reason; tags and placeholders are written without a colon.
ACTION = re.compile(r"\b[a-z0-9-]+:[A-Za-z0-9*]+")


@pytest.fixture(scope="module")
def findings(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str]]:
    """(rule id, construct path) of every AwsSolutions finding in dev, none acknowledged.

    dev holds every stack; one synth (a minute on a busy machine) is enough.
    """
    from infra import nag

    outdir = tmp_path_factory.mktemp("unacknowledged-dev")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nag, "suppress", lambda *args, **kwargs: None)
        with pytest.raises(Exception, match="ValidationFailed"):
            _synthesize("dev", outdir)
    report = json.loads((outdir / "validation-report.json").read_text())
    (found,) = [r for r in report["pluginReports"] if r["pluginName"] == "AwsSolutions"]
    return [
        (v["ruleName"], c["constructPath"])
        for v in found["violations"]
        for c in v["violatingConstructs"]
    ]


def _acknowledgements(outdir: Path) -> Iterator[tuple[str, str, str]]:
    """(construct path, rule id, reason) of every AwsSolutions acknowledgement."""
    for path in outdir.glob("*.metadata.json"):
        for construct, entries in json.loads(path.read_text()).items():
            for entry in entries:
                if entry["type"] != ACK:
                    continue
                for rule, reason in entry["data"].items():
                    rule = rule.removeprefix("Annotation::")
                    if rule.startswith("AwsSolutions-"):
                        yield construct.lstrip("/"), rule, reason


def _under(path: str, construct: str) -> bool:
    return path == construct or path.startswith(construct + "/")


def test_every_acknowledgement_covers_a_finding_under_its_construct(
    dev: Synth, findings: list[tuple[str, str]]
) -> None:
    acks = list(_acknowledgements(dev.outdir))
    assert acks
    stale = [
        (construct, rule)
        for construct, rule, _ in acks
        if not any(r == rule and _under(p, construct) for r, p in findings)
    ]
    assert stale == []


def _policies(tree: dict[str, Any], construct: str) -> Iterator[dict[str, Any]]:
    """The IAM policy documents of the construct and everything under it."""
    stack = [tree["tree"]]
    while stack:
        node = stack.pop()
        attributes = node.get("attributes") or {}
        if attributes.get("aws:cdk:cloudformation:type") == "AWS::IAM::Policy" and _under(
            node["path"], construct
        ):
            yield attributes["aws:cdk:cloudformation:props"]["policyDocument"]
        stack.extend((node.get("children") or {}).values())


def _nag_form(value: Any) -> str:
    """A resource as cdk-nag prints it in a finding id."""
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return f"<{value['Ref']}>"
    if "Fn::GetAtt" in value:
        return f"<{'.'.join(value['Fn::GetAtt'])}>"
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(_nag_form(p) for p in parts)
    return json.dumps(value)  # Fn::Sub and the like: never a wildcard finding here


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_each_wildcard_acknowledgement_names_exactly_what_it_allows(dev: Synth, qa: Synth) -> None:
    """`Resource::<r>`: the reason names every action granted on r, and no other.

    `Action::<a>`: the reason names a itself. So a grant added later under an
    acknowledged wildcard fails here until its reason says why.
    """
    for synth in (dev, qa):
        tree = json.loads((synth.outdir / "tree.json").read_text())
        for construct, rule, reason in _acknowledgements(synth.outdir):
            finding = re.fullmatch(r"AwsSolutions-IAM5\[(Resource|Action)::(.+)\]", rule)
            if not finding:
                continue
            kind, target = finding.groups()
            if kind == "Action":
                assert target in reason, (construct, rule)
                continue
            granted = {
                action
                for document in _policies(tree, construct)
                for statement in document["Statement"]
                if target in {_nag_form(r) for r in _listed(statement["Resource"])}
                for action in _listed(statement["Action"])
            }
            assert granted, (construct, rule)
            assert set(ACTION.findall(reason)) == granted, (construct, rule, reason)
