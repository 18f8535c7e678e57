"""Activate edits to `rules/` while the API runs: a background thread reloads the
directory whenever a file in it changes. A bad edit is recorded and logged with its
file and line, and the active rules keep running; nothing here can stop the API.

Without the watcher (RULES_WATCH=false) the API still activates `rules/` when it starts
and no rules are active (a new database): otherwise every decision would be a 422."""

from __future__ import annotations

import threading
from pathlib import Path

import structlog
import watchfiles

from service import db
from service.rules import deployments
from service.ruleset import repository

log = structlog.get_logger(__name__)


def reload_once(directory: Path, *, origin: str) -> None:
    try:
        with db.transaction() as session:
            result = deployments.reload(session, directory=directory, origin=origin)
        if result.status != deployments.UNCHANGED:
            log.info(
                "rules_reloaded", origin=origin, status=result.status, errors=len(result.errors)
            )
    except Exception as exc:  # a reload must never take the API down
        log.exception("rules_reload_failed", origin=origin, error_type=type(exc).__name__)


def activate_if_none(directory: Path) -> bool:
    """Activate the files in `directory` if no rules are active; rules that are active
    (whatever their origin: a reload, a rollback) are left alone. True once done (or
    there was nothing to do); False when the database could not be asked."""
    if not directory.is_dir():
        log.warning("rules_dir_missing", directory=str(directory))
        return True
    try:
        with db.transaction() as session:
            if repository.active_deployment_id(session) is not None:
                return True
            result = deployments.reload(session, directory=directory, origin="startup")
    except Exception as exc:  # the API starts anyway; the caller tries again
        log.warning("rules_start_activation_failed", error_type=type(exc).__name__)
        return False
    log.info(
        "rules_activated_at_start",
        status=result.status,
        deployment_id=result.deployment_id,
        errors=len(result.errors),
    )
    return True


def activate_at_start(directory: Path, *, retry_s: float = 2.0) -> None:
    """`activate_if_none` now; if the database did not answer, again from a background
    thread until it does (the API serves meanwhile: decisions degrade to defaults)."""
    if activate_if_none(directory):
        return

    def retry() -> None:
        delay = retry_s
        while not activate_if_none(directory):
            threading.Event().wait(delay)
            delay = min(delay * 2, 30.0)

    threading.Thread(target=retry, name="rules-start", daemon=True).start()


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
