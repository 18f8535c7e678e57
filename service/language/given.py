"""The profile a file's own test gives (`profile:`), as rules and segments see it,
and the fixed instant the tests start at."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from service.language.facts import Profile
from service.language.schema import TestProfile

START = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)  # a Monday morning; any fixed instant would do


@dataclass(frozen=True)
class GivenProfile:
    """A test's profile, as the facts rules and segments see."""

    profile: TestProfile

    def facts(self, *, now: datetime, consent_defaults: dict[str, bool]) -> dict[str, Any]:
        """The facts given, over those of a customer with no orders and no views (every
        count and amount 0, lists empty, the rest missing), as the service has them."""
        given = self.profile.model_dump(exclude={"traits", "segments", "consent"})
        # Two names of one amount: giving either gives both.
        for one, other in (("total_spent", "clv"), ("clv", "total_spent")):
            if one in given:
                given.setdefault(other, given[one])
        return {
            **Profile().facts(now=now, consent_defaults=consent_defaults),
            **given,
            "segments": self.profile.segments,
            "consent": {**consent_defaults, **self.profile.consent},
            "traits": self.profile.traits,
        }
