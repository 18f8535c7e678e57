from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import structlog
from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel

from service.errors import problem_response, problem_responses
from service.health import service
from service.pipeline.metrics import SetAsideCollector
from service.rules.metrics import RulesCollector
from service.settings import get_settings

router = APIRouter(tags=["health"])
log = structlog.get_logger(__name__)


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]
    live_workers: int | None = None


@router.get("/healthz", response_model=Health, responses=problem_responses(500))
def healthz() -> Health:
    """The process is alive (no dependency is checked)."""
    return Health(status="ok")


async def _run_check(check: Callable[..., None], timeout_s: float) -> str:
    try:
        with anyio.fail_after(timeout_s):
            await anyio.to_thread.run_sync(
                lambda: check(timeout_s=timeout_s), abandon_on_cancel=True
            )
    except TimeoutError:
        return "timeout"
    except Exception as exc:
        log.warning("readiness_check_failed", check=check.__name__, error_type=type(exc).__name__)
        return "unreachable"
    return "ok"


@router.get(
    "/readyz",
    response_model=Readiness,
    responses=problem_responses(500, 503),
)
async def readyz() -> Any:
    """The database and the broker answer. 503 names the part that does not."""
    timeout_s = get_settings().readiness_timeout_s
    checks: dict[str, str] = {}

    async def run(name: str, check: Callable[..., None]) -> None:
        checks[name] = await _run_check(check, timeout_s)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, "database", service.check_database)
        tg.start_soon(run, "broker", service.check_broker)

    failing = sorted(name for name, state in checks.items() if state != "ok")
    if failing:
        return problem_response(
            503,
            "Not ready: " + ", ".join(f"{name} {checks[name]}" for name in failing),
            extra={"checks": checks},
        )
    workers = await anyio.to_thread.run_sync(service.live_workers)
    return JSONResponse(Readiness(status="ready", checks=checks, live_workers=workers).model_dump())


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}, **problem_responses(500)},
)
def metrics() -> PlainTextResponse:
    """Prometheus metrics (rules: rejected reloads, health, waiting rules; items set aside)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RulesCollector())
    registry.register(SetAsideCollector())
    return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
