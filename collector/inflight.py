"""Memory stage: the bytes held for clients, across every connection, against one bound.

What a connection holds beyond the store (a TCP listener's partial frame, an
HTTP request's inbox and body, an answer waiting in the socket's write buffer,
a /tail backlog) is bounded per connection; this bounds the sum, so that 1,024
connections at their limits cannot take the process past `store.max_memory` +
128 MiB. Pure: sources are measured by callables, times are passed in; the
daemon's guard loop (running.py) measures, wakes waiters and sheds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

INFLIGHT_BYTES = 48 * 1024 * 1024  # the bound on bytes held for clients, all connections
SHED_AFTER = 1.0  # seconds over the bound before the largest holder is closed


# A holder's bytes and how to close it (the client loses its connection).
Holder = tuple[int, Callable[[], None]]


@dataclass(slots=True)
class Source:
    """One kind of holder: `total()` is its bytes now; `largest()` its
    biggest sheddable holder (or None)."""

    kind: str  # "http", "tail", "tcp": the label of the shed counter
    total: Callable[[], int]
    largest: Callable[[], Iterable[tuple[str, Holder]]]


@dataclass(slots=True)
class InflightStats:
    """Plain ints for /metrics."""

    bytes: int = 0  # last measured
    peak: int = 0
    waits: int = 0  # answers held back while over the bound
    refused: int = 0  # request bodies refused (503) for the bound
    shed: dict[str, int] = field(default_factory=dict)  # connections closed, by kind


class Inflight:
    """The bound and its bookkeeping: bytes measured at the last `measure()`
    plus bytes charged since (so writes between two measures count at once)."""

    def __init__(self, limit: int = INFLIGHT_BYTES) -> None:
        self.limit = limit
        self.sources: list[Source] = []
        self.measured = 0
        self.charged = 0
        self.stats = InflightStats()
        self.over_since: float | None = None
        self._waiters: dict[object, Callable[[], None]] = {}

    @property
    def used(self) -> int:
        return self.measured + self.charged

    def over(self) -> bool:
        return self.measured + self.charged > self.limit

    def room(self, n: int) -> bool:
        """Whether `n` more bytes fit under the bound."""
        return self.measured + self.charged + n <= self.limit

    def charge(self, n: int) -> None:
        """Count `n` bytes just taken on (until the next measure sees them)."""
        self.charged += n

    def wait(self, key: object, wake: Callable[[], None]) -> None:
        """Call `wake` once the bound has room again (one waiter per key)."""
        if key not in self._waiters:
            self.stats.waits += 1
        self._waiters[key] = wake

    def forget(self, key: object) -> None:
        self._waiters.pop(key, None)

    def measure(self, now: float) -> int:
        """Sum the sources; wake the waiters when under the bound. Returns the bytes."""
        used = sum(src.total() for src in self.sources)
        self.measured, self.charged = used, 0
        self.stats.bytes = used
        self.stats.peak = max(self.stats.peak, used)
        if used > self.limit:
            if self.over_since is None:
                self.over_since = now
        else:
            self.over_since = None
            if self._waiters:
                waiters, self._waiters = self._waiters, {}
                for wake in waiters.values():
                    wake()
        return used

    def shed(self, now: float) -> tuple[str, int] | None:
        """Over the bound for SHED_AFTER: close the largest holder of all
        sources (the slowest client), counted by kind; returns (kind, bytes)."""
        if self.over_since is None or now - self.over_since < SHED_AFTER:
            return None
        best: tuple[str, Holder] | None = None
        for src in self.sources:
            for kind, holder in src.largest():
                if best is None or holder[0] > best[1][0]:
                    best = (kind, holder)
        if best is None or best[1][0] <= 0:
            return None
        kind, (nbytes, close) = best
        close()
        self.charged -= nbytes
        self.stats.shed[kind] = self.stats.shed.get(kind, 0) + 1
        return kind, nbytes
