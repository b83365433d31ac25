"""TLS stage: syslog over TLS (RFC 5425) and HTTPS, with the stdlib ssl module on asyncio.

A `TlsServer` holds the SSLContext made from PEM files and makes it again on
reload; a file that fails to load keeps the old context. Connections are
accepted as plain TCP and upgraded with `loop.start_tls`, so a handshake that
fails, stalls or never starts is counted, logged rate-limited and closed,
while the listener (or the HTTP port) carries on. No parsing here.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from collector.config import TlsConfig

log = logging.getLogger("collector.tls")

# Handshakes in progress per server at most: past it new connections are
# closed at once and counted (`reason="limit"`), so a flood of slow clients
# cannot hold more than this many sockets and tasks.
MAX_PENDING_HANDSHAKES = 1024
LOG_EVERY = 10.0  # seconds between two handshake warnings from one server

ProtocolFactory = Callable[[], asyncio.BaseProtocol]


def _no_password() -> str:
    """An encrypted key is an error, not a prompt on the daemon's terminal."""
    raise ssl.SSLError("the private key is encrypted; give an unencrypted PEM key")


def server_context(cert: str, key: str, client_ca: str | None) -> ssl.SSLContext:
    """A server-side context: TLS 1.2 or newer, the certificate chain and key
    from PEM files and, with `client_ca`, client certificates required and
    verified against it. ssl.SSLError or OSError when a file does not load."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key, password=_no_password)
    if client_ca is not None:
        ctx.load_verify_locations(cafile=client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


@dataclass(slots=True)
class TlsStats:
    """Plain-int counters, folded into Prometheus at scrape time.

    handshakes: completed; failures: by reason (`protocol`: not TLS, a bad or
    missing client certificate, no common version; `timeout`; `closed`: the
    peer went away mid-handshake; `limit`: too many handshakes at once);
    pending: in progress now."""

    handshakes: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    pending: int = 0


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return "protocol"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError) or "timed out" in str(exc):
        return "timeout"
    return "closed"


class TlsServer:
    """The live TLS settings of one listener (or the HTTP port): its context,
    counters, and the handshakes in flight."""

    def __init__(self, name: str, cfg: TlsConfig | None) -> None:
        """`cfg` None: plaintext (a later `configure` may turn TLS on).
        ssl.SSLError or OSError when the files do not load."""
        self.name = name
        self.cfg = cfg
        self.context = None if cfg is None else server_context(cfg.cert, cfg.key, cfg.client_ca)
        self.stats = TlsStats()
        self._tasks: set[asyncio.Task[None]] = set()
        self._handshaking: set[asyncio.Transport] = set()
        self._last_warning = -LOG_EVERY
        self._suppressed = 0

    def configure(self, cfg: TlsConfig | None) -> bool:
        """Reload: read the PEM files again (certificates rotate without a
        restart). A file that does not load is logged and the old context
        stays; returns whether the new one is in use. New connections get the
        new context; open ones keep theirs."""
        if cfg is None:
            self.cfg, self.context = None, None
            return True
        try:
            context = server_context(cfg.cert, cfg.key, cfg.client_ca)
        except (ssl.SSLError, OSError) as e:
            log.error(
                "%s: cannot load TLS certificate %s / key %s: %s; keeping the previous one",
                self.name,
                cfg.cert,
                cfg.key,
                e,
            )
            return False
        self.cfg, self.context = cfg, context
        return True

    def wrap(self, factory: ProtocolFactory) -> ProtocolFactory:
        """A protocol factory for the server socket: plain `factory()` while
        TLS is off, else a handshake that hands over to `factory()` once done."""

        def make() -> asyncio.BaseProtocol:
            ctx, cfg = self.context, self.cfg
            if ctx is None or cfg is None:
                return factory()
            return _Handshake(self, ctx, cfg.handshake_timeout, factory)

        return make

    def close(self) -> None:
        """Abort every handshake still in progress (shutdown, listener removed)."""
        for transport in list(self._handshaking):
            transport.abort()
        for task in list(self._tasks):
            task.cancel()

    def failed(self, peer: object, reason: str, exc: BaseException | None) -> None:
        """Count a failed handshake; warn at most every LOG_EVERY seconds."""
        failures = self.stats.failures
        failures[reason] = failures.get(reason, 0) + 1
        now = time.monotonic()
        if now - self._last_warning < LOG_EVERY:
            self._suppressed += 1
            return
        self._last_warning = now
        skipped, self._suppressed = self._suppressed, 0
        suffix = f" ({skipped} more since the last warning)" if skipped else ""
        what = str(exc)[:200] if exc is not None else "too many handshakes in progress"
        log.warning(
            "%s: TLS handshake from %s failed (%s): %s%s", self.name, peer, reason, what, suffix
        )


class _Handshake(asyncio.Protocol):
    """Stands in for the connection's protocol until its TLS handshake is done."""

    def __init__(
        self, server: TlsServer, ctx: ssl.SSLContext, timeout: float, factory: ProtocolFactory
    ) -> None:
        self.server = server
        self.ctx = ctx
        self.timeout = timeout
        self.factory = factory

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        server = self.server
        # uvloop's transports are not asyncio.Transport subclasses; cast, don't assert.
        tr = cast(asyncio.Transport, transport)
        peer = _peer(tr)
        if server.stats.pending >= MAX_PENDING_HANDSHAKES:
            server.failed(peer, "limit", None)
            tr.abort()
            return
        # Nothing is read until start_tls owns the transport: the ClientHello
        # must reach the TLS layer, not this stand-in.
        tr.pause_reading()
        server.stats.pending += 1
        server._handshaking.add(tr)
        task = asyncio.get_running_loop().create_task(self._upgrade(tr, peer))
        server._tasks.add(task)
        task.add_done_callback(server._tasks.discard)

    async def _upgrade(self, transport: asyncio.Transport, peer: object) -> None:
        server = self.server
        relay = _Relay()
        try:
            tls = await asyncio.get_running_loop().start_tls(
                transport,
                relay,
                self.ctx,
                server_side=True,
                ssl_handshake_timeout=self.timeout,
            )
        except asyncio.CancelledError:
            transport.abort()
            raise
        except Exception as e:  # whatever the peer did, it is this connection's end only
            server.failed(peer, _reason(e), e)
            transport.abort()
            return
        finally:
            server.stats.pending -= 1
            server._handshaking.discard(transport)
        if tls is None:  # the peer closed as the handshake ended
            server.failed(peer, "closed", None)
            return
        server.stats.handshakes += 1
        relay.hand_over(self.factory(), tls)


def _peer(transport: asyncio.BaseTransport) -> object:
    peer = transport.get_extra_info("peername")
    return peer[0] if isinstance(peer, tuple) else peer


class _Relay(asyncio.Protocol):
    """Keeps what arrives between the handshake's end and the hand-over
    (a TLS 1.3 client sends its first records with its Finished message)."""

    def __init__(self) -> None:
        self.early: list[bytes] = []
        self.eof = False
        self.lost = False
        self.exc: Exception | None = None

    def data_received(self, data: bytes) -> None:
        self.early.append(data)

    def eof_received(self) -> bool:
        self.eof = True
        return True  # the real protocol decides, once it has the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost, self.exc = True, exc

    def hand_over(self, app: asyncio.BaseProtocol, transport: asyncio.BaseTransport) -> None:
        """From now on `app` is the connection's protocol, as if it had been
        there from the start."""
        transport.set_protocol(app)
        app.connection_made(transport)
        assert isinstance(app, asyncio.Protocol)
        for data in self.early:
            app.data_received(data)
        self.early = []
        if self.eof and not app.eof_received():
            transport.close()
        if self.lost:
            app.connection_lost(self.exc)
