#!/usr/bin/env python3
"""abtest CDK app: `cdk synth|deploy -c stage_name=<stage>` builds every stack of one stage."""

import aws_cdk as cdk

from infra.stages import build_stage

app = cdk.App()
build_stage(app)
app.synth()
