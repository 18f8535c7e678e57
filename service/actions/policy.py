"""When an action may go out: consent, expiry, quiet hours, and how long to wait
before a retry. Pure functions of the action, the customer's traits and the settings."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from service.actions.channels import Result
from service.actions.models import Action
from service.settings import Settings


def blocked(
    action: Action, traits: dict[str, Any], settings: Settings, *, now: datetime
) -> str | None:
    """Why the action must not go out at all: no consent for its purpose, or its offer
    expired before it could be delivered."""
    if action.purpose:
        consent = traits.get("consent")
        given = consent.get(action.purpose) if isinstance(consent, dict) else None
        if not isinstance(given, bool):
            given = settings.consent_defaults.get(action.purpose, False)
        if not given:
            return f"no consent for {action.purpose}"
    expires = action.payload.get("expires_at")
    if expires and datetime.fromisoformat(expires) <= now:
        return f"expired at {expires} before it was delivered"
    return None


def quiet_until(traits: dict[str, Any], settings: Settings, *, now: datetime) -> datetime | None:
    """The end of quiet hours in the customer's timezone, if `now` is within them."""
    if not settings.quiet_hours:
        return None
    start, end = (time.fromisoformat(p) for p in settings.quiet_hours.split("-"))
    zone = _zone(traits.get("timezone")) or _zone(settings.default_timezone) or UTC
    local = now.astimezone(zone)
    t = local.time().replace(tzinfo=None)
    quiet = (start <= t or t < end) if start > end else (start <= t < end)
    if not quiet:
        return None
    morning = datetime.combine(local.date(), end, tzinfo=zone)
    if morning <= local:
        morning = datetime.combine(local.date() + timedelta(days=1), end, tzinfo=zone)
    return morning.astimezone(UTC)


def _zone(name: Any) -> ZoneInfo | None:
    if not isinstance(name, str) or not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def backoff(attempt: int, result: Result, settings: Settings) -> float:
    """Exponential with full jitter; a receiver's Retry-After is a floor."""
    ceiling = min(settings.action_retry_max_s, settings.action_retry_base_s * 2 ** (attempt - 1))
    delay = random.uniform(0, ceiling)
    if result.retry_after_s is not None:
        delay = max(delay, min(result.retry_after_s, settings.action_retry_max_s))
    return delay
