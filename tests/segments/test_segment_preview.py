"""Previewing segment files before they go live: what they would hold now, beside what
is live, computed as the service computes membership, with nothing written."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from service.auth.service import Scope
from service.cli import main
from service.language.loader import load_all
from service.language.segments import compile_segments
from service.rules import deployments
from service.ruleset.runtime import RUNTIME
from service.segments.preview import preview
from service.settings import get_settings
from tests.support.events import track
from tests.support.rules import NOW, at, evaluate, send

SHIPPED = Path(__file__).resolve().parents[2] / "rules"


@pytest.fixture
def keys(api_key) -> dict[str, dict[str, str]]:
    return {"ingest": api_key(Scope.INGEST)}


@pytest.fixture
def rules_dir(session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "rules"
    shutil.copytree(SHIPPED, directory)
    monkeypatch.setattr(get_settings(), "rules_dir", directory)
    assert deployments.reload(session, directory=directory, origin="cli").status == "active"
    return directory


def order(user: str, total: str) -> dict:
    return track(
        "Order Completed",
        user=user,
        order_id=f"o-{user}",
        total=total,
        currency="USD",
        timestamp=at(-timedelta(hours=2)),
    )


def test_a_lowered_threshold_is_previewed_against_live_and_nothing_is_written(
    client: TestClient, session: Session, keys, rules_dir: Path
) -> None:
    send(client, keys, order("p1", "300.00"), order("p2", "700.00"), order("p3", "100.00"))
    evaluate(session)
    path = rules_dir / "segments" / "high_value.yaml"
    path.write_text(
        path.read_text().replace("version: 1", "version: 2").replace("{gte: 500}", "{gte: 250}")
    )
    _, loaded = load_all(rules_dir)
    compiled = compile_segments(RUNTIME.engine, [s for s in loaded if s.name == "high_value"])
    before = session.execute(text("SELECT count(*) FROM segment_memberships")).scalar_one()
    (row,) = preview(session, engine=RUNTIME.engine, compiled=compiled, now=NOW, limit=1)
    assert (row.segment, row.would_hold, row.live, row.entering, row.leaving) == (
        "high_value",
        2,
        1,
        1,
        0,
    )
    assert len(row.members) == 1  # the first page
    (rest,) = preview(
        session, engine=RUNTIME.engine, compiled=compiled, now=NOW, after=row.members[0]
    )
    assert len(rest.members) == 1
    assert rest.members[0] > row.members[0]
    after = session.execute(text("SELECT count(*) FROM segment_memberships")).scalar_one()
    assert after == before

    run = CliRunner().invoke(main, ["segments", "preview", "--segment", "high_value"])
    assert run.exit_code == 0, run.output
    (line,) = [x for x in run.output.splitlines() if x.startswith("high_value ")]
    assert line.split()[1:] == ["2", "1", "1", "0"]
    missing = CliRunner().invoke(main, ["segments", "preview", "--segment", "nope"])
    assert missing.exit_code == 1
