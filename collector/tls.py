"""TLS stage: syslog over TLS (RFC 5425) and HTTPS, with the stdlib ssl module on asyncio.

A `TlsServer` holds the SSLContext made from PEM files and makes it again on
reload; a file that fails to load keeps the old context. Each connection's
TLS layer is asyncio's, watched: a handshake that fails, stalls past its
timeout or never starts is counted, logged rate-limited and closed, while the
listener (or the HTTP port) carries on. No parsing here.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from asyncio import sslproto
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
    # asyncio and uvloop abort a slow handshake with ConnectionAbortedError
    # ("SSL handshake is taking longer than N seconds").
    text = str(exc)
    if isinstance(exc, TimeoutError) or "taking longer" in text or "timed out" in text:
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
        TLS is off, else a TLS layer that hands `factory()` the decrypted
        stream once its handshake is done."""

        def make() -> asyncio.BaseProtocol:
            ctx, cfg = self.context, self.cfg
            if ctx is None or cfg is None:
                return factory()
            return _TlsLayer(self, ctx, cfg.handshake_timeout, factory())

        return make

    def close(self) -> None:
        """Abort every handshake still in progress (shutdown, listener removed)."""
        for transport in list(self._handshaking):
            transport.abort()

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


class _TlsLayer(sslproto.SSLProtocol):
    """asyncio's own TLS layer (what `create_server(ssl=...)` uses, and it runs
    on uvloop too), watched: its handshake's outcome is counted, and too many
    handshakes at once are refused.

    A connection gets this as its protocol from the start, so no byte of the
    handshake can go astray; the app protocol's `connection_made` comes once
    the handshake is done, with a transport that reads and writes plaintext."""

    def __init__(
        self,
        server: TlsServer,
        ctx: ssl.SSLContext,
        timeout: float,
        app: asyncio.BaseProtocol,
    ) -> None:
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        waiter.add_done_callback(self._handshake_done)
        super().__init__(
            loop,
            app,
            ctx,
            waiter,
            server_side=True,
            call_connection_made=True,
            ssl_handshake_timeout=timeout,  # type: ignore[arg-type]  # a float works; the stub says int
        )
        self._server = server
        self._raw: asyncio.Transport | None = None
        self._peer: object = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        server = self._server
        # uvloop's transports are not asyncio.Transport subclasses; cast, don't assert.
        raw = cast(asyncio.Transport, transport)
        self._peer = _peer(raw)
        if server.stats.pending >= MAX_PENDING_HANDSHAKES:
            server.failed(self._peer, "limit", None)
            raw.abort()
            return
        server.stats.pending += 1
        server._handshaking.add(raw)
        self._raw = raw
        super().connection_made(transport)

    def _handshake_done(self, waiter: asyncio.Future[None]) -> None:
        server = self._server
        if self._raw is None:
            return  # refused at connection_made, already counted
        server.stats.pending -= 1
        server._handshaking.discard(self._raw)
        exc = None if waiter.cancelled() else waiter.exception()
        if waiter.cancelled() or exc is not None:
            server.failed(self._peer, "closed" if exc is None else _reason(exc), exc)
        else:
            server.stats.handshakes += 1


def _peer(transport: asyncio.BaseTransport) -> object:
    peer = transport.get_extra_info("peername")
    return peer[0] if isinstance(peer, tuple) else peer
