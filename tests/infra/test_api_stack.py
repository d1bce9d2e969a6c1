"""The API stack as deployed: routes, functions, permissions, storage, alarms, outputs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from abtest.http.routes import ADMIN_ROUTES, ALL_ROUTES, ROUTE_NAMES, Need
from abtest.ports import Count
from lambdas.routes import route_environment
from lambdas.wiring import request_budget_seconds
from tests.infra.synth import (
    CDK_CONTEXT,
    PROD_CONTEXT,
    Synth,
    function,
    function_permissions,
    resources,
)

# Reads the synthesized stages: CDK synth runs node, seconds a stage.
pytestmark = pytest.mark.slow

ROUTE_FUNCTIONS = tuple(route.function_name for route in ALL_ROUTES)
FUNCTIONS = (*ROUTE_FUNCTIONS, "metrics", "register")
BY_PATH = {route.path: route for route in ALL_ROUTES}


def logical_id(template: dict[str, Any], type_: str, name_key: str, name: str) -> str:
    found = [
        k for k, r in resources(template, type_).items() if r["Properties"].get(name_key) == name
    ]
    assert len(found) == 1, (type_, name, found)
    return found[0]


def arn(logical: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical, "Arn"]}


def live(template: dict[str, Any], name: str) -> str:
    """The logical id of the alias callers invoke: `live`, on a published version of `name`."""
    function_id, _ = function(template, name)
    versions = resources(template, "AWS::Lambda::Version")
    (alias,) = [
        logical
        for logical, res in resources(template, "AWS::Lambda::Alias").items()
        if res["Properties"]["FunctionName"] == {"Ref": function_id}
    ]
    props = resources(template, "AWS::Lambda::Alias")[alias]["Properties"]
    assert props["Name"] == "live"
    version = props["FunctionVersion"]["Fn::GetAtt"]
    assert version[1] == "Version"
    assert versions[version[0]]["Properties"]["FunctionName"] == {"Ref": function_id}
    # Its snapshot is billed while it exists: the next deploy deletes it.
    assert versions[version[0]]["DeletionPolicy"] == "Delete"
    return alias


def expected(stage: Synth, key: str) -> Any:
    overrides = PROD_CONTEXT if stage.stage == "prod" else {}
    return overrides.get(key, CDK_CONTEXT[key])


def test_each_route_is_a_post_on_its_own_function_with_payload_1_0(stage: Synth) -> None:
    api = stage.templates["api"]
    routes = resources(api, "AWS::ApiGatewayV2::Route")
    integrations = resources(api, "AWS::ApiGatewayV2::Integration")
    assert sorted(r["Properties"]["RouteKey"] for r in routes.values()) == sorted(
        f"POST {route.path}" for route in ALL_ROUTES
    )
    for route in routes.values():
        name = BY_PATH[route["Properties"]["RouteKey"].removeprefix("POST ")].function_name
        integration_id = route["Properties"]["Target"]["Fn::Join"][1][1]["Ref"]
        integration = integrations[integration_id]["Properties"]
        assert integration["IntegrationType"] == "AWS_PROXY"
        assert integration["PayloadFormatVersion"] == "1.0"
        assert integration["IntegrationUri"] == {"Ref": live(api, name)}


def test_routes_require_iam_by_default(stage: Synth) -> None:
    routes = resources(stage.templates["api"], "AWS::ApiGatewayV2::Route")
    assert {r["Properties"]["AuthorizationType"] for r in routes.values()} == {"AWS_IAM"}


def test_default_stage_throttles_from_context_and_writes_access_logs(stage: Synth) -> None:
    template = stage.template("api")
    template.resource_count_is("AWS::ApiGatewayV2::Stage", 1)
    log_group = logical_id(
        stage.templates["api"],
        "AWS::Logs::LogGroup",
        "LogGroupName",
        f"/aws/apigateway/abtest-{stage.stage}",
    )
    template.has_resource_properties(
        "AWS::ApiGatewayV2::Stage",
        {
            "StageName": "$default",
            "AutoDeploy": True,
            "DefaultRouteSettings": {
                "ThrottlingRateLimit": expected(stage, "throttle_rate_limit"),
                "ThrottlingBurstLimit": expected(stage, "throttle_burst_limit"),
            },
            "AccessLogSettings": {
                "DestinationArn": arn(log_group),
                "Format": Match.string_like_regexp(r'"requestId":"\$context.requestId"'),
            },
        },
    )
    template.has_resource_properties("AWS::ApiGatewayV2::Api", {"Name": f"abtest-{stage.stage}"})


@pytest.mark.parametrize("name", FUNCTIONS)
def test_function_runtime_architecture_handler_and_layer(stage: Synth, name: str) -> None:
    _, props = function(stage.templates["api"], name)
    assert props["FunctionName"] == f"abtest-{name}-{stage.stage}"
    assert props["Runtime"] == "python3.13"
    assert props["Architectures"] == ["arm64"]
    # Every route's function runs the one API handler; metrics and register their own.
    handler = "api" if name in ROUTE_FUNCTIONS else name
    assert props["Handler"] == f"lambdas.{handler}.lambda_handler"
    (layer,) = props["Layers"]
    assert layer["Fn::Join"][1][-1] == (
        ":017000801446:layer:AWSLambdaPowertoolsPythonV3-python313-arm64:"
        f"{CDK_CONTEXT['powertools_layer_version']}"
    )


@pytest.mark.parametrize("name", FUNCTIONS)
def test_every_function_runs_with_snapstart_and_is_invoked_through_its_live_alias(
    stage: Synth, name: str
) -> None:
    api = stage.templates["api"]
    _, props = function(api, name)
    assert props["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    alias = live(api, name)
    # Whoever may invoke the function may invoke its alias (the snapshotted version) only.
    permissions = [p["Properties"] for p in resources(api, "AWS::Lambda::Permission").values()]
    callers = [p for p in permissions if p["FunctionName"] == {"Ref": alias}]
    assert callers, name
    assert not [p for p in permissions if p["FunctionName"] == arn(function(api, name)[0])]


def test_sizes_and_timeouts_come_from_context(stage: Synth) -> None:
    api = stage.templates["api"]
    for name in ROUTE_NAMES:
        props = function(api, name)[1]
        assert props["MemorySize"] == expected(stage, "api_memory_mb")
        assert props["Timeout"] == expected(stage, "api_timeout_seconds")
    assert function(api, "metrics")[1]["MemorySize"] == CDK_CONTEXT["metrics_memory_mb"]
    assert function(api, "metrics")[1]["Timeout"] == CDK_CONTEXT["metrics_timeout_seconds"]
    assert function(api, "register")[1]["MemorySize"] == CDK_CONTEXT["register_memory_mb"]
    assert function(api, "register")[1]["Timeout"] == CDK_CONTEXT["register_timeout_seconds"]


def test_all_handlers_share_one_code_asset(stage: Synth) -> None:
    api = stage.templates["api"]
    keys = {function(api, n)[1]["Code"]["S3Key"] for n in FUNCTIONS}
    assert len(keys) == 1


def test_environment_per_function(stage: Synth) -> None:
    api = stage.templates["api"]
    s = stage.stage
    tables = {
        "ASSIGNMENT_TABLE": {
            "Ref": logical_id(api, "AWS::DynamoDB::Table", "TableName", f"abtest-assignment-{s}")
        },
        "METRICS_TABLE": {
            "Ref": logical_id(api, "AWS::DynamoDB::Table", "TableName", f"abtest-metrics-{s}")
        },
    }
    common = {
        "STAGE_NAME": s,
        "POWERTOOLS_SERVICE_NAME": "abtest",
        "POWERTOOLS_METRICS_NAMESPACE": "abtest",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "PYDANTIC_DISABLE_PLUGINS": "__all__",
    }
    request_path = {
        **common,
        **tables,
        "DELIVERY_STREAM_NAME": {
            "Ref": logical_id(
                api,
                "AWS::KinesisFirehose::DeliveryStream",
                "DeliveryStreamName",
                f"abtest-events-{s}",
            )
        },
        "DEAD_LETTER_QUEUE_URL": {
            "Ref": logical_id(api, "AWS::SQS::Queue", "QueueName", f"abtest-undelivered-events-{s}")
        },
        "ASSIGNMENT_TTL_SECONDS": "2592000",
        "METRICS_CACHE_SECONDS": "5.0",
    }
    env = {n: function(api, n)[1]["Environment"]["Variables"] for n in FUNCTIONS}
    # The model gets what the function's timeout leaves after the rest of the request's path.
    timeout = function(api, "invocation")[1]["Timeout"]
    assert env["invocation"] == {
        **request_path,
        "ROUTE": "invocation",
        "MODEL_TIMEOUT_SECONDS": str(int(timeout - request_budget_seconds())),
    }
    assert env["conversion"] == {**request_path, "ROUTE": "conversion"}
    assert env["stats"] == {**common, "METRICS_TABLE": tables["METRICS_TABLE"], "ROUTE": "stats"}
    assert env["history"] == {
        **common,
        "METRICS_TABLE": tables["METRICS_TABLE"],
        "ROUTE": "history",
    }
    # Each route's function is given exactly what its environment model reads.
    for route in ALL_ROUTES:
        model = route_environment(route)
        read = {field.alias for field in model.model_fields.values()}
        assert set(env[route.function_name]) == {*common, "ROUTE", *read}
    for route in ADMIN_ROUTES:
        assert env[route.function_name]["ROUTE"] == route.name
    assert env["metrics"] == {
        **common,
        "ASSIGNMENT_TABLE": tables["ASSIGNMENT_TABLE"],
        "METRICS_TABLE": tables["METRICS_TABLE"],
        "REJECTED_PREFIX": "rejected/",
    }
    assert env["register"] == {
        **common,
        "METRICS_TABLE": tables["METRICS_TABLE"],
        "ENDPOINT_PREFIX": f"abtest-{s}-",
    }


def _sagemaker_arn(resource: str, stage: str) -> dict[str, Any]:
    return {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":sagemaker:",
                {"Ref": "AWS::Region"},
                ":",
                {"Ref": "AWS::AccountId"},
                f":{resource}/abtest-{stage}-*",
            ],
        ]
    }


def test_each_function_has_only_the_permissions_it_needs(stage: Synth) -> None:
    api = stage.templates["api"]
    s = stage.stage
    assignment = arn(logical_id(api, "AWS::DynamoDB::Table", "TableName", f"abtest-assignment-{s}"))
    metrics = arn(logical_id(api, "AWS::DynamoDB::Table", "TableName", f"abtest-metrics-{s}"))
    stream = arn(
        logical_id(
            api, "AWS::KinesisFirehose::DeliveryStream", "DeliveryStreamName", f"abtest-events-{s}"
        )
    )
    events_dlq = arn(
        logical_id(api, "AWS::SQS::Queue", "QueueName", f"abtest-undelivered-events-{s}")
    )
    failed = arn(logical_id(api, "AWS::SQS::Queue", "QueueName", f"abtest-failed-aggregations-{s}"))
    (bucket,) = resources(api, "AWS::S3::Bucket")

    def logs(name: str) -> dict[str, list[Any]]:
        group = arn(
            logical_id(api, "AWS::Logs::LogGroup", "LogGroupName", f"/aws/lambda/abtest-{name}-{s}")
        )
        return {"logs:CreateLogStream": [group], "logs:PutLogEvents": [group]}

    request_path = {
        "dynamodb:GetItem": [assignment, metrics],
        "dynamodb:PutItem": [assignment],
        # Assignments and conversion markers are one need: the marker is an update.
        "dynamodb:UpdateItem": [assignment],
        "firehose:PutRecordBatch": [stream],
        "sqs:SendMessage": [events_dlq],
    }
    assert function_permissions(api, "invocation") == {
        **logs("invocation"),
        **request_path,
        "sagemaker:InvokeEndpoint": [_sagemaker_arn("endpoint", s)],
    }
    assert function_permissions(api, "conversion") == {**logs("conversion"), **request_path}
    assert function_permissions(api, "stats") == {**logs("stats"), "dynamodb:GetItem": [metrics]}
    # Admin: reading records; a change also updates the record and puts the audit item.
    reading = {"dynamodb:GetItem": [metrics]}
    assert function_permissions(api, "admin-show") == {**logs("admin-show"), **reading}
    assert function_permissions(api, "admin-list") == {
        **logs("admin-list"),
        **reading,
        "dynamodb:Scan": [metrics],
    }
    changing = {**reading, "dynamodb:PutItem": [metrics], "dynamodb:UpdateItem": [metrics]}
    for change in ("pause", "resume", "retire-variant", "weights", "reinstate"):
        assert function_permissions(api, f"admin-{change}") == {
            **logs(f"admin-{change}"),
            **changing,
        }
    # Concluding also promotes the winner in SageMaker: this stage's endpoints, nothing else.
    endpoints = [_sagemaker_arn("endpoint", s)]
    assert function_permissions(api, "admin-conclude") == {
        **logs("admin-conclude"),
        **changing,
        "sagemaker:DescribeEndpoint": endpoints,
        "sagemaker:UpdateEndpointWeightsAndCapacities": endpoints,
    }
    # add-variant also reads the SageMaker endpoint's production variants, and nothing more.
    assert function_permissions(api, "admin-add-variant") == {
        **logs("admin-add-variant"),
        **changing,
        "sagemaker:DescribeEndpoint": [_sagemaker_arn("endpoint", s)],
    }
    # The history is read by key from the metrics table, and only read.
    assert function_permissions(api, "history") == {
        **logs("history"),
        "dynamodb:GetItem": [metrics],
        "dynamodb:BatchGetItem": [metrics],
    }

    objects = {
        prefix: {"Fn::Join": ["", [arn(bucket), f"/{prefix}/*"]]}
        for prefix in ("events", "rejected")
    }
    assert function_permissions(api, "metrics") == {
        **logs("metrics"),
        **{
            f"dynamodb:{a}": [metrics]
            # DeleteItem: the history's thinning, in the metrics table only.
            for a in ("GetItem", "BatchGetItem", "PutItem", "ConditionCheckItem", "DeleteItem")
        },
        # Claims of conversion markers (counted once) besides the metrics increments.
        "dynamodb:UpdateItem": [metrics, assignment],
        "s3:GetObject": [objects["events"]],
        "s3:PutObject": [objects["rejected"]],
        "s3:AbortMultipartUpload": [objects["rejected"]],
        # The async-invoke failure destination.
        "sqs:SendMessage": [failed],
        "sqs:GetQueueAttributes": [failed],
        "sqs:GetQueueUrl": [failed],
        # An auto-conclusion promotes its winner as /admin/conclude does: this stage's endpoints.
        "sagemaker:DescribeEndpoint": [_sagemaker_arn("endpoint", s)],
        "sagemaker:UpdateEndpointWeightsAndCapacities": [_sagemaker_arn("endpoint", s)],
    }
    endpoints = [_sagemaker_arn("endpoint", s), _sagemaker_arn("endpoint-config", s)]
    assert function_permissions(api, "register") == {
        **logs("register"),
        "sagemaker:DescribeEndpoint": endpoints,
        "sagemaker:DescribeEndpointConfig": endpoints,
        "sagemaker:ListTags": endpoints,
        # A conclusion's pending promotion is finished when the endpoint is back in service.
        "sagemaker:UpdateEndpointWeightsAndCapacities": [endpoints[0]],
        "dynamodb:GetItem": [metrics],
        "dynamodb:PutItem": [metrics],
        "dynamodb:UpdateItem": [metrics],
    }


def test_tables_keys_ttl_pitr_billing_and_encryption(stage: Synth) -> None:
    template = stage.template("api")
    retain = "Retain" if stage.stage == "prod" else "Delete"
    common = {
        "BillingMode": "PAY_PER_REQUEST",
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        "SSESpecification": {"SSEEnabled": True},  # KMS, the AWS-managed key
        "TimeToLiveSpecification": {"AttributeName": "ttl", "Enabled": True},
    }
    template.resource_count_is("AWS::DynamoDB::Table", 2)
    template.has_resource(
        "AWS::DynamoDB::Table",
        {
            "DeletionPolicy": retain,
            "Properties": {
                **common,
                "TableName": f"abtest-assignment-{stage.stage}",
                "KeySchema": [
                    {"AttributeName": "user_id", "KeyType": "HASH"},
                    {"AttributeName": "endpoint_name", "KeyType": "RANGE"},
                ],
                "AttributeDefinitions": [
                    {"AttributeName": "user_id", "AttributeType": "S"},
                    {"AttributeName": "endpoint_name", "AttributeType": "S"},
                ],
            },
        },
    )
    template.has_resource(
        "AWS::DynamoDB::Table",
        {
            "DeletionPolicy": retain,
            "Properties": {
                **common,
                "TableName": f"abtest-metrics-{stage.stage}",
                "KeySchema": [{"AttributeName": "endpoint_name", "KeyType": "HASH"}],
            },
        },
    )


def test_firehose_buffers_from_context_gzips_and_has_an_error_prefix(stage: Synth) -> None:
    stage.template("api").has_resource_properties(
        "AWS::KinesisFirehose::DeliveryStream",
        {
            "DeliveryStreamName": f"abtest-events-{stage.stage}",
            "DeliveryStreamEncryptionConfigurationInput": {"KeyType": "AWS_OWNED_CMK"},
            "ExtendedS3DestinationConfiguration": Match.object_like(
                {
                    "BufferingHints": {
                        "IntervalInSeconds": expected(stage, "firehose_buffer_interval_seconds"),
                        "SizeInMBs": expected(stage, "firehose_buffer_size_mb"),
                    },
                    "CompressionFormat": "GZIP",
                    "Prefix": Match.string_like_regexp("^events/"),
                    "ErrorOutputPrefix": Match.string_like_regexp("^errors/"),
                }
            ),
        },
    )


def test_bucket_is_private_encrypted_tls_only_and_expires_events(stage: Synth) -> None:
    template = stage.template("api")
    template.has_resource(
        "AWS::S3::Bucket",
        {
            "DeletionPolicy": "Retain" if stage.stage == "prod" else "Delete",
            "Properties": Match.object_like(
                {
                    "PublicAccessBlockConfiguration": {
                        "BlockPublicAcls": True,
                        "BlockPublicPolicy": True,
                        "IgnorePublicAcls": True,
                        "RestrictPublicBuckets": True,
                    },
                    "BucketEncryption": {
                        "ServerSideEncryptionConfiguration": [
                            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                        ]
                    },
                    "LifecycleConfiguration": {
                        "Rules": Match.array_with(
                            [
                                Match.object_like(
                                    {
                                        "ExpirationInDays": expected(stage, "event_retention_days"),
                                        "Status": "Enabled",
                                    }
                                )
                            ]
                        )
                    },
                }
            ),
        },
    )
    template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Action": "s3:*",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            }
        },
    )


def test_new_event_objects_invoke_metrics_with_retries_and_a_dead_letter_queue(
    stage: Synth,
) -> None:
    api = stage.templates["api"]
    metrics_alias = live(api, "metrics")
    (notifications,) = resources(api, "Custom::S3BucketNotifications").values()
    (config,) = notifications["Properties"]["NotificationConfiguration"][
        "LambdaFunctionConfigurations"
    ]
    assert config["Events"] == ["s3:ObjectCreated:*"]
    assert config["LambdaFunctionArn"] == {"Ref": metrics_alias}
    # Only Firehose's objects: the function's own rejected/ output must not loop back.
    assert config["Filter"] == {"Key": {"FilterRules": [{"Name": "prefix", "Value": "events/"}]}}
    failed = logical_id(
        api, "AWS::SQS::Queue", "QueueName", f"abtest-failed-aggregations-{stage.stage}"
    )
    stage.template("api").has_resource_properties(
        "AWS::Lambda::EventInvokeConfig",
        {
            "FunctionName": {"Ref": function(api, "metrics")[0]},
            # The alias's name, read from its ARN: retries go to the published version.
            "Qualifier": {"Fn::Select": [7, {"Fn::Split": [":", {"Ref": metrics_alias}]}]},
            "MaximumRetryAttempts": CDK_CONTEXT["metrics_retry_attempts"],
            "DestinationConfig": {"OnFailure": {"Destination": arn(failed)}},
        },
    )


def test_endpoint_state_changes_reach_register_for_prefixed_endpoints(stage: Synth) -> None:
    api = stage.templates["api"]
    register_alias = live(api, "register")
    failed = logical_id(
        api, "AWS::SQS::Queue", "QueueName", f"abtest-failed-aggregations-{stage.stage}"
    )
    stage.template("api").has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": ["aws.sagemaker"],
                "detail-type": ["SageMaker Endpoint State Change"],
                "detail": {"EndpointName": [{"prefix": f"abtest-{stage.stage}-"}]},
            },
            "Targets": [
                Match.object_like(
                    {"Arn": {"Ref": register_alias}, "DeadLetterConfig": {"Arn": arn(failed)}}
                )
            ],
        },
    )


def test_queues_are_encrypted_and_tls_only(stage: Synth) -> None:
    api = stage.templates["api"]
    queues = resources(api, "AWS::SQS::Queue")
    assert sorted(q["Properties"]["QueueName"] for q in queues.values()) == [
        f"abtest-failed-aggregations-{stage.stage}",
        f"abtest-undelivered-events-{stage.stage}",
    ]
    assert all(q["Properties"]["SqsManagedSseEnabled"] for q in queues.values())
    stage.template("api").resource_count_is("AWS::SQS::QueuePolicy", 2)


def _alarm_metrics(api: dict[str, Any]) -> list[tuple[str, str, Any]]:
    return [
        (
            a["Properties"].get("Namespace"),
            a["Properties"].get("MetricName"),
            a["Properties"].get("Dimensions"),
        )
        for a in resources(api, "AWS::CloudWatch::Alarm").values()
    ]


def test_alarms_on_queue_depth_api_5xx_and_every_function_error(stage: Synth) -> None:
    api = stage.templates["api"]
    alarms = _alarm_metrics(api)
    queue_alarms = [a for a in alarms if a[1] == "ApproximateNumberOfMessagesVisible"]
    assert {a[2][0]["Value"]["Fn::GetAtt"][0] for a in queue_alarms} == {
        logical_id(api, "AWS::SQS::Queue", "QueueName", f"abtest-{q}-{stage.stage}")
        for q in ("undelivered-events", "failed-aggregations")
    }
    assert [a for a in alarms if a[:2] == ("AWS/ApiGateway", "5xx")]
    errors = {a[2][0]["Value"]["Ref"] for a in alarms if a[:2] == ("AWS/Lambda", "Errors")}
    assert errors == {function(api, n)[0] for n in FUNCTIONS}
    # As the metrics function publishes it (tests/lambdas/test_rejected_objects.py).
    assert ("abtest", "MostlyRejectedObjects", [{"Name": "service", "Value": "abtest"}]) in alarms
    (topic,) = resources(api, "AWS::SNS::Topic")
    for alarm in resources(api, "AWS::CloudWatch::Alarm").values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic}]
        assert alarm["Properties"]["Threshold"] == 1


def test_dashboard_shows_variants_and_health(stage: Synth) -> None:
    (dashboard,) = resources(stage.templates["api"], "AWS::CloudWatch::Dashboard").values()
    assert dashboard["Properties"]["DashboardName"] == f"abtest-{stage.stage}"
    body = str(dashboard["Properties"]["DashboardBody"])
    for title in ("Invocations per variant", "Conversions per variant", "Reward per variant"):
        assert title in body
    assert "{abtest,endpoint_name,variant_name}" in body
    # The request path's counts, whatever their dimensions, each on its own graph.
    parts = dashboard["Properties"]["DashboardBody"]["Fn::Join"][1]
    widgets = json.loads("".join(p if isinstance(p, str) else "token" for p in parts))["widgets"]
    expressions = {
        w["properties"].get("title"): [
            m[0]["expression"] for m in w["properties"].get("metrics", []) if "expression" in m[0]
        ]
        for w in widgets
    }
    for count in Count:
        [title] = [t for t, e in expressions.items() if any(f'"{count}"' in x for x in e)]
        assert expressions[title] == [
            f"SEARCH('Namespace=\"abtest\" MetricName=\"{count}\"', 'Sum', 300)"
        ]


def test_outputs_name_the_url_tables_and_bucket(stage: Synth) -> None:
    api = stage.templates["api"]
    outputs = api["Outputs"]
    assert set(outputs) >= {"ApiUrl", "AssignmentTableName", "MetricsTableName", "EventBucketName"}
    assert outputs["AssignmentTableName"]["Value"] == {
        "Ref": logical_id(
            api, "AWS::DynamoDB::Table", "TableName", f"abtest-assignment-{stage.stage}"
        )
    }
    assert "ApiKeyId" not in outputs


def test_api_key_option_builds_a_rest_api_with_a_usage_plan(qa: Synth) -> None:
    api = qa.templates["api"]
    template = qa.template("api")
    template.resource_count_is("AWS::ApiGatewayV2::Api", 0)
    template.resource_count_is("AWS::ApiGateway::RestApi", 1)
    methods = resources(api, "AWS::ApiGateway::Method")
    assert len(methods) == len(ALL_ROUTES)
    aliases = {live(api, name): name for name in ROUTE_FUNCTIONS}
    invoked = set()
    for method in methods.values():
        props = method["Properties"]
        assert props["HttpMethod"] == "POST"
        admin = {"Ref": live(api, "admin-show")} in props["Integration"]["Uri"]["Fn::Join"][1]
        if admin or props.get("AuthorizationType") == "AWS_IAM":
            # Admin routes: IAM, never an API key
            assert (props["AuthorizationType"], props["ApiKeyRequired"]) == ("AWS_IAM", False)
        else:
            assert props["ApiKeyRequired"] is True
        assert props["Integration"]["Type"] == "AWS_PROXY"
        uri = props["Integration"]["Uri"]["Fn::Join"][1]
        invoked |= {
            aliases[part["Ref"]]
            for part in uri
            if isinstance(part, dict) and part.get("Ref") in aliases
        }
    assert invoked == set(ROUTE_FUNCTIONS)  # each route's published version, via its alias
    iam_methods = [m for m in methods.values() if m["Properties"]["AuthorizationType"] == "AWS_IAM"]
    assert len(iam_methods) == len(ADMIN_ROUTES)
    paths = {
        r["Properties"]["PathPart"] for r in resources(api, "AWS::ApiGateway::Resource").values()
    }
    assert paths == {*ROUTE_NAMES, "admin", *(r.name for r in ADMIN_ROUTES)}
    template.has_resource_properties(
        "AWS::ApiGateway::UsagePlan",
        {"Throttle": {"RateLimit": 50, "BurstLimit": CDK_CONTEXT["throttle_burst_limit"]}},
    )
    template.resource_count_is("AWS::ApiGateway::ApiKey", 1)
    template.resource_count_is("AWS::ApiGateway::UsagePlanKey", 1)
    template.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "StageName": "qa",
            "AccessLogSetting": Match.object_like(
                {"Format": Match.string_like_regexp("requestId")}
            ),
            "MethodSettings": Match.array_with(
                [Match.object_like({"ThrottlingRateLimit": 50, "LoggingLevel": "ERROR"})]
            ),
        },
    )
    assert "ApiKeyId" in api["Outputs"]
    assert [a for a in _alarm_metrics(api) if a[:2] == ("AWS/ApiGateway", "5XXError")]


@pytest.fixture(scope="module")
def open_api(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`auth=none`: only the API stack, synthesized under cdk-nag like the others."""
    import aws_cdk as cdk

    from infra import nag
    from infra.api_stack import ApiStack
    from infra.settings import settings_from_context

    outdir = tmp_path_factory.mktemp("open-api")
    app = cdk.App(outdir=str(outdir))
    nag.check(app)
    stack = ApiStack(
        app, "abtest-api-test", settings_from_context({"stage_name": "test", "auth": "none"})
    )
    app.synth()  # raises on any unacknowledged cdk-nag finding
    return Template.from_stack(stack).to_json()


