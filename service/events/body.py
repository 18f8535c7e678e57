"""Request bodies read with a size limit, answering 413 as problem+json.

(The framework's own limiter answers 413 in text/plain, and a JSON body parameter is
read whole before any dependency runs, so intake reads its bodies here.)
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request

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


def _too_large(limit: int) -> ProblemError:
    return ProblemError(413, f"The body is larger than {limit} bytes.")
