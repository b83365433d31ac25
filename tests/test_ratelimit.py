"""Rate limiting: token buckets per key, the bounded key table, exempt levels,
summaries; end to end through a TCP listener and /metrics."""

from __future__ import annotations

import gc
import socket

from collector.config import ListenerConfig, RateLimitConfig
from collector.ratelimit import MAX_KEYS, RateLimiter
from collector.record import ERR, INFO, Record
from collector.running import report_rate_limits
from tests.support import get_json, http_request, listener_addr, local_config, running_daemon
from tests.support import wait_for as wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def rec(host: str | None = "web-1", service: str | None = "app", level: int = INFO) -> Record:
    return Record(0, 0, host, service, None, None, 1, level, "m", None, None, "raw")


class Drops:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def __call__(self, reason: str, n: int) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + n


def test_a_bucket_lets_the_burst_through_then_refills_at_the_rate() -> None:
    clock, drops = Clock(), Drops()
    lim = RateLimiter(RateLimitConfig(rate=10, burst=5), "l", clock)
    kept = lim.admit([rec() for _ in range(20)], [], drops)
    assert len(kept) == 5
    assert drops.counts == {"rate_limited": 15}
    clock.now += 0.5  # five tokens back
    assert len(lim.admit([rec() for _ in range(20)], [], drops)) == 5
    clock.now += 100  # never more than the burst
    assert len(lim.admit([rec() for _ in range(20)], [], drops)) == 5
    assert lim.dropped == 45


def test_records_at_the_exempt_level_or_more_severe_always_pass() -> None:
    lim = RateLimiter(RateLimitConfig(rate=1, burst=1, exempt_level="err"), "l", Clock())
    batch = [rec(level=INFO), rec(level=INFO), rec(level=ERR), rec(level=0), rec(level=INFO)]
    kept = lim.admit(batch, [], Drops())
    assert [r.level for r in kept] == [INFO, ERR, 0]


def test_each_key_has_its_own_bucket() -> None:
    drops = Drops()
    by_host = RateLimiter(RateLimitConfig(rate=1, burst=2), "l", Clock())
    kept = by_host.admit([rec("a"), rec("b"), rec("a"), rec("a"), rec("b"), rec("c")], [], drops)
    assert [r.host for r in kept] == ["a", "b", "a", "b", "c"]
    both = RateLimiter(RateLimitConfig(rate=1, burst=1, key="host,service"), "l", Clock())
    kept = both.admit([rec("a", "x"), rec("a", "y"), rec("a", "x")], [], drops)
    assert [(r.host, r.service) for r in kept] == [("a", "x"), ("a", "y")]
    by_service = RateLimiter(RateLimitConfig(rate=1, burst=1, key="service"), "l", Clock())
    assert len(by_service.admit([rec("a", "x"), rec("b", "x")], [], drops)) == 1


def test_the_peer_key_follows_the_senders_of_the_batch() -> None:
    lim = RateLimiter(RateLimitConfig(rate=1, burst=1, key="peer"), "l", Clock())
    batch = [rec("same-host") for _ in range(5)]
    # records 0-1 from 10.0.0.1, 2-4 from 10.0.0.2
    kept = lim.admit(batch, [(0, "10.0.0.1"), (2, "10.0.0.2")], Drops())
    assert [id(r) for r in kept] == [id(batch[0]), id(batch[2])]
    lines = sorted(r.message for r in lim.summaries(0, "me"))
    assert lines == [
        "rate limit: dropped 1 records from peer=10.0.0.1 in the last 10 s",
        "rate limit: dropped 2 records from peer=10.0.0.2 in the last 10 s",
    ]


def test_summaries_say_what_each_key_dropped_once_then_start_over() -> None:
    lim = RateLimiter(RateLimitConfig(rate=1, burst=1, key="host,service"), "tcp", Clock())
    lim.admit([rec("web-1", "nginx") for _ in range(4)] + [rec(None, None)] * 2, [], Drops())
    out = lim.summaries(123, "collector-host")
    assert [r.message for r in out] == [
        "rate limit: dropped 3 records from host=web-1 service=nginx in the last 10 s",
        "rate limit: dropped 1 records from host=- service=- in the last 10 s",
    ]
    first = out[0]
    assert (first.service, first.level, first.host, first.timestamp) == (
        "collector",
        4,
        "collector-host",
        123,
    )
    assert first.fields == {"listener": "tcp", "dropped": 3}
    assert lim.summaries(124, "h") == []


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_flood_of_a_million_distinct_hosts_keeps_the_table_bounded_and_memory_flat() -> None:
    clock, drops = Clock(), Drops()
    lim = RateLimiter(RateLimitConfig(rate=1, burst=1), "l", clock)
    batch = 1000
    rss: list[int] = []
    for b in range(1000):
        clock.now += 0.001
        recs = [rec(f"h{b * batch + i}") for i in range(batch)] + [rec("h0")] * 3
        lim.admit(recs, [], drops)
        if b in (100, 999):
            gc.collect()
            rss.append(_rss_kib())
    assert len(lim.table) == MAX_KEYS
    assert len(lim.pending) <= MAX_KEYS
    # 900,000 more distinct hosts after the first reading: flat within 8 MiB.
    assert rss[1] - rss[0] < 8 * 1024, rss
    assert drops.counts["rate_limited"] > 0


async def test_a_listener_drops_over_the_limit_counts_them_and_stores_a_summary() -> None:
    rl = RateLimitConfig(rate=0.001, burst=3, key="host", exempt_level="err")
    tcp = ListenerConfig(name="tcp", transport="tcp", bind="127.0.0.1:0", rate_limit=rl)
    async with running_daemon(local_config(tcp)) as d:
        lines = [b"<14>1 - web-1 app - - - info %d\n" % i for i in range(10)]
        lines += [b"<11>1 - web-1 app - - - err %d\n" % i for i in range(2)]
        lines += [b"<14>1 - web-2 app - - - other host\n"]
        with socket.create_connection(listener_addr(d, "tcp")) as s:
            s.sendall(b"".join(lines))
        await wait_until(lambda: d.listeners["tcp"].stats.received == 13)
        logs = (await get_json(d, "/logs?limit=100"))["logs"]
        assert sorted(r["message"] for r in logs) == sorted(
            ["info 0", "info 1", "info 2", "err 0", "err 1", "other host"]
        )
        assert report_rate_limits(d, "me") == 1
        summary = (await get_json(d, "/logs?service=collector"))["logs"]
        assert [(r["level"], r["message"]) for r in summary] == [
            ("warning", "rate limit: dropped 7 records from host=web-1 in the last 10 s")
        ]
        metrics = (await http_request(d.http_address, "GET", "/metrics")).body.decode()
        assert 'collector_messages_dropped_total{listener="tcp",reason="rate_limited"} 7.0' in (
            metrics
        )
        assert 'collector_rate_limit_keys{listener="tcp"} 2.0' in metrics


async def test_the_peer_key_limits_udp_senders_by_address() -> None:
    rl = RateLimitConfig(rate=0.001, burst=2, key="peer")
    udp = ListenerConfig(name="udp", transport="udp", bind="127.0.0.1:0", rate_limit=rl)
    async with running_daemon(local_config(udp)) as d:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(6):
                s.sendto(b"<14>1 - host-%d app - - - n %d" % (i, i), listener_addr(d, "udp"))
        await wait_until(lambda: d.listeners["udp"].stats.received == 6)
        assert len(d.store) == 2
        assert d.listeners["udp"].stats.dropped["rate_limited"] == 4
