"""Webhook deliveries from e-commerce platforms, mapped to canonical events.

Pure functions: no database, no HTTP. Each platform has one table from topic to a small
mapper, so the table doubles as documentation (docs/webhooks.md mirrors it). A topic
missing from a table, or mapped to `ignored`, raises `IgnoredTopic`: the delivery is
stored but produces no event. A payload lacking what its mapping needs raises
`MappingError` naming the dotted path of the field, and is quarantined.
"""

from service.events.platforms.shopify import SHOPIFY_TOPICS, map_shopify
from service.events.platforms.standard import BIGCOMMERCE_SCOPES, SEGMENT_TYPES, map_standard
from service.events.platforms.stripe import STRIPE_TOPICS, map_stripe
from service.events.platforms.woocommerce import WOOCOMMERCE_TOPICS, map_woocommerce

__all__ = [
    "BIGCOMMERCE_SCOPES",
    "SEGMENT_TYPES",
    "SHOPIFY_TOPICS",
    "STRIPE_TOPICS",
    "WOOCOMMERCE_TOPICS",
    "map_shopify",
    "map_standard",
    "map_stripe",
    "map_woocommerce",
]
