"""Rules metrics in the Prometheus format, read from the database at scrape time so
every API process reports the same numbers."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service import db
from service.rules import repository


class RulesCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        with db.transaction() as session:
            row = repository.metrics_snapshot(session)
        yield CounterMetricFamily(
            "personalize_rules_reload_rejected",
            "Attempts to change the active rules that were rejected (nothing changed).",
            value=row.rejected,
        )
        yield GaugeMetricFamily(
            "personalize_rules_healthy",
            "1 when the newest change to the rule files is active, 0 while it is rejected.",
            value=0 if row.ok is False else 1,
        )
        yield GaugeMetricFamily(
            "personalize_rules_waiting",
            "Rules waiting for their due time (absence windows, delays).",
            value=row.waiting,
        )