def test_auth_none_leaves_routes_open_and_still_throttles(open_api: dict[str, Any]) -> None:
    routes = resources(open_api, "AWS::ApiGatewayV2::Route")
    assert len(routes) == len(ALL_ROUTES)
    auth = {
        r["Properties"]["RouteKey"]: r["Properties"].get("AuthorizationType", "NONE")
        for r in routes.values()
    }
    # The data routes are open; the admin routes still need IAM.
    assert auth == {
        f"POST {route.path}": "AWS_IAM" if route.admin else "NONE" for route in ALL_ROUTES
    }
    (stage,) = resources(open_api, "AWS::ApiGatewayV2::Stage").values()
    assert stage["Properties"]["DefaultRouteSettings"]["ThrottlingRateLimit"] == 100


def test_each_admin_action_has_its_own_least_privilege_managed_policy(stage: Synth) -> None:
    api = stage.templates["api"]
    policies = {
        p["Properties"]["ManagedPolicyName"]: p["Properties"]
        for p in resources(api, "AWS::IAM::ManagedPolicy").values()
    }
    for route in ADMIN_ROUTES:
        props = policies[f"abtest-admin-{route.name}-{stage.stage}"]
        (statement,) = props["PolicyDocument"]["Statement"]
        assert (statement["Effect"], statement["Action"]) == ("Allow", "execute-api:Invoke")
        # Exactly this route's POST: the ARN ends with it, no wildcard anywhere.
        parts = statement["Resource"]["Fn::Join"][1]
        assert isinstance(parts[-1], str) and parts[-1].endswith(f"/POST{route.path}")
        assert "*" not in json.dumps(statement["Resource"])
        assert "Roles" not in props and "Users" not in props  # attached by the operator


