"""Store configuration from outside: TTL, max_records, ids across a restart, truncation on every transport."""

from __future__ import annotations

import datetime as dt
import json
import socket
from pathlib import Path

from collector.config import ListenerConfig, ParsingConfig, StoreConfig
from tests.e2e import (
    count_is,
    metric,
    metric_is,
    now,
    send_tcp,
    send_udp,
    z,
)
from tests.faults_support import DaemonProcess, poll
from tests.support import (
    get_json,
    listener_addr,
    local_config,
    running_daemon,
    wait_for,
)

# == Configuration: store ========================================================


async def test_records_older_than_ttl_expire_and_are_counted() -> None:
    cfg = local_config(store=StoreConfig(ttl=1.0, sweep_interval=0.1, shard_span=0.5))
    async with running_daemon(cfg) as d:
        await send_udp(listener_addr(d, "udp"), b"<14>1 - h a - - - short-lived")
        await wait_for(lambda: count_is(d, "/logs", 1))
        await wait_for(lambda: count_is(d, "/logs", 0), timeout=10)
        assert (await get_json(d, "/health"))["records"] == 0
        assert await metric(d, "collector_store_expired_records_total") == 1


async def test_beyond_max_records_the_oldest_are_evicted_and_counted() -> None:
    cfg = local_config(store=StoreConfig(max_records=10))
    async with running_daemon(cfg) as d:
        t0 = now() - dt.timedelta(seconds=30)
        data = "".join(
            f"<14>1 {z(t0 + dt.timedelta(seconds=i))} h a - - - n{i}\n" for i in range(25)
        )
        await send_tcp(listener_addr(d, "tcp"), data.encode())
        await wait_for(lambda: metric_is(d, "collector_store_evicted_records_total", 15))
        logs = (await get_json(d, "/logs"))["logs"]
        assert [r["message"] for r in logs] == [f"n{i}" for i in range(15, 25)]
        assert (await get_json(d, "/health"))["records"] == 10


def test_an_id_stays_valid_across_a_restart_with_persist_dir(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path, store={"persist_dir": str(tmp_path / "state")})
    daemon.start()
    try:
        with socket.create_connection(("127.0.0.1", daemon.tcp_port)) as s:
            s.sendall(b"<14>1 - h a - - - kept over restart\n")
        poll(lambda: daemon.records() == 1, 10, "one record")
        before = daemon.get("/logs")["logs"][0]
        assert daemon.stop() == 0
        daemon.start()
        assert daemon.get(f"/logs/{before['id']}") == {"log": before}
        with socket.create_connection(("127.0.0.1", daemon.tcp_port)) as s:
            s.sendall(b"<14>1 - h a - - - after restart\n")
        poll(lambda: daemon.records() == 2, 10, "two records")
        ids = [r["id"] for r in daemon.get("/logs")["logs"]]
        assert len(set(ids)) == 2
    finally:
        daemon.kill()


async def test_truncation_applies_to_unix_datagrams_and_json_lines_too(tmp_path: Path) -> None:
    path = tmp_path / "log.sock"
    cfg = local_config(
        ListenerConfig(name="unix", transport="unix", bind=str(path)),
        ListenerConfig(name="json", transport="tcp", format="json", bind="127.0.0.1:0"),
        parsing=ParsingConfig(max_message_bytes=64),
    )
    async with running_daemon(cfg) as d:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"<14>1 - h a - - - unix " + b"u" * 200, str(path))
        line = json.dumps({"msg": "json " + "j" * 200}).encode()
        await send_tcp(listener_addr(d, "json"), line + b'\n{"msg": "next"}\n')
        await wait_for(lambda: count_is(d, "/logs", 3))
        logs = (await get_json(d, "/logs"))["logs"]
        cut = [r for r in logs if r["fields"].get("truncated")]
        assert len(cut) == 2, logs
        assert {r["message"] for r in logs} >= {"next"}
        assert await metric(d, "collector_messages_truncated_total") == 2
