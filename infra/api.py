"""The API front door: an HTTP API (IAM or no auth) or a REST API with API keys.

The admin routes are always IAM-authorised, whatever the data routes use, and each
has its own managed policy allowing just that route, to attach to whoever may do it.

HTTP APIs cost $1.00 per million requests against $3.50 for REST APIs, so
they are the default; API keys exist only on REST APIs, so `auth=api_key`
builds one. Both send payload format 1.0 (REST-style) events to the same
functions, and neither puts the stage in `path`.
"""

from __future__ import annotations

import jsii
from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from abtest.http.routes import ALL_ROUTES, Route
from infra import nag
from infra.functions import RETENTION
from infra.settings import Settings

# One JSON line per request; the fields an on-call engineer filters by.
ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "caller": "$context.identity.caller",
    "requestTime": "$context.requestTime",
    "httpMethod": "$context.httpMethod",
    "path": "$context.path",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "integrationLatency": "$context.integrationLatency",
}


class ServiceApi(Construct):
    """One POST route per entry of the route table, each on its own function (`handlers`)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        settings: Settings,
        handlers: dict[str, lambda_.IFunction],
    ) -> None:
        super().__init__(scope, construct_id)
        self.access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            log_group_name=f"/aws/apigateway/abtest-{settings.stage_name}",
            retention=RETENTION[settings.log_retention_days],
            removal_policy=RemovalPolicy.DESTROY,
        )
        if settings.auth == "api_key":
            self._rest_api(settings, handlers)
        else:
            self._http_api(settings, handlers)

    def _http_api(self, settings: Settings, handlers: dict[str, lambda_.IFunction]) -> None:
        authorizer = authorizers.HttpIamAuthorizer() if settings.auth == "iam" else None
        api = apigwv2.HttpApi(
            self,
            "HttpApi",
            api_name=f"abtest-{settings.stage_name}",
            create_default_stage=False,
            default_authorizer=authorizer,
        )
        for route in ALL_ROUTES:
            api.add_routes(
                path=route.path,
                methods=[apigwv2.HttpMethod.POST],
                integration=integrations.HttpLambdaIntegration(
                    f"{route.function_name}-integration",
                    handlers[route.function_name],
                    payload_format_version=apigwv2.PayloadFormatVersion.VERSION_1_0,
                ),
                # Admin routes: IAM even when the data routes are open.
                authorizer=authorizers.HttpIamAuthorizer() if route.admin else None,
            )
            if route.admin:
                self._admin_policy(
                    settings,
                    route,
                    Stack.of(self).format_arn(
                        service="execute-api",
                        resource=api.api_id,
                        resource_name=f"$default/POST{route.path}",
                    ),
                )
        # `$default` keeps the stage out of the URL and out of the event's `path`.
        stage = apigwv2.HttpStage(
            self,
            "Stage",
            http_api=api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(
                rate_limit=settings.throttle_rate_limit,
                burst_limit=settings.throttle_burst_limit,
            ),
            access_log_settings=_HttpAccessLogs(self.access_logs),
        )
        if settings.auth == "none":
            nag.suppress(
                api,
                "APIG4",
                "auth=none was chosen in cdk.json, e.g. for a stage reachable only from tests.",
            )
        self.url = api.api_endpoint + "/"
        self.server_errors = stage.metric_server_error()

    def _rest_api(self, settings: Settings, handlers: dict[str, lambda_.IFunction]) -> None:
        api = apigw.RestApi(
            self,
            "RestApi",
            rest_api_name=f"abtest-{settings.stage_name}",
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.DESTROY,
            endpoint_types=[apigw.EndpointType.REGIONAL],
            deploy_options=apigw.StageOptions(
                stage_name=settings.stage_name,
                throttling_rate_limit=settings.throttle_rate_limit,
                throttling_burst_limit=settings.throttle_burst_limit,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.custom(_json_line(ACCESS_LOG_FIELDS)),
            ),
            default_method_options=apigw.MethodOptions(api_key_required=True),
        )
        admin = api.root.add_resource("admin")
        for route in ALL_ROUTES:
            (admin if route.admin else api.root).add_resource(route.name).add_method(
                "POST",
                apigw.LambdaIntegration(handlers[route.function_name], proxy=True),
                # Admin routes: IAM, not API keys (a key names no one for the audit log).
                **(
                    {"authorization_type": apigw.AuthorizationType.IAM, "api_key_required": False}
                    if route.admin
                    else {}
                ),
            )
            if route.admin:
                arn = api.arn_for_execute_api("POST", route.path, settings.stage_name)
                self._admin_policy(settings, route, arn)
        key = api.add_api_key("ApiKey", api_key_name=f"abtest-{settings.stage_name}")
        plan = api.add_usage_plan(
            "UsagePlan",
            name=f"abtest-{settings.stage_name}",
            throttle=apigw.ThrottleSettings(
                rate_limit=settings.throttle_rate_limit,
                burst_limit=settings.throttle_burst_limit,
            ),
            api_stages=[apigw.UsagePlanPerApiStage(api=api, stage=api.deployment_stage)],
        )
        plan.add_api_key(key)
        nag.suppress(
            api,
            "APIG2",
            "The handlers validate bodies with their pydantic models and answer 400 naming "
            "the field; a gateway model would be a second copy that drifts.",
        )
        nag.suppress(
            api,
            "APIG4",
            "auth=api_key was chosen in cdk.json: callers are identified by API key and "
            "usage plan, not IAM (the default).",
        )
        nag.suppress(
            api,
            "APIG3",
            "No WAF web ACL: its $5 a month plus $0.60 per million requests would exceed the "
            "API's own cost at the design volume; the usage plan throttles each key.",
        )
        nag.suppress(
            api,
            "COG4",
            "auth=api_key: callers are services holding API keys, not Cognito users.",
        )
        nag.suppress(
            api,
            "IAM4",
            "API Gateway's account-wide CloudWatch Logs role uses the AWS-managed push policy.",
            "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AmazonAPIGatewayPushToCloudWatchLogs",
        )
        self.url = api.url
        self.api_key_id = key.key_id
        self.server_errors = api.metric_server_error()

    def _admin_policy(self, settings: Settings, route: Route, route_arn: str) -> None:
        """One managed policy per admin action: attach it to whoever may take that action."""
        iam.ManagedPolicy(
            self,
            f"{route.function_name}-policy",
            managed_policy_name=f"abtest-{route.function_name}-{settings.stage_name}",
            description=f"May call POST {route.path} of abtest-{settings.stage_name}",
            statements=[iam.PolicyStatement(actions=["execute-api:Invoke"], resources=[route_arn])],
        )


@jsii.implements(apigwv2.IAccessLogSettings)
class _HttpAccessLogs:
    """`IAccessLogSettings` for an HTTP API stage: a log group and a JSON line format."""

    def __init__(self, log_group: logs.ILogGroup) -> None:
        self._destination = apigwv2.LogGroupLogDestination(log_group)

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw.AccessLogFormat:
        return apigw.AccessLogFormat.custom(_json_line(ACCESS_LOG_FIELDS))


def _json_line(fields: dict[str, str]) -> str:
    return "{" + ",".join(f'"{k}":"{v}"' for k, v in fields.items()) + "}"
