"""The process's compiled copy of the active rules, read by many threads at once (the
decision endpoint asks from every request that finds the rules changed)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from service import db
from service.rules import deployments
from service.ruleset import runtime as ruleset_runtime
from tests.support import clear_caches

SHIPPED = Path(__file__).resolve().parents[2] / "rules"


@pytest.fixture(scope="module")
def database(make_database) -> Iterator[str]:
    url = make_database("runtime")
    saved = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = url
    clear_caches()
    try:
        with db.transaction() as session:
            assert deployments.reload(session, directory=SHIPPED, origin="cli").status == "active"
        yield url
    finally:
        if saved is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = saved
        clear_caches()


def test_threads_asking_at_once_compile_the_rules_once(database: str) -> None:
    runtime = ruleset_runtime._Runtime()
    compiles: list[int | None] = []
    compile_ = runtime._compile

    def counted(session, deployment_id):  # type: ignore[no-untyped-def]
        compiles.append(deployment_id)
        return compile_(session, deployment_id)

    runtime._compile = counted  # type: ignore[method-assign]
    start = threading.Barrier(8)
    seen: list[int | None] = []

    def ask() -> None:
        with db.transaction() as session:
            start.wait()
            seen.append(runtime.active(session).deployment_id)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 8
    assert len(set(seen)) == 1
    assert seen[0] is not None
    assert compiles == [seen[0]]
