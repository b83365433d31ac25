"""Rate limiting stage: parse -> *rate limit* -> sink, a token bucket per key.

One `admit()` per listener batch: the clock is read once, each key's bucket is
refilled once per batch, and the key table is an LRU bounded at MAX_KEYS, so a
flood of distinct hosts costs a bounded table. Dropped records are counted and
summarised (one record per key per SUMMARY_EVERY seconds), never silent.
Pure apart from the clock it is given.
"""

from __future__ import annotations

import operator
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from collector.config import RateLimitConfig
from collector.record import LEVELS, WARNING, Record

MAX_KEYS = 10_000  # buckets kept; the least recently used go first
SUMMARY_EVERY = 10.0  # seconds: one summary record per key that dropped
RATE_LIMITED = "rate_limited"  # the `reason` label of the drops
FACILITY_SYSLOG = 5  # RFC 5424: messages generated internally by syslogd

_KEY_GETTERS: dict[str, Callable[[Record], Any]] = {
    "host": operator.attrgetter("host"),
    "service": operator.attrgetter("service"),
    "host,service": operator.attrgetter("host", "service"),
}


class RateLimiter:
    """One listener's buckets, the drops not yet summarised, and counters."""

    def __init__(self, cfg: RateLimitConfig, listener: str, clock: Callable[[], float]) -> None:
        self.cfg = cfg
        self.listener = listener
        self.clock = clock
        self.rate = cfg.rate
        self.burst = float(cfg.burst if cfg.burst is not None else max(1, round(cfg.rate)))
        self.by_peer = cfg.key == "peer"
        self.exempt = -1 if cfg.exempt_level is None else LEVELS.index(cfg.exempt_level)
        # key -> [tokens, last refill time]
        self.table: OrderedDict[Hashable, list[float]] = OrderedDict()
        self.pending: dict[Hashable, int] = {}  # drops per key since the last summary
        self.pending_others = 0  # drops of keys past MAX_KEYS in `pending`
        self.dropped = 0

    def _keys(self, recs: list[Record], peers: list[tuple[int, str | None]]) -> Iterable[Hashable]:
        if not self.by_peer:
            return map(_KEY_GETTERS[self.cfg.key], recs)
        keys: list[Hashable] = [None] * len(recs)
        ends = [start for start, _ in peers[1:]] + [len(recs)]
        for (start, sender), end in zip(peers, ends, strict=True):
            keys[start:end] = [sender] * (end - start)
        return keys

    def admit(
        self,
        recs: list[Record],
        peers: list[tuple[int, str | None]],
        drop: Callable[[str, int], None],
    ) -> list[Record]:
        """The records of `recs` within their key's limit, in order.

        `peers` lists (index, sender): records from that index on came from
        that sender (needed for key `peer` only). Drops are counted by `drop`."""
        now = self.clock()
        table = self.table
        rate, burst, exempt = self.rate, self.burst, self.exempt
        dropped: list[int] = []
        for i, (rec, key) in enumerate(zip(recs, self._keys(recs, peers), strict=True)):
            bucket = table.get(key)
            if bucket is None:
                bucket = table[key] = [burst, now]
                if len(table) > MAX_KEYS:
                    table.popitem(last=False)
            elif bucket[1] != now:  # once per key and batch: refill, mark as recently used
                tokens = bucket[0] + (now - bucket[1]) * rate
                bucket[0] = tokens if tokens < burst else burst
                bucket[1] = now
                table.move_to_end(key)
            if bucket[0] >= 1.0:
                bucket[0] -= 1.0
            elif rec.level > exempt:
                dropped.append(i)
                self._pending(key)
        if not dropped:
            return recs
        drop(RATE_LIMITED, len(dropped))
        self.dropped += len(dropped)
        gone = set(dropped)
        return [rec for i, rec in enumerate(recs) if i not in gone]

    def _pending(self, key: Hashable) -> None:
        pending = self.pending
        n = pending.get(key)
        if n is not None:
            pending[key] = n + 1
        elif len(pending) < MAX_KEYS:
            pending[key] = 1
        else:
            self.pending_others += 1

    def summaries(self, now_us: int, host: str | None) -> list[Record]:
        """One warning record per key that dropped records since the last
        call (the daemon calls it every SUMMARY_EVERY seconds)."""
        out = [
            _summary(now_us, host, self.listener, _describe(self.cfg.key, key), n)
            for key, n in self.pending.items()
        ]
        if self.pending_others:
            what = f"other {self.cfg.key} keys"
            out.append(_summary(now_us, host, self.listener, what, self.pending_others))
        self.pending = {}
        self.pending_others = 0
        return out


def _describe(kind: str, key: Hashable) -> str:
    """`host=web-1`, `service=sshd`, `peer=10.0.0.1`, `host=web-1 service=sshd`."""
    values = key if kind == "host,service" else (key,)
    assert isinstance(values, tuple)
    return " ".join(
        f"{name}={'-' if v is None else v}" for name, v in zip(kind.split(","), values, strict=True)
    )


def _summary(now_us: int, host: str | None, listener: str, what: str, n: int) -> Record:
    secs = f"{SUMMARY_EVERY:g}"
    return Record(
        now_us,
        now_us,
        host,
        "collector",
        None,
        None,
        FACILITY_SYSLOG,
        WARNING,
        f"rate limit: dropped {n} records from {what} in the last {secs} s",
        None,
        {"listener": listener, "dropped": n},
        "raw",
    )
