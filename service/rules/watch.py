"""Activate edits to `rules/` while the API runs: a background thread reloads the
directory whenever a file in it changes. A bad edit is recorded and logged with its
file and line, and the active rules keep running; nothing here can stop the API."""

from __future__ import annotations

import threading
from pathlib import Path

import structlog
import watchfiles

from service import db
from service.rules import service

log = structlog.get_logger(__name__)


def reload_once(directory: Path, *, origin: str) -> None:
    try:
        with db.transaction() as session:
            result = service.reload(session, directory=directory, origin=origin)
        if result.status != "unchanged":
            log.info(
                "rules_reloaded", origin=origin, status=result.status, errors=len(result.errors)
            )
    except Exception as exc:  # a reload must never take the API down
        log.exception("rules_reload_failed", origin=origin, error_type=type(exc).__name__)


class RulesWatcher:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rules-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        reload_once(self.directory, origin="startup")
        if not self.directory.is_dir():
            log.warning("rules_dir_missing", directory=str(self.directory))
            return
        # Editors save in several steps (temporary file, rename): debounce 300 ms.
        for _changes in watchfiles.watch(
            self.directory, stop_event=self._stop, debounce=300, raise_interrupt=False
        ):
            reload_once(self.directory, origin="watch")
