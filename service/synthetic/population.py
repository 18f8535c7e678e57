"""Customers drawn from personas: who they are (Faker names, emails, phones,
addresses, time zones, locales), which persona they follow, and the parameters of
their own behaviour around their persona's. Customer `i` depends only on the seed
and `i`, so a store of 2,000 is the first 2,000 of a store of 1,000,000."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

import numpy as np
from faker import Faker

from service.synthetic.personas import Persona, PersonasFile

# Time zones by the locale's country (a customer's local hour drives their sessions).
ZONES = {
    "US": ["America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"],
    "GB": ["Europe/London"],
    "DE": ["Europe/Berlin"],
    "FR": ["Europe/Paris"],
    "CA": ["America/Toronto", "America/Vancouver"],
    "AU": ["Australia/Sydney"],
}


@dataclass(frozen=True)
class Customer:
    seed: int
    index: int
    persona: str
    user_id: str  # the storefront's user id (Segment `userId`)
    anonymous_id: str  # the browser's id before signing in
    platform: str  # shopify | woocommerce: where their checkouts and orders come from
    platform_id: int  # the platform's customer id
    via_segment: bool  # storefront events through the Segment endpoints, else the events API
    first_name: str
    last_name: str
    email: str
    phone: str
    city: str
    country: str
    locale: str
    timezone: str
    marketing_consent: bool
    first_visit: datetime
    last_visit: datetime  # churn: no session after this
    activity: float  # this customer's visit rate relative to the persona's
    anonymous_sessions: int
    categories: tuple[str, ...]
    category_weights: tuple[float, ...]  # this customer's interest, summing to 1
    _cumulative: tuple[float, ...]

    def pick_category(self, rng: np.random.Generator) -> str:
        index = bisect.bisect_right(self._cumulative, rng.random() * self._cumulative[-1])
        return self.categories[min(index, len(self.categories) - 1)]


def rng_for(seed: int, index: int, stream: int) -> np.random.Generator:
    """An independent random stream per seed, customer and purpose."""
    return np.random.default_rng([seed, index, stream])


def draw(model: PersonasFile, *, seed: int, index: int, start: datetime, end: datetime) -> Customer:
    rng = rng_for(seed, index, 0)
    names = list(model.personas)
    shares = np.array([model.personas[n].share for n in names])
    persona_name = names[int(rng.choice(len(names), p=shares / shares.sum()))]
    persona = model.personas[persona_name]
    locales = list(model.locales)
    weights = np.array([model.locales[name] for name in locales])
    locale = locales[int(rng.choice(len(locales), p=weights / weights.sum()))]
    fake = _faker(locale)
    fake.seed_instance(seed * 1_000_003 + index)
    country = locale.split("_")[1]
    first, last = fake.first_name(), fake.last_name()
    platforms = list(model.channels.platforms)
    platform_shares = np.array([model.channels.platforms[p] for p in platforms])
    span = (end - start).total_seconds()
    joins = rng.random() < persona.joins
    # Customers who join do so inside the span; the others were around before it.
    first_visit = start + timedelta(
        seconds=rng.uniform(0, span) if joins else -rng.uniform(0, 60 * 86400)
    )
    last_visit = end
    if persona.churn_after_days is not None:  # counted from their first visit in the span
        active_from = max(first_visit, start)
        last_visit = min(
            end, active_from + timedelta(days=rng.exponential(persona.churn_after_days))
        )
    categories = tuple(c.name for c in model.categories)
    affinity = np.array(
        [persona.categories.get(c, 1.0 if not persona.categories else 0.2) for c in categories]
    )
    affinity = rng.dirichlet(affinity * 4)  # each customer's own mix around the persona's
    local = _ascii(f"{first}.{last}".lower())
    return Customer(
        seed=seed,
        index=index,
        persona=persona_name,
        user_id=f"u{seed}-{index:07d}",
        anonymous_id=f"anon-{seed}-{index:07d}-{int(rng.integers(1 << 30)):08x}",
        platform=platforms[int(rng.choice(len(platforms), p=platform_shares))],
        platform_id=9_000_000_000 + seed * 10_000_000 + index,
        via_segment=bool(rng.random() < model.channels.segment),
        first_name=first,
        last_name=last,
        email=f"{local}.{index}@example.{('com', 'net', 'org')[index % 3]}",
        phone=_household_phone(model, seed=seed, index=index, start=start, end=end)
        or _phone(index, country),
        city=fake.city(),
        country=country,
        locale=locale.replace("_", "-"),
        timezone=str(rng.choice(ZONES.get(country, ["UTC"]))),
        marketing_consent=bool(rng.random() < persona.marketing_consent),
        first_visit=first_visit,
        last_visit=last_visit,
        activity=float(rng.gamma(4.0, 0.25)),  # mean 1: some customers come more often
        anonymous_sessions=int(rng.poisson(persona.anonymous_sessions)),
        categories=categories,
        category_weights=tuple(float(w) for w in affinity),
        _cumulative=tuple(float(w) for w in np.cumsum(affinity)),
    )


@lru_cache(maxsize=32)
def _faker(locale: str) -> Faker:
    return Faker(locale)  # costly to make: one per locale, re-seeded per customer


def persona_of(model: PersonasFile, customer: Customer) -> Persona:
    return model.personas[customer.persona]


def _ascii(text: str) -> str:
    kept = "".join(ch for ch in text if ch.isascii() and (ch.isalnum() or ch == "."))
    return kept.strip(".") or "customer"


# A share of customers give the phone of the customer drawn before them (a household's
# landline): the identity resolution then refuses to merge the two, as it should.
HOUSEHOLD_SHARE = 0.02


def _household_phone(
    model: PersonasFile, *, seed: int, index: int, start: datetime, end: datetime
) -> str | None:
    if index == 0 or rng_for(seed, index, 3).random() >= HOUSEHOLD_SHARE:
        return None
    return draw(model, seed=seed, index=index - 1, start=start, end=end).phone


def _phone(index: int, country: str) -> str:
    """A number of the customer's country, its own: the subscriber part is the customer's
    index, so no two customers of a store share one (shared phones would make the
    identity resolution refuse merges that real stores rarely see). North American
    numbers have an exchange starting with 0, which the numbering plan never assigns;
    the others are not reserved for fiction, and no channel of the service dials them."""
    if country == "GB":
        return f"+44 7700 {index % 1_000_000:06d}"
    if country == "DE":
        return f"+49 30 {10_000_000 + index % 90_000_000}"
    if country == "FR":
        digits = f"{index % 100_000_000:08d}"
        return "+33 6 " + " ".join(digits[i : i + 2] for i in range(0, 8, 2))
    area = (202, 212, 312, 415, 617, 713, 206, 305, 404, 503)[index // 1_000_000 % 10]
    return f"+1 {area} 0{index % 1_000_000:06d}"
