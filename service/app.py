"""The FastAPI application."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

from service import errors
from service.actions.router import router as actions_router
from service.auth.router import router as auth_router
from service.db import database_url
from service.decisions.fastpath import FastPath
from service.decisions.log import open_log
from service.decisions.reader import Reader
from service.decisions.repository import open_pool
from service.decisions.router import router as decisions_router
from service.events.router import router as events_router
from service.events.schemas import ApiEvent, EventsBatch
from service.events.tracking import router as tracking_router
from service.events.webhooks import router as webhooks_router
from service.events.writer import DeliveryWriter
from service.experiments.router import router as experiments_router
from service.health.router import router as health_router
from service.http_limits import BodyGate
from service.logging import RequestLogMiddleware, configure
from service.pipeline.router import router as pipeline_router
from service.profiles.router import router as profiles_router
from service.rules.router import router as rules_router
from service.rules.watch import RulesWatcher
from service.segments.router import router as segments_router
from service.settings import Settings, get_settings
from service.worker import start_nudger, stop_nudger

TITLE = "Personalize"
VERSION = "0.1.0"


def add_schemas(openapi: dict[str, Any], *models: type[BaseModel]) -> None:
    """Register models that endpoints document by reference (bodies read by hand)."""
    components = openapi.setdefault("components", {}).setdefault("schemas", {})
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}", by_alias=True)
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """What an API process runs beside its requests, begun at start-up with the settings
    of that moment and ended at shutdown, in reverse order."""
    settings = get_settings()
    # The rules (service/rules/) begin first, the decision reader compiles with them:
    # the watcher activates edits of the rule files.
    watcher = RulesWatcher(settings.rules_dir) if settings.watch_rules else None
    if watcher:
        watcher.start()
    app.state.decision_log = decision_log = open_log(settings)
    nudger = start_nudger()  # sends the nudges of this process's commits (service/worker.py)
    pool, reader = await _start_decisions(app, settings=settings)
    # What start-up allocated (modules, compiled rules, the app) stays for the process's
    # life: out of the collector's reach, a full collection does not walk it again
    # while a storefront request waits.
    gc.freeze()
    yield
    await reader.stop()
    await pool.close()
    stop_nudger(nudger)
    # The rules end after the decisions.
    if watcher:
        watcher.stop()
    decision_log.stop()  # what is left of the log is written


async def _start_decisions(
    app: FastAPI, *, settings: Settings
) -> tuple[AsyncConnectionPool[AsyncConnection[Any]], Reader]:
    """The decision endpoint's pool and reader, on the app's state."""
    pool = open_pool(
        url=database_url(), budget_ms=settings.decision_budget_ms, size=settings.decision_pool_size
    )
    await pool.open(wait=False)  # the API starts even while the database is away
    app.state.decision_reader = reader = Reader(pool)
    await asyncio.to_thread(reader.prepare)  # not on a request's time
    await reader.start()  # hears of revoked keys and new rules (decisions/keys.py)
    return pool, reader


def create_app() -> FastAPI:
    settings = get_settings()
    configure(level=settings.log_level, fmt=settings.log_format)
    app = FastAPI(
        lifespan=lifespan,
        title=TITLE,
        version=VERSION,
        description=(
            "Customer profiles, rules and storefront decisions. Errors are RFC 9457 "
            "`application/problem+json` documents."
        ),
    )
    # Concurrent webhook deliveries share one transaction (see service/events/writer.py).
    app.state.delivery_writer = DeliveryWriter()
    errors.install(app)
    if settings.decision_fast_path:
        app.add_middleware(FastPath)  # inside the request log: logged like every request
    # Before the fast path and the routes: a body is read only with a valid key, and
    # no further than its route's limit.
    app.add_middleware(BodyGate)
    app.add_middleware(RequestLogMiddleware)
    if settings.cors_allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_allowed_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Content-Encoding"],
            max_age=3600,
        )
    # First: the storefront's hot path is matched before the other routes are tried.
    app.include_router(decisions_router)
    app.include_router(health_router)
    app.include_router(auth_router)
    app.include_router(events_router)
    app.include_router(webhooks_router)
    app.include_router(tracking_router)
    app.include_router(profiles_router)
    app.include_router(rules_router)
    app.include_router(actions_router)
    app.include_router(segments_router)
    app.include_router(experiments_router)
    app.include_router(pipeline_router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            errors.add_problem_schemas(schema)
            errors.validation_errors_as_problems(schema)
            errors.document_limits(schema)
            add_schemas(schema, EventsBatch, ApiEvent)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
