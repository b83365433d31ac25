"""docs/fleet.md's configs are valid as written, and its first and third
topologies run as written (ports and paths moved to free ones for the test)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import yaml

from collector.config import config_from_dict
from collector.running import Daemon
from tests.brokers import Broker, free_port, needs_redis
from tests.support import get_json, listener_addr, running_daemon, wait_for

DOC = Path(__file__).resolve().parent.parent / "docs" / "fleet.md"


def blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_every_config_in_the_fleet_guide_is_valid() -> None:
    found = blocks()
    assert len(found) >= 5
    for text in found:
        data = yaml.safe_load(text)
        if "listeners" in data and isinstance(data["listeners"], list):
            config_from_dict(data)  # raises ConfigError naming the key if not
        else:
            config_from_dict({"listeners": [], **data})


def local(text: str, broker: Broker | None, tmp: Path) -> Any:
    """The doc's config with its addresses moved to test ones."""
    if broker is not None:
        text = text.replace("redis://127.0.0.1:6379/0", broker.url)
    text = re.sub(r"0\.0\.0\.0:5514", "127.0.0.1:0", text)
    text = re.sub(r"127\.0\.0\.1:95\d4", "127.0.0.1:0", text)
    text = text.replace("/var/lib/collector/", f"{tmp}/")
    return config_from_dict(yaml.safe_load(text))


async def send(daemon: Daemon, name: str, line: str) -> None:
    _, writer = await asyncio.open_connection(*listener_addr(daemon, name))
    writer.write(f"<13>1 - doc-host app - - - {line}\n".encode())
    await writer.drain()
    writer.close()
    await writer.wait_closed()


@needs_redis
async def test_the_guide_s_edge_and_replica_run_as_written(
    redis_server: Broker, tmp_path: Path
) -> None:
    edge_text, replica_text = blocks()[0], blocks()[1]
    edge_cfg = local(edge_text, redis_server, tmp_path)
    replica_cfg = local(replica_text, redis_server, tmp_path)
    async with running_daemon(edge_cfg) as edge, running_daemon(replica_cfg) as replica:
        await send(edge, "syslog-tcp", "hello from the edge")
        await wait_for(lambda: len(replica.store) == 1, timeout=20)
        got = (await get_json(replica, "/logs?q=hello"))["logs"]
        at_edge = (await get_json(edge, "/logs?q=hello"))["logs"]
    assert got == at_edge
    assert got[0]["message"] == "hello from the edge"


async def test_the_guide_s_relay_runs_as_written(tmp_path: Path) -> None:
    relay_text = next(b for b in blocks() if "type: syslog" in b)
    siem_port = free_port()
    text = relay_text.replace("tcp://127.0.0.1:6514", f"tcp://127.0.0.1:{siem_port}")
    relay_cfg = local(text, None, tmp_path)
    got: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(65536):
            got.append(chunk)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", siem_port)
    try:
        async with running_daemon(relay_cfg) as relay:
            host, port = listener_addr(relay, "syslog-udp")
            transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                asyncio.DatagramProtocol, remote_addr=(host, port)
            )
            transport.sendto(b"<13>1 - doc-host app - - - relayed line")
            transport.close()
            await wait_for(lambda: b"relayed line" in b"".join(got), timeout=20)
    finally:
        server.close()
        await server.wait_closed()
    frame = b"".join(got)
    length, _, rest = frame.partition(b" ")
    assert int(length) == len(rest)  # octet-counted (RFC 6587)
    assert rest.startswith(b"<13>1 ")
    assert b" doc-host app - - - relayed line" in rest
