"""Metrics: plain-int counters folded into prometheus-client at scrape time.

The hot path never calls prometheus-client; a custom collector reads the
listeners' and the store's counters when /metrics is scraped. The registry is
passed in, so tests read values back with `get_sample_value`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from collector.listeners import Listener
from collector.store import Store


class DaemonCollector(Collector):
    """Reads the daemon's counters at scrape time."""

    def __init__(self, store: Store, listeners: Callable[[], Iterable[Listener]]) -> None:
        self.store = store
        self.listeners = listeners

    def collect(self) -> Iterator[Metric]:
        received = CounterMetricFamily(
            "collector_messages_received",
            "Messages received, by listener",
            labels=["listener", "transport", "format"],
        )
        dropped = CounterMetricFamily(
            "collector_messages_dropped",
            "Messages lost, by listener and reason",
            labels=["listener", "reason"],
        )
        for lst in self.listeners():
            cfg = lst.cfg
            received.add_metric([cfg.name, cfg.transport, cfg.format], lst.stats.received)
            for reason, n in sorted(lst.stats.dropped.items()):
                dropped.add_metric([cfg.name, reason], n)
        yield received
        yield dropped
        yield GaugeMetricFamily(
            "collector_store_records", "Records in the store", value=len(self.store)
        )


def make_registry(store: Store, listeners: Callable[[], Iterable[Listener]]) -> CollectorRegistry:
    """A fresh registry holding the daemon's collector."""
    registry = CollectorRegistry()
    registry.register(DaemonCollector(store, listeners))
    return registry
