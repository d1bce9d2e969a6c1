#!/usr/bin/env python3
"""abtest CDK app: `cdk synth|deploy -c stage_name=<stage>` builds every stack of one stage."""

import sys

import aws_cdk as cdk

from infra.deployment_config import DeploymentConfigError
from infra.settings import SettingsError
from infra.stages import build_stage

app = cdk.App()
try:
    build_stage(app)
except (SettingsError, DeploymentConfigError) as error:
    # The file, the key and the reason, on one line: a traceback would bury them.
    sys.exit(f"error: {error}")
app.synth()
