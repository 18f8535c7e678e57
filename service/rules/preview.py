"""An email as one customer would get it, without sending it: the template from disk,
the offer as the rule that sends it would produce it for that customer, and the context
a worker renders with (`templates.email_context`, as in service/actions/claims.py).

The rule's parameters are filled from the customer's profile as it is now; `event.`
facts come from the properties given (an event that did not happen has none), so a
reference to a missing one is empty, as in the service.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from service.language import templates
from service.language.facts import Profile, render
from service.language.loader import LoadedRuleset
from service.language.schema import OfferAction, OfferSpec, parse_duration
from service.profiles import facts as profile_facts
from service.profiles import service as profiles
from service.settings import get_settings

PLACEHOLDER_OFFER = "PREVIEW"  # the code shown when no rule sends the template


class PreviewProblem(Exception):
    """No such customer, template or rule, or the template does not render."""


@dataclass(frozen=True)
class Email:
    template: str
    rule: str | None  # the rule whose offer was used
    to: str | None  # the customer's email address, masked; None: it would not be sent
    subject: str
    text: str
    offer: dict[str, Any]


def senders(rulesets: list[LoadedRuleset], template: str) -> list[tuple[str, OfferSpec]]:
    """(rule id, offer) of every email offer that uses `template`."""
    return [
        (rule.id, action.offer)
        for ruleset in rulesets
        for rule in ruleset.definition.rules
        for action in rule.actions
        if isinstance(action, OfferAction)
        and action.offer.channel == "email"
        and action.offer.template == template
    ]


def email(
    session: Session,
    *,
    directory: Path,
    rulesets: list[LoadedRuleset],
    template: str,
    customer: str,
    rule: str | None,
    properties: dict[str, Any],
    now: datetime,
) -> Email:
    """Render `template` for the customer `customer` (an id or `kind:value`)."""
    try:
        loaded = templates.load(directory, template)
    except templates.TemplateProblem as exc:
        raise PreviewProblem(str(exc)) from None
    found = profiles.find(session, ref=customer)
    if found is None:
        raise PreviewProblem(f"no profile matches {customer!r}")
    rule_id, spec = _offer(rulesets, template, rule)
    settings = get_settings()
    read = profile_facts.read(session, [found.id], currency=settings.shop_currency, now=now)
    known = read.get(found.id) or Profile(customer_id=found.id)
    profile = known.facts(now=now, consent_defaults=settings.consent_defaults)
    tree = {
        "event": {"name": None, "type": "track", "source": "preview", "properties": properties},
        "context": {},
        "profile": profile,
    }
    payload = _payload(spec, template=template, tree=tree, now=now)
    try:
        subject, text = templates.render(
            loaded, templates.email_context(payload, dict(found.traits or {}))
        )
    except templates.TemplateProblem as exc:
        raise PreviewProblem(str(exc)) from None
    address = next((v for k, v in profiles.identities(session, found) if k == "email"), None)
    return Email(template, rule_id, address, subject, text, payload)


def _offer(
    rulesets: list[LoadedRuleset], template: str, rule: str | None
) -> tuple[str | None, OfferSpec | None]:
    """The offer the preview shows: the named rule's email offer, else the one rule
    that sends the template, else none (a placeholder offer)."""
    if rule is not None:
        offers = [
            (r.id, a.offer)
            for ruleset in rulesets
            for r in ruleset.definition.rules
            if r.id == rule
            for a in r.actions
            if isinstance(a, OfferAction) and a.offer.channel == "email"
        ]
        if not offers:
            raise PreviewProblem(f"rule {rule!r} sends no email offer in these files")
        return offers[0]
    found = senders(rulesets, template)
    if len(found) > 1:
        names = ", ".join(r for r, _ in found)
        raise PreviewProblem(f"several rules send {template!r} ({names}): choose one with --rule")
    return found[0] if found else (None, None)


def _payload(
    spec: OfferSpec | None, *, template: str, tree: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """The offer action as the service stores it (service/actions/service.py): the
    rule's offer with its references filled in, and when it expires."""
    if spec is None:
        payload: dict[str, Any] = {"channel": "email", "offer": PLACEHOLDER_OFFER, "params": {}}
    else:
        payload = render(spec.model_dump(exclude_none=True), tree)
    payload = {"type": "offer", **payload, "template": template}
    span = (
        parse_duration(payload["expires_in"])
        if payload.get("expires_in")
        else timedelta(seconds=get_settings().inbox_default_ttl_s)
    )
    payload["expires_at"] = (now + span).isoformat()
    return payload
