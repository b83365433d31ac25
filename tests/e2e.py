"""What the end-to-end modules (tests/test_e2e_*.py) share: the record's keys,
time formatting, the CLI as a subprocess, raw senders, and reading back."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import socket
import subprocess
import sys
from typing import Any

import pytest

from tests.faults_support import REPO
from tests.support import (
    get_json,
    http_request,
    wait_for,
)

UTC = dt.timezone.utc
RECORD_KEYS = {
    "id", "timestamp", "received_at", "host", "service", "procid", "msgid",
    "facility", "level", "message", "structured_data", "fields", "format",
}  # fmt: skip


def now() -> dt.datetime:
    return dt.datetime.now(UTC)


def z(t: dt.datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collector", *args],
        cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


async def send_udp(addr: tuple[str, int], payload: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(payload, addr)


async def send_tcp(addr: tuple[str, int], payload: bytes) -> None:
    _, writer = await asyncio.open_connection(addr[0], addr[1])
    writer.write(payload)
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def find(d: Any, token: str, n: int = 1, extra: str = "") -> list[dict[str, Any]]:
    async def found() -> list[dict[str, Any]] | None:
        logs: list[dict[str, Any]] = (await get_json(d, f"/logs?q={token}&start=0{extra}"))["logs"]
        return logs if len(logs) >= n else None

    return list(await wait_for(found))


async def metric(d: Any, prefix: str) -> float:
    answer = await http_request(d.http_address, "GET", "/metrics")
    total = 0.0
    for line in answer.body.decode().splitlines():
        if line.startswith(prefix):
            total += float(line.rsplit(" ", 1)[1])
    return total


def ios(t: dt.datetime) -> bytes:
    return f"<189>123: *{t:%b} {t.day:2d} {t:%H:%M:%S}.123: %SYS-5-CONFIG_I: Configured from console".encode()


def b3164(t: dt.datetime) -> str:
    return f"{t:%b} {t.day:2d} {t:%H:%M:%S}"


async def first(d: Any) -> dict[str, Any] | None:
    logs = (await get_json(d, "/logs?start=0"))["logs"]
    return logs[0] if logs else None


async def count(d: Any, target: str) -> int:
    return int((await get_json(d, target))["count"])


async def count_is(d: Any, target: str, n: int) -> bool:
    return await count(d, target) == n


async def metric_is(d: Any, prefix: str, value: float) -> bool:
    return await metric(d, prefix) == value


def need(tool: str) -> str:
    path = shutil.which(tool) or (
        f"/usr/sbin/{tool}" if os.path.exists(f"/usr/sbin/{tool}") else None
    )
    if path is None:
        pytest.skip(f"{tool} is not installed here")
    return path
