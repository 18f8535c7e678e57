"""Names a file gets wrong, with the name it probably meant: "did you mean …".

A misspelt event, fact, trait, placement, template, segment or rule id is usually one
or two letters off (`Order Complete`, `profile.order_count`), so the message offers the
closest known name (difflib's ratio, letters compared without case).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from service.language import facts

CUTOFF = 0.6  # difflib's default: below it two names are not alike enough to suggest
# Alike enough to be the same name misspelt (`product_nme`, `frist_name`), not another
# name that shares a part (`nickname`, `name`).
MISSPELT = 0.85


def closest(name: str, known: Iterable[str], *, cutoff: float = CUTOFF) -> str | None:
    """The known name most like `name`, or None when none is alike enough."""
    by_folded: dict[str, str] = {}
    for candidate in sorted(known):
        by_folded.setdefault(candidate.casefold(), candidate)
    found = difflib.get_close_matches(name.casefold(), list(by_folded), n=1, cutoff=cutoff)
    return by_folded[found[0]] if found else None


def hint(name: str, known: Iterable[str]) -> str:
    """`; did you mean 'x'?` to add to a message about the unknown `name`, or ''."""
    match = closest(name, known)
    return f"; did you mean {match!r}?" if match is not None and match != name else ""


def fact_problem(path: str, traits: Iterable[str], purposes: Iterable[str] | None) -> str | None:
    """Why `path` names no fact (with the closest fact, trait or purpose), or None when it
    does. `purposes`: the consent purposes a file may test (None: any)."""
    traits = set(traits)
    problem = facts.check_path(path, traits)
    parts = path.split(".")
    if problem is None:
        if purposes is not None and parts[:2] == ["profile", "consent"]:
            return _purpose_problem(parts[2], set(purposes))
        return None
    if parts[0] == "profile" and len(parts) > 2 and parts[1] == "traits":
        return problem + hint(parts[2], traits)
    known = _known_paths(traits, purposes)
    return problem + hint(path, known)


def _purpose_problem(purpose: str, purposes: set[str]) -> str | None:
    if purpose in purposes:
        return None
    declared = ", ".join(sorted(purposes)) or "none"
    return (
        f"unknown consent purpose {purpose!r}: the purposes are {declared} "
        f"(the keys of the setting CONSENT_DEFAULTS){hint(purpose, purposes)}"
    )


def purpose_problem(purpose: str, purposes: Iterable[str] | None) -> str | None:
    """Why a test profile's consent names no purpose, or None."""
    return None if purposes is None else _purpose_problem(purpose, set(purposes))


def _known_paths(traits: set[str], purposes: Iterable[str] | None) -> set[str]:
    known = {f"event.{name}" for name in facts.EVENT_FACTS}
    known |= {f"profile.{name}" for name in facts.PROFILE_FACTS}
    known |= {f"profile.traits.{name}" for name in traits}
    known |= {f"profile.consent.{name}" for name in purposes or ()}
    return known
