"""The webhook platforms, one module each, and their registry.

Each module holds everything of its platform: the signature check, the delivery key,
the headers kept, and the table from topic to a small mapper (docs/webhooks.md mirrors
the tables). A topic missing from a table, or mapped to `ignored`, raises
`IgnoredTopic`: the delivery is stored but produces no event. A payload lacking what
its mapping needs raises `MappingError` naming the dotted path of the field, and is
quarantined. Pure: no database, no HTTP.

A platform is added by writing its module (`service.events.platform.Platform`) and
listing it in `PLATFORMS`; a source not listed is a Standard Webhooks sender.
"""

from __future__ import annotations

from collections.abc import Mapping

from service.events.platform import Platform
from service.events.platforms.shopify import SHOPIFY
from service.events.platforms.standard import STANDARD
from service.events.platforms.stripe import STRIPE
from service.events.platforms.woocommerce import WOOCOMMERCE

# Platforms served at `/v1/webhooks/{name}`, in the order their endpoints are listed.
PLATFORMS: Mapping[str, Platform] = {p.name: p for p in (SHOPIFY, WOOCOMMERCE, STRIPE)}


def platform_for(source: str) -> Platform:
    """The platform whose deliveries are stored under `source`."""
    return PLATFORMS.get(source, STANDARD)
