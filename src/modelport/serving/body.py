"""Reading an ASGI request body under a size limit, before and while it streams in."""

from __future__ import annotations

from typing import Any

from modelport.serving.http_errors import PayloadTooLarge

Scope = dict[str, Any]


def header(scope: Scope, name: bytes) -> bytes | None:
    """One request header's raw value (``name`` in lower case)."""
    for key, value in scope["headers"]:
        if key == name:
            return value  # type: ignore[no-any-return]
    return None


def query_param(scope: Scope, name: bytes) -> str | None:
    """One query-string parameter, percent-decoded (the first ``name=`` given)."""
    query: bytes = scope.get("query_string") or b""
    if not query:
        return None
    for pair in query.split(b"&"):
        key, _, value = pair.partition(b"=")
        if key == name:
            from urllib.parse import unquote

            return unquote(value.decode("latin-1"))
    return None


async def read_body(scope: Scope, receive: Any, limit: int) -> bytes:
    """The whole body, or ``PayloadTooLarge`` as soon as it is known to exceed ``limit``.

    A ``Content-Length`` over the limit is refused before a byte is read; a chunked body is
    counted as it arrives and refused at the first chunk past the limit.
    """
    length = header(scope, b"content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            declared = -1
        if declared > limit:
            raise PayloadTooLarge(
                f"request body is {declared} bytes; the limit is {limit} bytes. Send fewer rows "
                "per request")
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise _too_large(limit)
        return body
    chunks = [body]
    total = len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"request body exceeds the limit of {limit} bytes; send fewer rows per request")
