"""The storefront's hot path as a plain ASGI handler.

`POST /v1/decisions` is answered here, before FastAPI's routing, dependency solving
and response validation, which cost more CPU than the decision itself (measured with
bench/decisions.py: two thirds of the process's time). The FastAPI route in
router.py documents the endpoint; both run service.py's `answer_request`, and errors
are the same problem+json documents.
"""

from __future__ import annotations

from urllib.parse import parse_qs

import orjson
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.decisions.schemas import DecisionIn
from service.decisions.service import answer_request
from service.errors import FieldError, ProblemError, problem_of

PATH = "/v1/decisions"
MAX_BODY = 64 * 1024
_JSON_HEADERS = [(b"content-type", b"application/json")]


class FastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            body = await _body(receive)
            request = _parse(body)
            state = scope["app"].state
            answer = await answer_request(
                reader=state.decision_reader,
                log=state.decision_log,
                body=request,
                token=_token(scope),
                explain=_explain(scope),
            )
        except ProblemError as exc:
            response = problem_of(exc, instance=PATH)
            await response(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": _JSON_HEADERS})
        await send({"type": "http.response.body", "body": orjson.dumps(answer)})


async def _body(receive: Receive) -> bytes:
    chunks, size, more = [], 0, True
    while more:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise ProblemError(400, "The client went away.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise ProblemError(413, f"The body is larger than {MAX_BODY} bytes.")
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def _parse(body: bytes) -> DecisionIn:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProblemError(
            422,
            "The body is not valid JSON.",
            errors=[FieldError(field="body", message=str(exc))],
        ) from None
    try:
        return DecisionIn.model_validate(data)
    except ValidationError as exc:
        errors = [
            FieldError(field=".".join(str(p) for p in ("body", *e["loc"])), message=e["msg"])
            for e in exc.errors()
        ]
        fields = ", ".join(e.field for e in errors[:5])
        raise ProblemError(
            422, f"The request is not valid: {fields}", title="Invalid request", errors=errors
        ) from None


def _token(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


def _explain(scope: Scope) -> bool:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return query.get("explain", ["false"])[-1].lower() in ("true", "1", "yes")
