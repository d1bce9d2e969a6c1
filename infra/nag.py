"""cdk-nag wiring: the AwsSolutions pack on every stack, acknowledgements with their reasons.

cdk-nag v3 reports through CDK's policy validation: an unacknowledged finding
fails `cdk synth`. A finding on one resource (e.g. one wildcard resource of an
IAM policy) is acknowledged by its full id, `AwsSolutions-IAM5[Resource::...]`.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Stack, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct


def check(scope: IConstruct) -> None:
    Validations.of(scope).add_plugins(AwsSolutionsChecks(scope, verbose=True))


def suppress(construct: IConstruct, rule: str, reason: str, *findings: str) -> None:
    """Acknowledge `AwsSolutions-<rule>` on a construct and everything under it.

    Granular rules (IAM4, IAM5) need each finding named, e.g. `Resource::<arn>/*`;
    the reason must then hold for every finding named (see `suppress_each`).
    """
    ids = [f"{rule}[{f}]" for f in findings] or [rule]
    Validations.of(construct).acknowledge(
        *(Acknowledgment(id=f"AwsSolutions-{i}", reason=reason) for i in ids)
    )


def suppress_each(construct: IConstruct, rule: str, reasons: dict[str, str]) -> None:
    """One reason per finding of a granular rule: `Resource::*` names the actions it allows.

    The tests hold each reason to exactly what it covers, so a grant added later
    under the same wildcard fails until its reason says why.
    """
    for finding, reason in reasons.items():
        suppress(construct, rule, reason, finding)


def arn_finding(scope: IConstruct, value: object) -> str:
    """A resource as cdk-nag prints it: `Ref` -> `<Id>`, `Fn::GetAtt` -> `<Id.Arn>`."""
    return _flatten(Stack.of(scope).resolve(value))


def _flatten(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Ref" in value:
        return f"<{value['Ref']}>"
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return f"<{'.'.join(value['Fn::GetAtt'])}>"
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(_flatten(p) for p in parts)
    raise ValueError(f"no cdk-nag form for {value!r}")
