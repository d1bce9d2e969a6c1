"""cdk-nag wiring: the AwsSolutions pack on every stack, acknowledgements with their reasons.

cdk-nag v3 reports through CDK's policy validation: an unacknowledged finding
fails `cdk synth`. A finding on one resource (e.g. one wildcard resource of an
IAM policy) is acknowledged by its full id, `AwsSolutions-IAM5[Resource::...]`.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct


def check(scope: IConstruct) -> None:
    Validations.of(scope).add_plugins(AwsSolutionsChecks(scope, verbose=True))


def suppress(construct: IConstruct, rule: str, reason: str, *findings: str) -> None:
    """Acknowledge `AwsSolutions-<rule>` on a construct and everything under it.

    Granular rules (IAM4, IAM5) need each finding named, e.g. `Resource::<arn>/*`.
    """
    ids = [f"{rule}[{f}]" for f in findings] or [rule]
    Validations.of(construct).acknowledge(
        *(Acknowledgment(id=f"AwsSolutions-{i}", reason=reason) for i in ids)
    )
