"""Lambda event payloads in the shapes AWS documents, for one HTTP request each.

API Gateway REST API (payload 1.0), HTTP API (payload 2.0), Lambda Function URL (2.0 shape,
``$default`` route) and Application Load Balancer target groups.
"""

from __future__ import annotations

import base64
from typing import Any

HEADERS = {"content-type": "application/json", "accept": "*/*", "user-agent": "curl/8.5.0",
           "x-forwarded-for": "203.0.113.7", "x-forwarded-port": "443",
           "x-forwarded-proto": "https"}


def rest_v1(method: str, path: str, body: str | None, *, base64_body: bool = False
            ) -> dict[str, Any]:
    payload, encoded = _body(body, base64_body)
    return {
        "resource": "/{proxy+}", "path": path, "httpMethod": method,
        "headers": {**HEADERS, "Host": "abc123.execute-api.eu-west-1.amazonaws.com"},
        "multiValueHeaders": {k: [v] for k, v in HEADERS.items()},
        "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")}, "stageVariables": None,
        "requestContext": {
            "resourceId": "x1y2z3", "resourcePath": "/{proxy+}", "httpMethod": method,
            "extendedRequestId": "Abc123=", "requestTime": "04/Dec/2026:17:03:11 +0000",
            "path": f"/prod{path}", "accountId": "123456789012", "protocol": "HTTP/1.1",
            "stage": "prod", "domainPrefix": "abc123", "requestTimeEpoch": 1796403791000,
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "identity": {"cognitoIdentityPoolId": None, "accountId": None, "cognitoIdentityId":
                         None, "caller": None, "sourceIp": "203.0.113.7", "principalOrgId": None,
                         "accessKey": None, "cognitoAuthenticationType": None,
                         "cognitoAuthenticationProvider": None, "userArn": None,
                         "userAgent": "curl/8.5.0", "user": None},
            "domainName": "abc123.execute-api.eu-west-1.amazonaws.com", "apiId": "abc123"},
        "body": payload, "isBase64Encoded": encoded,
    }


def http_v2(method: str, path: str, body: str | None, *, base64_body: bool = False,
            function_url: bool = False) -> dict[str, Any]:
    payload, encoded = _body(body, base64_body)
    domain = ("abcdefghijklmnopqrstuvwxyz.lambda-url.eu-west-1.on.aws" if function_url
              else "abc123.execute-api.eu-west-1.amazonaws.com")
    route = "$default" if function_url else "ANY /{proxy+}"
    return {
        "version": "2.0", "routeKey": route, "rawPath": path, "rawQueryString": "",
        "headers": {**HEADERS, "host": domain},
        "requestContext": {
            "accountId": "anonymous" if function_url else "123456789012",
            "apiId": domain.split(".")[0], "domainName": domain,
            "domainPrefix": domain.split(".")[0],
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "203.0.113.7", "userAgent": "curl/8.5.0"},
            "requestId": "id-2f1b8f31", "routeKey": route, "stage": "$default",
            "time": "04/Dec/2026:17:03:11 +0000", "timeEpoch": 1796403791000},
        "body": payload, "isBase64Encoded": encoded,
    } | ({} if function_url else {"pathParameters": {"proxy": path.lstrip("/")}})


def alb(method: str, path: str, body: str | None, *, base64_body: bool = False
        ) -> dict[str, Any]:
    payload, encoded = _body(body, base64_body)
    return {
        "requestContext": {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:eu-west-1:"
                                                     "123456789012:targetgroup/churn/6d0ecf831eec9f09"}},
        "httpMethod": method, "path": path, "queryStringParameters": {},
        "headers": {**HEADERS, "host": "churn-123.eu-west-1.elb.amazonaws.com"},
        "body": payload or "", "isBase64Encoded": encoded,
    }


def _body(body: str | None, base64_body: bool) -> tuple[str | None, bool]:
    if body is None or not base64_body:
        return body, False
    return base64.b64encode(body.encode()).decode("ascii"), True


KINDS = {
    "api-gateway-rest-v1": lambda m, p, b, **k: rest_v1(m, p, b, **k),
    "api-gateway-http-v2": lambda m, p, b, **k: http_v2(m, p, b, **k),
    "function-url": lambda m, p, b, **k: http_v2(m, p, b, function_url=True, **k),
    "alb": lambda m, p, b, **k: alb(m, p, b, **k),
}
