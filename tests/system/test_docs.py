"""The architecture page names every stage, periodic job and due job that flow.py
registers: it is the map a newcomer reads first, so it must not fall behind."""

from __future__ import annotations

from pathlib import Path

from service import flow

PAGE = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def test_the_architecture_page_names_every_registered_job() -> None:
    text = PAGE.read_text()
    names = [str(s.name) for s in flow.STAGES] + [j.name for j in (*flow.PERIODIC, *flow.DUE)]
    assert [name for name in names if f"`{name}`" not in text] == []
