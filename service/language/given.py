"""The profile a file's own test gives (`profile:`), as rules and segments see it,
and the fixed instant the tests start at."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from service.language.facts import PROFILE_FACTS
from service.language.schema import TestProfile

START = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)  # a Monday morning; any fixed instant would do


@dataclass(frozen=True)
class GivenProfile:
    """A test's profile, as the facts rules and segments see."""

    profile: TestProfile

    def facts(self, *, now: datetime, consent_defaults: dict[str, bool]) -> dict[str, Any]:
        given = self.profile.model_dump(exclude={"traits", "segments", "consent"})
        return {
            **dict.fromkeys(PROFILE_FACTS),
            "orders_count": 0,
            **given,
            "segments": self.profile.segments,
            "consent": {**consent_defaults, **self.profile.consent},
            "traits": self.profile.traits,
        }
