"""Dev and prod in one account: neither stage's API reaches the other's endpoint."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

import pytest

from tests.infra.synth import Synth, function, function_permissions, resources

# Slow: reads the synthesized stages.
pytestmark = pytest.mark.slow


def _endpoint_name(synth: Synth) -> str:
    (endpoint,) = resources(synth.templates["deployment"], "AWS::SageMaker::Endpoint").values()
    return endpoint["Properties"]["EndpointName"]


def _endpoint_config_name(synth: Synth) -> str:
    template = synth.templates["deployment"]
    (config,) = resources(template, "AWS::SageMaker::EndpointConfig").values()
    return config["Properties"]["EndpointConfigName"]


def _endpoint_patterns(arns: list[Any], resource: str) -> list[str]:
    """`abtest-dev-*` out of `Fn::Join [..., ":endpoint/abtest-dev-*"]`."""
    tails = [arn["Fn::Join"][1][-1] for arn in arns]
    return [t.split(f":{resource}/", 1)[1] for t in tails if f":{resource}/" in t]


def test_each_stage_invokes_and_registers_only_its_own_endpoints(dev: Synth, prod: Synth) -> None:
    names = {synth.stage: _endpoint_name(synth) for synth in (dev, prod)}
    for synth, other in ((dev, prod), (prod, dev)):
        api = synth.templates["api"]
        own, foreign = names[synth.stage], names[other.stage]

        invoke = _endpoint_patterns(
            function_permissions(api, "invocation")["sagemaker:InvokeEndpoint"], "endpoint"
        )
        register = function_permissions(api, "register")
        readable = _endpoint_patterns(
            register["sagemaker:DescribeEndpoint"] + register["sagemaker:ListTags"], "endpoint"
        )
        for patterns in (invoke, readable):
            assert patterns
            assert all(fnmatchcase(own, p) for p in patterns), (synth.stage, patterns)
            assert not any(fnmatchcase(foreign, p) for p in patterns), (synth.stage, patterns)

        (rule,) = resources(api, "AWS::Events::Rule").values()
        ((match,),) = rule["Properties"]["EventPattern"]["detail"].values()
        assert own.startswith(match["prefix"]) and not foreign.startswith(match["prefix"])

        # Registration describes the endpoint's config: its name must be under the grant.
        configs = _endpoint_patterns(
            register["sagemaker:DescribeEndpointConfig"], "endpoint-config"
        )
        own_config, foreign_config = _endpoint_config_name(synth), _endpoint_config_name(other)
        assert configs
        assert all(fnmatchcase(own_config, p) for p in configs), (own_config, configs)
        assert not any(fnmatchcase(foreign_config, p) for p in configs), (synth.stage, configs)

        prefix = function(api, "register")[1]["Environment"]["Variables"]["ENDPOINT_PREFIX"]
        assert own.startswith(prefix) and not foreign.startswith(prefix)
