"""When an action may go out: quiet hours across midnight and time zones, consent
defaults, expiry, and the retry backoff's bounds. No database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from service.actions.channels import Result
from service.actions.models import Action
from service.actions.policy import backoff, blocked, quiet_until
from service.settings import Settings


def settings(**values: object) -> Settings:
    return Settings(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("hours", "zone", "now", "expected"),
    [
        # 23:30 in Tokyo is 14:30 UTC: quiet until 08:00 Tokyo = 23:00 UTC.
        ("21:00-08:00", "Asia/Tokyo", "2030-05-01T14:30", "2030-05-01T23:00"),
        # 07:59 local is still quiet; 08:00 is not.
        ("21:00-08:00", "UTC", "2030-05-01T07:59", "2030-05-01T08:00"),
        ("21:00-08:00", "UTC", "2030-05-01T08:00", None),
        # 21:00 starts it: until tomorrow morning.
        ("21:00-08:00", "UTC", "2030-05-01T21:00", "2030-05-02T08:00"),
        ("21:00-08:00", "UTC", "2030-05-01T12:00", None),
        # A window that does not cross midnight.
        ("01:00-05:00", "UTC", "2030-05-01T03:00", "2030-05-01T05:00"),
        ("01:00-05:00", "UTC", "2030-05-01T06:00", None),
        # No zone on the profile, or one that does not exist: DEFAULT_TIMEZONE.
        ("21:00-08:00", None, "2030-05-01T22:00", "2030-05-02T08:00"),
        ("21:00-08:00", "Mars/Olympus", "2030-05-01T22:00", "2030-05-02T08:00"),
        ("", "UTC", "2030-05-01T23:00", None),
    ],
)
def test_quiet_hours(hours: str, zone: str | None, now: str, expected: str | None) -> None:
    traits = {"timezone": zone} if zone else {}
    at = datetime.fromisoformat(now).replace(tzinfo=UTC)
    got = quiet_until(traits, settings(quiet_hours=hours), now=at)
    assert got == (datetime.fromisoformat(expected).replace(tzinfo=UTC) if expected else None)


def action(**values: object) -> Action:
    defaults: dict[str, object] = {"customer_id": uuid.uuid4(), "purpose": "marketing"}
    return Action(payload={}, **(defaults | values))


def test_consent_from_the_profile_else_the_default_and_expiry() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    off = settings(consent_defaults={"marketing": False})
    on = settings(consent_defaults={"marketing": True})
    assert blocked(action(), {}, off, now=now) == "no consent for marketing"
    assert blocked(action(), {}, on, now=now) is None
    assert blocked(action(), {"consent": {"marketing": True}}, off, now=now) is None
    assert blocked(action(), {"consent": {"marketing": False}}, on, now=now) is not None
    # A value that is not a boolean is not consent: the default applies.
    assert blocked(action(), {"consent": {"marketing": "yes"}}, off, now=now) is not None
    assert blocked(action(purpose=None), {}, off, now=now) is None
    expired = action(purpose=None)
    expired.payload = {"expires_at": (now - timedelta(seconds=1)).isoformat()}
    assert blocked(expired, {}, on, now=now).startswith("expired at")


def test_backoff_grows_is_capped_and_honours_retry_after() -> None:
    s = settings(action_retry_base_s=2, action_retry_max_s=60)
    plain = Result("retry", "HTTP 503")
    for attempt, ceiling in ((1, 2), (2, 4), (3, 8), (10, 60)):
        delays = [backoff(attempt, plain, s) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2  # jittered across the range, not fixed
    assert backoff(1, Result("retry", "HTTP 429", retry_after_s=30), s) >= 30
    assert backoff(1, Result("retry", "HTTP 429", retry_after_s=9999), s) == 60
