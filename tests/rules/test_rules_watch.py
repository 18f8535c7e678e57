"""The running API activates edits to its rules directory without a restart, and keeps
the previous version when an edit is bad."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from tests import support
from tests.support import api_process

pytestmark = pytest.mark.slow

SHIPPED = Path(__file__).resolve().parents[2] / "rules"


def test_edits_are_picked_up_without_restart(make_database: object, tmp_path: Path) -> None:
    url: str = make_database("watch")  # type: ignore[operator]
    rules_dir = tmp_path / "rules"
    shutil.copytree(SHIPPED, rules_dir)
    port = support.free_port()
    env = {k: v for k, v in os.environ.items() if k != "BROKER_URL"}
    env.update(
        DATABASE_URL=url,
        PORT=str(port),
        API_WORKERS="1",
        RULES_DIR=str(rules_dir),
        RULES_WATCH="true",
    )
    headers = support.cli_key(env, "marketer", name="w")
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "api.log"
    api = api_process.launch("api", env, log)

    def versions() -> dict[str, int]:
        listed = httpx.get(f"{base}/v1/rules", headers=headers, timeout=5).json()
        return {r["name"]: r["version"] for r in listed["rulesets"]}

    try:
        # Loaded at startup.
        support.wait_for(lambda: versions().get("win_back") == 1, timeout=60)
        # A valid edit: active within seconds, no restart.
        win_back = rules_dir / "win_back.yaml"
        win_back.write_text(win_back.read_text().replace("version: 1", "version: 2", 1))
        support.wait_for(lambda: versions().get("win_back") == 2, timeout=20)
        # A bad edit: recorded with its file and line, and version 2 keeps running.
        (rules_dir / "typo.yaml").write_text("ruleset: typo\nversion: 1\nrules: [{id: x}\n")

        def rejected() -> dict | None:
            status = httpx.get(f"{base}/v1/rules/status", headers=headers, timeout=5).json()
            return status if status["healthy"] is False else None

        status = support.wait_for(rejected, timeout=20)
        (error,) = status["last_attempt"]["errors"]
        assert error["file"] == "typo.yaml"
        assert error["line"] == 4
        assert versions()["win_back"] == 2
        # Fixing the file activates everything again.
        (rules_dir / "typo.yaml").unlink()
        support.wait_for(
            lambda: httpx.get(f"{base}/v1/rules/status", headers=headers, timeout=5).json()[
                "healthy"
            ],
            timeout=20,
        )
    finally:
        api.terminate()
        api.wait(timeout=30)
    assert b"rules_rejected" in log.read_bytes()
