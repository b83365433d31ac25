"""The running daemon seals older shards into compressed blocks off the event
loop, answers from them exactly as before, shows the oldest record's time in
/health, and warns (once an hour) when a bound starts evicting."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace

import pytest

from collector.config import StoreConfig
from tests.support import get_json, http_request, local_config, running_daemon, wait_for


def _lines(n: int, start_s: float, step_s: float) -> bytes:
    return b"\n".join(
        json.dumps(
            {
                "timestamp": start_s + i * step_s,
                "host": f"web-{i % 3}",
                "service": "api",
                "level": "err" if i % 7 == 0 else "info",
                "message": f"request {i} Failed for user u{i} after timeout",
                "user_id": i,
            }
        ).encode()
        for i in range(n)
    )


async def test_older_shards_are_sealed_in_the_background_and_read_back_unchanged() -> None:
    store_cfg = replace(StoreConfig(), shard_span=2.0, sweep_interval=0.05)
    async with running_daemon(local_config(store=store_cfg)) as d:
        start_s = time.time() - 30
        # 30 s of events: ~15 shards of 40 (a shard of a few records is not
        # worth sealing: a block's fixed cost, ~2 KiB, outweighs the savings)
        body = _lines(600, start_s, 0.05)
        answer = await http_request(
            d.http_address,
            "POST",
            "/logs",
            body,
            {"Content-Type": "application/x-ndjson"},
        )
        assert answer.status == 201
        before = (await get_json(d, "/logs?start=0&limit=1000"))["logs"]
        assert len(before) == 600
        await wait_for(lambda: d.store.sealed_records >= 480)
        after = (await get_json(d, "/logs?start=0&limit=1000"))["logs"]
        assert after == before
        assert after[0]["fields"] == {"user_id": 0}
        hits = (await get_json(d, "/logs?start=0&q=user%20u17%20"))["logs"]
        assert [r["message"] for r in hits] == ["request 17 Failed for user u17 after timeout"]
        one = await get_json(d, f"/logs/{before[5]['id']}")
        assert one["log"] == before[5]
        stats = await get_json(d, "/stats?start=0&by=level")
        assert stats["by"]["level"] == {"info": 514, "err": 86}
        health = await get_json(d, "/health")
        assert health["oldest"] == before[0]["timestamp"]
        assert health["records"] == 600


async def test_health_shows_no_oldest_time_for_an_empty_store() -> None:
    async with running_daemon() as d:
        assert (await get_json(d, "/health"))["oldest"] is None


async def test_eviction_is_announced_once_naming_the_bound_and_the_time_held(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store_cfg = replace(StoreConfig(), max_records=50, sweep_interval=0.05)
    caplog.set_level(logging.WARNING, logger="collector")
    async with running_daemon(local_config(store=store_cfg)) as d:
        for round_ in range(2):
            answer = await http_request(
                d.http_address,
                "POST",
                "/logs",
                _lines(100, time.time() - 100, 1.0),
                {"Content-Type": "application/x-ndjson"},
            )
            assert answer.status == 201
            await wait_for(lambda r=round_: d.evicted_seen == 50 * (r + 1) + 50 * r)
    warnings = [r.getMessage() for r in caplog.records if "evicting" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("store: store.max_records (50) reached, evicting the oldest")
    assert "the store now holds 0m49s of logs, from 20" in warnings[0]