def _dashboard_widgets(api: dict[str, Any]) -> list[dict[str, Any]]:
    """The dashboard's widgets, each `Ref` to a log group written as the group's name."""
    (dashboard,) = resources(api, "AWS::CloudWatch::Dashboard").values()
    groups = resources(api, "AWS::Logs::LogGroup")

    def text(part: Any) -> str:
        if isinstance(part, str):
            return part
        if "Ref" in part and part["Ref"] in groups:
            return groups[part["Ref"]]["Properties"]["LogGroupName"]
        return "token"

    parts = dashboard["Properties"]["DashboardBody"]["Fn::Join"][1]
    return json.loads("".join(map(text, parts)))["widgets"]


def test_dashboard_charts_model_errors_latency_fallbacks_and_the_lifecycle(stage: Synth) -> None:
    widgets = {w["properties"].get("title"): w for w in _dashboard_widgets(stage.templates["api"])}

    def expressions(title: str) -> list[str]:
        return [m[0]["expression"] for m in widgets[title]["properties"]["metrics"]]

    # The error rate per variant: SageMaker's 0/1 per request, averaged
    schema = "{AWS/SageMaker,EndpointName,VariantName}"
    assert expressions("Model error rate per variant (SageMaker; 1 = every call)") == [
        f"SEARCH('{schema} MetricName=\"Invocation5XXErrors\"', 'Average', 300)",
        f"SEARCH('{schema} MetricName=\"Invocation4XXErrors\"', 'Average', 300)",
    ]
    # The model call's latency per variant, p50 and p99
    for p in ("p50", "p99"):
        assert expressions(f"Model latency per variant, {p} (SageMaker, microseconds)") == [
            f"SEARCH('{schema} MetricName=\"ModelLatency\"', '{p}', 300)"
        ]
    # Fallbacks (the store unreachable: SageMaker's weights route) per endpoint
    assert expressions("Fallbacks (store unreachable)") == [
        "SEARCH('Namespace=\"abtest\" MetricName=\"Fallbacks\"', 'Sum', 300)"
    ]
    # The lifecycle: the line each change logs, from every function that changes one
    [lifecycle] = [w for w in widgets.values() if w["type"] == "log"]
    query = lifecycle["properties"]["query"]
    changing = [r.function_name for r in ADMIN_ROUTES if Need.LIFECYCLE in r.needs]
    assert sorted(changing) == [
        "admin-add-variant",
        "admin-conclude",
        "admin-pause",
        "admin-reinstate",
        "admin-resume",
        "admin-retire-variant",
        "admin-weights",
    ]
    # ... the metrics function, whose aggregation auto-concludes, and the register function,
    # which finishes a pending promotion
    sources = [
        f"SOURCE '/aws/lambda/abtest-{name}-{stage.stage}'"
        for name in (*changing, "metrics", "register")
    ]
    assert query.split(" | fields ")[0] == " | ".join(sources)
    assert (
        "fields @timestamp, endpoint_name, lifecycle_action, state, winner, promotion, actor, "
        "version\n| filter ispresent(lifecycle_action)\n| sort @timestamp desc" in query
    )
