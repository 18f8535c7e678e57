"""Request bodies read with a size limit, answering 413 as problem+json, and answers
built in the endpoint's thread.

(The framework's own limiter answers 413 in text/plain, and a JSON body parameter is
read whole before any dependency runs, so intake reads its bodies here.)
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request, Response
from pydantic import BaseModel

from service.errors import FieldError, ProblemError


def limited_body(limit: int) -> Callable[[Request], Awaitable[bytes]]:
    async def read(request: Request) -> bytes:
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


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as exc:
        raise ProblemError(
            422,
            f"The body is not valid JSON: {exc}",
            errors=[FieldError(field="body", message="not valid JSON")],
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
