"""Experiments over HTTP: the list, one experiment's results, and its per-segment view."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends

from service.auth.dependencies import require
from service.auth.models import ApiKey
from service.auth.service import Scope
from service.db import DbSession
from service.errors import ProblemError, problem_responses
from service.experiments import service
from service.experiments.schemas import ExperimentOut, ExperimentSummary, SegmentsOut

router = APIRouter(prefix="/v1/experiments", tags=["experiments"])
Marketer = Annotated[ApiKey, Depends(require(Scope.MARKETER))]


def _missing(key: str) -> ProblemError:
    return ProblemError(404, f"No experiment {key!r} is declared in the active rule files.")


@router.get("", response_model=list[ExperimentSummary], responses=problem_responses(401, 403))
def list_experiments(session: DbSession, _: Marketer) -> list[ExperimentSummary]:
    """Experiments the active rule files declare, then those only exposures remember."""
    return service.list_experiments(session, now=datetime.now(UTC))


@router.get("/{key}", response_model=ExperimentOut, responses=problem_responses(401, 403, 404))
def get_experiment(key: str, session: DbSession, _: Marketer) -> ExperimentOut:
    """Exposures, conversions and revenue per variant; each treatment's lift with its
    confidence interval, p-values (fixed horizon, Holm-adjusted, always-valid), the
    sample-ratio check, the units still needed, and a verdict."""
    found = service.show(session, key, now=datetime.now(UTC))
    if found is None:
        raise _missing(key)
    return found


@router.get(
    "/{key}/segments", response_model=SegmentsOut, responses=problem_responses(401, 403, 404)
)
def get_segments(key: str, session: DbSession, _: Marketer) -> SegmentsOut:
    """The results within each segment the units were in when first exposed."""
    found = service.by_segment(session, key)
    if found is None:
        raise _missing(key)
    return found
