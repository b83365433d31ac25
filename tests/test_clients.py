"""Real clients against the daemon: util-linux `logger` over UDP, TCP (LF and
octet counting) and a unix socket; Python's SysLogHandler over UDP, TCP (NUL
framing) and unix; an asyncio-dgram sender. Answers read back over HTTP."""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import shutil
import socket
import uuid
from pathlib import Path
from typing import Any

import asyncio_dgram
import pytest

from collector.config import ListenerConfig
from tests.support import get_json, listener_addr, local_config, running_daemon, wait_for

LOGGER = shutil.which("logger")


def _need_logger() -> str:
    if LOGGER is None:
        pytest.skip("util-linux `logger` is not installed (apt-get install bsdutils)")
    return LOGGER


async def _find(d: Any, token: str) -> dict[str, Any]:
    """The one stored record whose message contains `token`."""

    async def found() -> list[dict[str, Any]] | None:
        logs = (await get_json(d, "/logs?start=0&limit=10000"))["logs"]
        hits = [r for r in logs if token in r["message"]]
        return hits or None

    hits = await wait_for(found)
    assert len(hits) == 1, hits
    return dict(hits[0])


async def _logger(*args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        _need_logger(), *args, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0, err


def _unix_config(path: Path) -> Any:
    return local_config(ListenerConfig(name="local", transport="unix", bind=str(path)))


# -- util-linux logger ------------------------------------------------------------


async def test_logger_over_udp_is_stored_with_its_tag() -> None:
    async with running_daemon() as d:
        host, port = listener_addr(d, "udp")
        token = uuid.uuid4().hex
        await _logger("-d", "-n", host, "-P", str(port), "-t", "udptag", f"udp {token}")
        rec = await _find(d, token)
        assert rec["service"] == "udptag"
        assert rec["format"] == "rfc5424"


@pytest.mark.parametrize("framing", [[], ["--octet-count"]], ids=["LF", "octet-count"])
async def test_logger_over_tcp_is_stored_once_per_message(framing: list[str]) -> None:
    async with running_daemon() as d:
        host, port = listener_addr(d, "tcp")
        tokens = [uuid.uuid4().hex for _ in range(3)]
        for token in tokens:
            await _logger("-T", *framing, "-n", host, "-P", str(port), "-t", "tcptag", f"m {token}")
        for token in tokens:
            rec = await _find(d, token)
            assert rec["service"] == "tcptag"
            assert not rec["message"].endswith(("\n", "\r", "\x00"))
        stats = d.listeners["tcp"].stats
        assert stats.received == 3
        assert stats.dropped == {}


async def test_logger_over_a_unix_socket_is_stored(tmp_path: Path) -> None:
    path = tmp_path / "dev-log"
    async with running_daemon(_unix_config(path)) as d:
        token = uuid.uuid4().hex
        await _logger("-u", str(path), "--socket-errors=on", "-t", "unixtag", f"local {token}")
        rec = await _find(d, token)
        assert rec["format"] == "rfc3164"
        assert d.listeners["local"].stats.received == 1


async def test_logger_reports_an_error_when_no_daemon_listens_on_the_unix_path(
    tmp_path: Path,
) -> None:
    path = tmp_path / "dev-log"
    async with running_daemon(_unix_config(path)):
        pass  # started and stopped: the socket file is gone
    proc = await asyncio.create_subprocess_exec(
        _need_logger(), "-u", str(path), "--socket-errors=on", "nobody home",
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode != 0


# -- Python's SysLogHandler -------------------------------------------------------


def _emit_with_handler(handler: logging.Handler, text: str) -> None:
    logger = logging.getLogger(f"client.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.addHandler(handler)
    handler.setFormatter(logging.Formatter("pyapp: %(message)s"))
    try:
        logger.warning(text)
    finally:
        logger.removeHandler(handler)
        handler.close()


@pytest.mark.parametrize("socktype", [socket.SOCK_DGRAM, socket.SOCK_STREAM], ids=["udp", "tcp"])
async def test_sysloghandler_over_udp_and_tcp_nul_framing_is_stored(socktype: int) -> None:
    async with running_daemon() as d:
        name = "udp" if socktype == socket.SOCK_DGRAM else "tcp"
        token = uuid.uuid4().hex
        handler = logging.handlers.SysLogHandler(listener_addr(d, name), socktype=socktype)
        await asyncio.to_thread(_emit_with_handler, handler, f"handler {token}")
        rec = await _find(d, token)
        assert rec["level"] == "warning"
        assert rec["facility"] == "user"
        assert rec["message"].endswith(token)  # the NUL terminator is stripped


def _log_exception_with_handler(handler: logging.Handler, name: str) -> None:
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.addHandler(handler)
    handler.setFormatter(logging.Formatter("%(name)s[%(process)d]: %(message)s"))
    try:
        try:
            {}["missing"]
        except KeyError:
            logger.exception("request failed")
    finally:
        logger.removeHandler(handler)
        handler.close()


@pytest.mark.parametrize("socktype", [socket.SOCK_DGRAM, socket.SOCK_STREAM], ids=["udp", "tcp"])
async def test_a_traceback_from_sysloghandler_is_one_error_record(socktype: int) -> None:
    async with running_daemon() as d:
        name = "udp" if socktype == socket.SOCK_DGRAM else "tcp"
        app = f"app{uuid.uuid4().hex[:8]}"
        handler = logging.handlers.SysLogHandler(listener_addr(d, name), socktype=socktype)
        await asyncio.to_thread(_log_exception_with_handler, handler, app)
        rec = await _find(d, "request failed")
        assert rec["service"] == app
        assert rec["level"] == "err"
        assert rec["message"].startswith("request failed\nTraceback (most recent call last):\n")
        assert rec["message"].endswith("KeyError: 'missing'")
        await wait_for(lambda: d.listeners[name].stats.received >= 1)
        assert (await get_json(d, "/health"))["records"] == 1


async def test_sysloghandler_over_a_unix_socket_is_stored_with_this_hosts_name(
    tmp_path: Path,
) -> None:
    path = tmp_path / "dev-log"
    async with running_daemon(_unix_config(path)) as d:
        token = uuid.uuid4().hex
        handler = logging.handlers.SysLogHandler(str(path))
        await asyncio.to_thread(_emit_with_handler, handler, f"local handler {token}")
        rec = await _find(d, token)
        assert rec["level"] == "warning"
        assert rec["host"] == socket.gethostname()


# -- asyncio-dgram ----------------------------------------------------------------


async def test_a_thousand_datagrams_from_asyncio_dgram_all_arrive() -> None:
    async with running_daemon() as d:
        host, port = listener_addr(d, "udp")
        stream = await asyncio_dgram.connect((host, port))
        try:
            for i in range(1000):
                await stream.send(b"<13>1 - h app - - - dgram %d" % i)
                if i % 100 == 99:
                    await asyncio.sleep(0)  # let the daemon (same loop) read
        finally:
            stream.close()
        stats = d.listeners["udp"].stats
        await wait_for(lambda: stats.received == 1000)
        assert (await get_json(d, "/health"))["records"] == 1000
