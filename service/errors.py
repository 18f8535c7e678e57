"""RFC 9457 problem details for every 4xx and 5xx response.

Every error the API returns is `application/problem+json` with `type`, `title`,
`status`, `detail` and, for input errors, `errors`: one entry per offending field.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import psycopg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.db import is_unavailable
from service.settings import get_settings

PROBLEM_MEDIA_TYPE = "application/problem+json"

log = structlog.get_logger(__name__)


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the offending field, e.g. `body.events.3.type`.")
    message: str


class Problem(BaseModel):
    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None


class ProblemError(Exception):
    """Raise from anywhere in request handling to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        type_: str = "about:blank",
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.type = type_
        self.errors = errors
        self.headers = headers
        self.extra = extra or {}


def problem_response(
    status: int,
    detail: str | None,
    *,
    title: str | None = None,
    type_: str = "about:blank",
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
    instance: str | None = None,
) -> JSONResponse:
    body = Problem(
        type=type_,
        title=title or HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        instance=instance,
        errors=errors,
    ).model_dump(exclude_none=True)
    body.update(extra or {})
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def _field_path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def problem_of(exc: ProblemError, *, instance: str) -> JSONResponse:
    return problem_response(
        exc.status,
        exc.detail,
        title=exc.title,
        type_=exc.type,
        errors=exc.errors,
        headers=exc.headers,
        extra=exc.extra,
        instance=instance,
    )


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_of(exc, instance=request.url.path)


# What the framework says of a body it cannot decode (bytes that are not UTF-8).
_UNPARSED_BODY = "There was an error parsing the body"


async def _on_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and str(exc.detail) == _UNPARSED_BODY:
        unparsed = ProblemError(
            422,
            "The body is not valid JSON (or not UTF-8).",
            errors=[FieldError(field="body", message="not valid UTF-8 JSON")],
        )
        return problem_of(unparsed, instance=request.url.path)
    return problem_response(
        exc.status_code,
        str(exc.detail),
        headers=dict(exc.headers) if exc.headers else None,
        instance=request.url.path,
    )


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        FieldError(field=_field_path(tuple(err["loc"])), message=err["msg"]) for err in exc.errors()
    ]
    fields = ", ".join(e.field for e in errors[:5])
    return problem_response(
        422,
        f"The request is not valid: {fields}",
        title="Invalid request",
        errors=errors,
        instance=request.url.path,
    )


async def _on_unhandled(request: Request, exc: Exception) -> JSONResponse:
    # The exception text may hold customer data: log its type and traceback, never
    # echo it to the caller.
    log.error("unhandled_error", error_type=type(exc).__name__, exc_info=exc)
    return problem_response(500, "An internal error occurred.", instance=request.url.path)


def database_unavailable(*, instance: str) -> JSONResponse:
    """503 with Retry-After: the database cannot be reached now; nothing was stored,
    the same request may be sent again (see "When PostgreSQL is down" in
    docs/operations.md)."""
    retry_after = get_settings().db_unavailable_retry_after_s
    return problem_response(
        503,
        "The database is unavailable; nothing was stored. Retry later.",
        title="Service Unavailable",
        headers={"Retry-After": str(retry_after)},
        instance=instance,
    )


async def _on_database_error(request: Request, exc: Exception) -> JSONResponse:
    """A database that cannot be reached is a 503 to retry; any other database
    error (a statement it refused) is a defect: 500, logged with its traceback."""
    if not is_unavailable(exc):
        return await _on_unhandled(request, exc)
    orig = getattr(exc, "orig", None) or exc
    log.warning(
        "database_unavailable",
        error_type=type(orig).__name__,
        sqlstate=getattr(orig, "sqlstate", None),
    )
    return database_unavailable(instance=request.url.path)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    # Handled where they are raised, before the app-wide handler, which would also
    # close the client's connection.
    for database_error in (sa_exc.DBAPIError, sa_exc.TimeoutError, psycopg.Error):
        app.add_exception_handler(database_error, _on_database_error)
    app.add_exception_handler(Exception, _on_unhandled)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries documenting problem+json errors."""
    schema = {"$ref": "#/components/schemas/Problem"}
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": schema}},
        }
        for status in statuses
    }


def add_problem_schemas(openapi: dict[str, Any]) -> None:
    """Register `Problem` (and what it references) in the schema's components."""
    schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    components = openapi.setdefault("components", {}).setdefault("schemas", {})
    components.update(defs)
    components["Problem"] = schema


def document_limits(openapi: dict[str, Any]) -> None:
    """Document what any operation may answer before its route runs: 413 for a body
    over its limit (service/http_limits.py), and 503 while the database cannot be
    reached (every /v1 operation but the decisions, which degrade instead)."""
    for path, operations in openapi.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if "requestBody" in operation:
                responses.setdefault("413", problem_responses(413)[413])
            if path.startswith("/v1/") and path != "/v1/decisions":
                responses.setdefault("503", problem_responses(503)[503])


def validation_errors_as_problems(openapi: dict[str, Any]) -> None:
    """Document the framework's automatic 422s as what they are: problem documents."""
    for operations in openapi.get("paths", {}).values():
        for operation in operations.values():
            if "422" in operation.get("responses", {}):
                operation["responses"]["422"] = problem_responses(422)[422]
    schemas = openapi.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
