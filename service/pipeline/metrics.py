"""Set-aside items in the Prometheus format, read from the database at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service import db
from service.pipeline import repository
from service.pipeline.models import Stage


class SetAsideCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        with db.transaction() as session:
            open_ = repository.open_counts(session)
            total = repository.total_counts(session)
        waiting = GaugeMetricFamily(
            "personalize_set_aside_open",
            "Items set aside because processing them raised, not yet replayed.",
            labels=["stage"],
        )
        ever = CounterMetricFamily(
            "personalize_set_aside",
            "Items set aside because processing them raised, since the start.",
            labels=["stage"],
        )
        for stage in Stage:
            waiting.add_metric([stage.value], open_.get(stage, 0))
            ever.add_metric([stage.value], total.get(stage, 0))
        yield waiting
        yield ever
