"""The store's products: categories from the personas file, prices drawn log-normal
around each category's median, popularity long-tailed (Zipf) within a category."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
from faker import Faker

from service.synthetic.personas import PersonasFile


@dataclass(frozen=True)
class Product:
    id: str  # the platform's product id (digits, as Shopify and WooCommerce send)
    sku: str
    title: str
    category: str
    price: Decimal


@dataclass(frozen=True)
class Catalogue:
    products: tuple[Product, ...]
    # Per category: its first product's index and the cumulative popularity of its
    # products (ending at 1), so a pick is one binary search.
    by_category: dict[str, tuple[int, list[float]]]

    def pick(self, rng: np.random.Generator, category: str) -> Product:
        first, cumulative = self.by_category[category]
        index = min(bisect.bisect_right(cumulative, rng.random()), len(cumulative) - 1)
        return self.products[first + index]

    def popularity(self, category: str) -> np.ndarray:
        """The category's products' shares of its views, in catalogue order."""
        _first, cumulative = self.by_category[category]
        return np.diff(np.array(cumulative), prepend=0.0)


def build(model: PersonasFile, *, seed: int, scale: float = 1.0) -> Catalogue:
    """The catalogue for `model`; `scale` multiplies every category's product count."""
    rng = np.random.default_rng([seed, 1])
    fake = Faker()
    fake.seed_instance(seed)
    products: list[Product] = []
    by_category: dict[str, tuple[int, list[float]]] = {}
    for category in model.categories:
        count = max(1, round(category.products * scale))
        prices = rng.lognormal(np.log(category.price.median), category.price.spread, count)
        start = len(products)
        for i, price in enumerate(prices):
            number = start + i + 1
            products.append(
                Product(
                    id=str(7_000_000_000 + number),
                    sku=f"{category.name[:3].upper()}-{number:06d}",
                    title=f"{fake.word().capitalize()} {category.name} {number}",
                    category=category.name,
                    price=Decimal(f"{max(price, 0.5):.2f}"),
                )
            )
        # Zipf within the category, the most popular in a shuffled order.
        ranks = rng.permutation(count) + 1
        weights = 1.0 / ranks.astype(float) ** model.popularity
        cumulative = np.cumsum(weights / weights.sum())
        cumulative[-1] = 1.0
        by_category[category.name] = (start, [float(c) for c in cumulative])
    return Catalogue(tuple(products), by_category)
