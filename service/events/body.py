"""Request bodies read with a size limit, answering 413 as problem+json, and answers
built in the endpoint's thread.

(The framework's own limiter answers 413 in text/plain, and a JSON body parameter is
read whole before any dependency runs, so intake reads its bodies here.)
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from itertools import accumulate
from typing import Any

from fastapi import Request, Response
from pydantic import BaseModel

from service.errors import FieldError, ProblemError


def limited_body(setting: Callable[[], int]) -> Callable[[Request], Awaitable[bytes]]:
    """A dependency reading the body, at most `setting()` bytes (read per request, so a
    changed setting applies without a restart of the module)."""

    async def read(request: Request) -> bytes:
        limit = setting()
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
        return b"".join(chunks)

    return read


# How deep objects and arrays may nest in a body (the outermost counts as 1). A batch's
# events sit at 3; the platforms' sample payloads reach 5. Python's parser recurses,
# and the JSON encoders and PostgreSQL's JSONB have limits of their own: a bound well
# inside all of them.
MAX_DEPTH = 64

_STRUCTURAL = b'"[]{}'
_NOT_STRUCTURAL = bytes(c for c in range(256) if c not in _STRUCTURAL)
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 and -1 as signed bytes


class JsonError(ValueError):
    """A body that is not JSON the service takes; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def load_json(body: bytes, *, finite: bool = False) -> Any:
    """The body's JSON value, nested at most `MAX_DEPTH` deep.

    With `finite`, NaN, Infinity and numbers beyond a double's range are refused as
    the JSON they are not. Without, they are read as floats, for the events API to
    refuse in the one event that holds them rather than in the whole batch."""
    data = _utf8(body)
    if too_deep(data):
        raise JsonError(f"the body is nested deeper than {MAX_DEPTH} levels")
    try:
        if finite:
            return json.loads(data, parse_constant=_no_constant, parse_float=_finite_float)
        return json.loads(data)
    except RecursionError as exc:  # pragma: no cover - the bound above comes first
        raise JsonError(f"the body is nested deeper than {MAX_DEPTH} levels") from exc
    except ValueError as exc:
        raise JsonError(f"the body is not valid JSON: {exc}") from exc


def too_deep(data: bytes) -> bool:
    """Whether arrays and objects nest deeper than `MAX_DEPTH` in UTF-8 JSON text, found
    without parsing it, by passes over the bytes at C speed (about a third of the
    parse's time for a batch of 500 events; nothing for a body with few brackets).

    Escaped backslashes and quotes go first, then every byte but quotes and brackets;
    what then lies between quotes is a string's brackets, dropped by keeping every
    other piece. The running sum of +1 and -1 over the brackets left is the depth."""
    if data.count(b"[") + data.count(b"{") <= MAX_DEPTH:
        return False
    if b"\\" in data:
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(data.translate(None, _NOT_STRUCTURAL).split(b'"')[::2])
    steps = memoryview(outside.translate(_STEPS)).cast("b")
    return max(accumulate(steps), default=0) > MAX_DEPTH


def _utf8(body: bytes) -> bytes:
    """JSON may come as UTF-16 or UTF-32 (RFC 8259 allows reading them); the depth scan
    reads UTF-8, where no byte of a multi-byte character is a quote or a bracket."""
    encoding = json.detect_encoding(body)
    if encoding in ("utf-8", "utf-8-sig"):
        return body
    try:
        return body.decode(encoding).encode("utf-8", "surrogatepass")
    except UnicodeError:
        return body  # the parser refuses it


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError(f"{text[:32]} is beyond the range of a number")
    return number


def parse_json(body: bytes) -> Any:
    """The events API's body: 422 naming `body` when it is not JSON or nests too deep."""
    try:
        return load_json(body)
    except JsonError as exc:
        raise ProblemError(
            422,
            exc.reason[:1].upper() + exc.reason[1:] + ".",
            errors=[FieldError(field="body", message=exc.reason)],
        ) from exc


def json_response(answer: BaseModel, *, status: int = 200) -> Response:
    """`answer` as JSON, built in the endpoint's own thread. Returned as a model from a
    sync endpoint, FastAPI would validate it in another pool thread while the request's
    transaction is still open: with every pool thread taken by requests waiting for
    this one's row locks (concurrent batches sharing message ids), it waited for a
    thread with its locks held, and the process stalled until the connection pool's
    timeout (a third of 100 batches sent at once got 503 after 30 s)."""
    return Response(answer.model_dump_json(), status_code=status, media_type="application/json")


def _too_large(limit: int) -> ProblemError:
    return ProblemError(413, f"The body is larger than {limit} bytes.")
