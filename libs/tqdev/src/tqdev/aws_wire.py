"""What an AWS request on the wire is (service and operation), and AWS error answers in each protocol's shape."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

#: The service in a SigV4 credential scope: ``<key>/<date>/<region>/<service>/aws4_request``.
_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/,\s]+/([^/,\s]+)/aws4_request")
_QUERY_SCOPE = re.compile(r"^[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request$")


@dataclass(frozen=True)
class Call:
    """One AWS request as the proxy saw it."""

    service: str
    operation: str
    #: ``json`` (DynamoDB, SQS's JSON protocol), ``query`` (SQS's query protocol) or ``rest-xml`` (S3).
    protocol: str
    method: str


def classify(method: str, target: str, headers: dict[str, str], body: bytes) -> Call:
    """The service (from the SigV4 scope), operation and protocol of one request.

    ``headers`` has lowercase names. S3's operations come from the method and path (path-style addressing,
    which botocore uses for an IP endpoint); anything unrecognised is named ``<METHOD>``.
    """
    url = urlsplit(target)
    query = parse_qs(url.query, keep_blank_values=True)
    service = _service(headers, query)
    amz_target = headers.get("x-amz-target")
    if amz_target:
        return Call(service, amz_target.rpartition(".")[2], "json", method)
    action = query.get("Action", [None])[0]
    if action is None and headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        action = parse_qs(body.decode("utf-8", "replace")).get("Action", [None])[0]
    if action:
        return Call(service, action, "query", method)
    if service == "s3":
        return Call(service, _s3_operation(method, unquote(url.path), query, headers), "rest-xml", method)
    return Call(service, method, "rest-xml", method)


def _service(headers: dict[str, str], query: dict[str, list[str]]) -> str:
    found = _SCOPE.search(headers.get("authorization", ""))
    if found:
        return found.group(1)
    credential = query.get("X-Amz-Credential", [""])[0]  # a presigned URL
    found = _QUERY_SCOPE.match(credential)
    return found.group(1) if found else "unknown"


def _s3_operation(method: str, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> str:
    parts = path.lstrip("/").split("/", 1)
    if not parts[0]:
        return "ListBuckets" if method == "GET" else method
    if len(parts) == 1 or not parts[1]:
        return _s3_bucket_operation(method, query)
    if "uploadId" in query:
        return {
            "PUT": "UploadPart",
            "POST": "CompleteMultipartUpload",
            "DELETE": "AbortMultipartUpload",
            "GET": "ListParts",
        }.get(method, method)
    if method == "POST" and "uploads" in query:
        return "CreateMultipartUpload"
    if method == "PUT" and "x-amz-copy-source" in headers:
        return "CopyObject"
    for sub in ("tagging", "acl", "retention"):
        if sub in query:
            return {"GET": f"GetObject{sub.title()}", "PUT": f"PutObject{sub.title()}"}.get(method, method)
    return {"PUT": "PutObject", "GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}.get(method, method)


def _s3_bucket_operation(method: str, query: dict[str, list[str]]) -> str:
    if method == "GET" and query.get("list-type") == ["2"]:
        return "ListObjectsV2"
    if method == "POST" and "delete" in query:
        return "DeleteObjects"
    verb = {"GET": "Get", "PUT": "Put", "DELETE": "Delete"}.get(method)
    for sub, name in (
        ("lifecycle", "BucketLifecycleConfiguration"),
        ("location", "BucketLocation"),
        ("versioning", "BucketVersioning"),
        ("policy", "BucketPolicy"),
        ("tagging", "BucketTagging"),
        ("cors", "BucketCors"),
        ("encryption", "BucketEncryption"),
    ):
        if sub in query and verb:
            return verb + name
    if "uploads" in query and method == "GET":
        return "ListMultipartUploads"
    return {
        "GET": "ListObjects",
        "PUT": "CreateBucket",
        "HEAD": "HeadBucket",
        "DELETE": "DeleteBucket",
    }.get(method, method)


def error_response(call: Call, code: str, status: int, message: str) -> tuple[list[tuple[str, str]], bytes]:
    """Headers and body of an AWS error answer to ``call`` that botocore parses into ``code``."""
    request_id = str(uuid.uuid4())
    if call.protocol == "json":
        # botocore takes the code after '#'; SQS's JSON protocol also reads the query-compatible header.
        namespace = f"com.amazonaws.{call.service}" + (".v20120810" if call.service == "dynamodb" else "")
        body = json.dumps({"__type": f"{namespace}#{code}", "message": message}).encode()
        headers = [("Content-Type", "application/x-amz-json-1.0"), ("x-amzn-RequestId", request_id)]
        if call.service == "sqs":
            headers.append(("x-amzn-query-error", f"{code};{'Sender' if status < 500 else 'Receiver'}"))
        return headers, body
    code_x, message_x = escape(code), escape(message)
    if call.protocol == "query":
        kind = "Sender" if status < 500 else "Receiver"
        text = (
            f'<?xml version="1.0"?><ErrorResponse><Error><Type>{kind}</Type><Code>{code_x}</Code>'
            f"<Message>{message_x}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        return [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)], text.encode()
    text = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code_x}</Code><Message>{message_x}</Message>'
        f"<RequestId>{request_id}</RequestId></Error>"
    )
    return [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)], text.encode()
