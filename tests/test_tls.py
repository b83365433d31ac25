"""Syslog over TLS (RFC 5425) and HTTPS: Python's ssl clients and Debian's
rsyslog (ossl and gtls stream drivers) against real sockets on 127.0.0.1;
certificates made by the openssl tool. Bad input: plaintext on the TLS port, a
handshake that stops half way, a burst of failing handshakes, bad PEM files."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import ssl
import time
import urllib.error
import urllib.request
import uuid
import warnings
from pathlib import Path

import pytest
import yaml

from collector.config import ConfigError, HttpConfig, ListenerConfig, TlsConfig, config_from_dict
from collector.reload import reload_from_file
from collector.running import Daemon
from tests.support import get_json, listener_addr, local_config, running_daemon, wait_for
from tests.tls_support import Certs, make_certs, signed


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def _tls_config(certs: Certs, **tls: object) -> TlsConfig:
    return TlsConfig(cert=str(certs.cert), key=str(certs.key), **tls)  # type: ignore[arg-type]


def _tls_listener(certs: Certs, **tls: object) -> ListenerConfig:
    return ListenerConfig(
        name="tls", transport="tcp", bind="127.0.0.1:0", tls=_tls_config(certs, **tls)
    )


def _frame(msg: str) -> bytes:
    data = msg.encode()
    return b"%d %s" % (len(data), data)  # RFC 5425 section 4.3: octet-counted


async def _send_tls(
    d: Daemon, ctx: ssl.SSLContext, *messages: str, name: str = "tls"
) -> tuple[int, ...]:
    """Send octet-counted frames over TLS; the server certificate's serial."""
    host, port = listener_addr(d, name)
    _, writer = await asyncio.open_connection(host, port, ssl=ctx, server_hostname="localhost")
    try:
        writer.write(b"".join(_frame(m) for m in messages))
        await writer.drain()
        sslobj = writer.get_extra_info("ssl_object")
        der = sslobj.getpeercert(binary_form=True)
        return (hash(der),)
    finally:
        writer.close()
        await writer.wait_closed()


async def _messages(d: Daemon, q: str) -> list[str]:
    logs = (await get_json(d, f"/logs?q={q}&limit=1000"))["logs"]
    return [str(r["message"]) for r in logs]


def _failures(d: Daemon, name: str = "tls") -> dict[str, int]:
    tls = d.listeners[name].tls if name != "http" else d.http_tls
    assert tls is not None
    return dict(tls.stats.failures)


async def test_a_python_tls_client_sends_octet_counted_syslog_that_is_stored(certs: Certs) -> None:
    async with running_daemon(local_config(_tls_listener(certs))) as d:
        token = uuid.uuid4().hex
        await _send_tls(d, certs.client_context(), f"<34>1 - web-1 sshd - - - over tls {token}")
        recs = await wait_for(lambda: _messages(d, token))
        assert recs == [f"over tls {token}"]
        tls = d.listeners["tls"].tls
        assert tls is not None
        assert tls.stats.handshakes == 1
        assert tls.stats.failures == {}


async def test_tls_1_1_is_refused_and_counted(certs: Certs) -> None:
    async with running_daemon(local_config(_tls_listener(certs))) as d:
        ctx = certs.client_context()
        ctx.set_ciphers("DEFAULT@SECLEVEL=0")  # let this client offer TLS 1.1 at all
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await _send_tls(d, ctx, "<14>1 - h a - - - old")
        await wait_for(lambda: _failures(d).get("protocol") == 1)


async def test_client_ca_requires_a_client_certificate_signed_by_it(certs: Certs) -> None:
    cfg = local_config(_tls_listener(certs, client_ca=str(certs.ca)))
    async with running_daemon(cfg) as d:
        token = uuid.uuid4().hex
        # Without a certificate: TLS 1.3 fails the handshake after the client
        # thinks it is done, so the refusal shows as a closed stream or an error.
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await _send_tls(d, certs.client_context(), f"<14>1 - h a - - - anonymous {token}")
        await wait_for(lambda: _failures(d).get("protocol") == 1)
        await _send_tls(d, certs.client_context(with_cert=True), f"<14>1 - h a - - - {token}")
        assert await wait_for(lambda: _messages(d, token)) == [token]


async def test_plaintext_on_the_tls_port_is_counted_and_the_listener_carries_on(
    certs: Certs,
) -> None:
    async with running_daemon(local_config(_tls_listener(certs))) as d:
        host, port = listener_addr(d, "tls")
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"<14>1 - h a - - - plaintext where TLS was expected\n")
        await writer.drain()
        await asyncio.wait_for(reader.read(), 5)  # the server closes it (after an alert)
        writer.close()
        await wait_for(lambda: _failures(d).get("protocol") == 1)
        token = uuid.uuid4().hex
        await _send_tls(d, certs.client_context(), f"<14>1 - h a - - - {token}")
        assert await wait_for(lambda: _messages(d, token)) == [token]
        assert (await get_json(d, "/logs?q=plaintext"))["logs"] == []


async def test_a_handshake_that_stops_half_way_is_closed_after_the_timeout(certs: Certs) -> None:
    cfg = local_config(_tls_listener(certs, handshake_timeout=0.3))
    async with running_daemon(cfg) as d:
        host, port = listener_addr(d, "tls")
        # The first bytes of a TLS record header (handshake, TLS 1.0), then silence.
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"\x16\x03\x01\x00")
        await writer.drain()
        silent_r, silent_w = await asyncio.open_connection(host, port)  # says nothing at all
        t0 = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # the server closed it
        assert await asyncio.wait_for(silent_r.read(), 5) == b""
        assert time.monotonic() - t0 < 3
        writer.close()
        silent_w.close()
        await wait_for(lambda: _failures(d).get("timeout") == 2)
        tls = d.listeners["tls"].tls
        assert tls is not None
        await wait_for(lambda: tls.stats.pending == 0)


async def test_a_client_that_hangs_up_mid_handshake_is_counted(certs: Certs) -> None:
    async with running_daemon(local_config(_tls_listener(certs))) as d:
        host, port = listener_addr(d, "tls")
        _, writer = await asyncio.open_connection(host, port)
        writer.write(b"\x16\x03\x01\x00")
        await writer.drain()
        writer.transport.abort()
        await wait_for(lambda: sum(_failures(d).values()) == 1)


async def test_a_thousand_failing_handshakes_are_counted_and_tls_clients_still_get_through(
    certs: Certs,
) -> None:
    n = 1000
    async with running_daemon(local_config(_tls_listener(certs))) as d:
        host, port = listener_addr(d, "tls")

        def garbage(k: int) -> None:
            for _ in range(k):
                with socket.create_connection((host, port), timeout=5) as s:
                    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                    s.recv(100)  # until the server closes it

        t0 = time.monotonic()
        await asyncio.gather(*(asyncio.to_thread(garbage, n // 10) for _ in range(10)))
        await wait_for(lambda: _failures(d).get("protocol") == n, timeout=30)
        rate = n / (time.monotonic() - t0)
        token = uuid.uuid4().hex
        await _send_tls(d, certs.client_context(), f"<14>1 - h a - - - {token}")
        assert await wait_for(lambda: _messages(d, token)) == [token]
        tls = d.listeners["tls"].tls
        assert tls is not None
        assert tls.stats.pending == 0
        print(f"{rate:.0f} failed handshakes per second")


def _config_dict(certs: Certs, **tls: object) -> dict[str, object]:
    return {
        "listeners": [
            {
                "name": "tls",
                "transport": "tcp",
                "bind": "127.0.0.1:0",
                "tls": {"cert": str(certs.cert), "key": str(certs.key), **tls},
            }
        ],
        "http": {"bind": "127.0.0.1:0"},
    }


def test_a_missing_or_garbage_certificate_is_a_config_error_naming_the_key(
    certs: Certs, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict(_config_dict(certs, cert=str(tmp_path / "nope.pem")))
    assert err.value.problems[0].startswith("listeners[0].tls.cert: cannot read ")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n")
    with pytest.raises(ConfigError) as err:
        config_from_dict(_config_dict(certs, cert=str(garbage)))
    assert err.value.problems[0].startswith("listeners[0].tls.cert: cannot load")
    with pytest.raises(ConfigError) as err:
        config_from_dict(_config_dict(certs, client_ca=str(garbage)))
    assert err.value.problems[0].startswith("listeners[0].tls.client_ca: cannot load")
    with pytest.raises(ConfigError) as err:
        config_from_dict({"http": {"tls": {"cert": str(certs.cert), "key": "/nonexistent/k"}}})
    assert err.value.problems == [
        "http.tls.key: cannot read /nonexistent/k: No such file or directory"
    ]
    udp = {"name": "u", "transport": "udp", "bind": "127.0.0.1:0", "tls": _config_dict(certs)}
    with pytest.raises(ConfigError):
        config_from_dict({"listeners": [udp]})


async def test_sighup_rereads_rotated_certificates_and_a_garbage_one_keeps_the_old(
    certs: Certs, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    live = tmp_path / "live"
    live.mkdir()
    for f in ("server.pem", "server.key"):
        shutil.copy(certs.dir / f, live / f)
    cfg_path = tmp_path / "collector.yaml"
    cfg = _config_dict(certs, cert=str(live / "server.pem"))
    cfg["listeners"][0]["tls"]["key"] = str(live / "server.key")  # type: ignore[index]
    cfg_path.write_text(yaml.safe_dump(cfg))
    config = config_from_dict(cfg)
    async with running_daemon(config) as d:
        d.config_path = str(cfg_path)
        first = await _send_tls(d, certs.client_context(), "<14>1 - h a - - - one")
        # Rotate: a new certificate from the same CA at the same paths.
        signed(certs.dir, "ca", "rotated", "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        shutil.copy(certs.dir / "rotated.pem", live / "server.pem")
        shutil.copy(certs.dir / "rotated.key", live / "server.key")
        assert await reload_from_file(d)
        second = await _send_tls(d, certs.client_context(), "<14>1 - h a - - - two")
        assert second != first
        # Garbage at reload: logged, the rotated certificate stays in use.
        (live / "server.pem").write_text("garbage")
        assert not await reload_from_file(d)
        assert "listeners[0].tls.cert: cannot load" in caplog.text
        assert await _send_tls(d, certs.client_context(), "<14>1 - h a - - - three") == second
        await wait_for(lambda: _messages(d, "three"))


def _https_get(url: str, ctx: ssl.SSLContext, token: str | None = None) -> tuple[int, object]:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read())


async def test_https_serves_the_api_and_counts_a_plaintext_request(certs: Certs) -> None:
    cfg = local_config(http=HttpConfig(bind="127.0.0.1:0", tls=_tls_config(certs)))
    async with running_daemon(cfg) as d:
        host, port = d.http_address
        status, body = await asyncio.to_thread(
            _https_get, f"https://localhost:{port}/health", certs.client_context()
        )
        assert status == 200
        assert isinstance(body, dict)
        assert body["status"] == "ok"
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            await asyncio.to_thread(urllib.request.urlopen, f"http://{host}:{port}/health", None, 5)
        await wait_for(lambda: _failures(d, "http").get("protocol") == 1)
        metrics = await asyncio.to_thread(
            lambda: urllib.request.urlopen(
                f"https://localhost:{port}/metrics", context=certs.client_context(), timeout=10
            ).read()
        )
        assert b'collector_tls_handshake_failures_total{listener="http",reason="protocol"} 1.0' in (
            metrics
        )


# -- rsyslog with its TLS stream drivers -------------------------------------------------

RSYSLOG_TLS_CONF = """
global(workDirectory="{work}"
       DefaultNetstreamDriverCAFile="{ca}")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{inport}" ruleset="fwd")
ruleset(name="fwd") {{
  action(type="omfwd" target="127.0.0.1" port="{port}" protocol="tcp"
         StreamDriver="{driver}" StreamDriverMode="1"
         StreamDriverAuthMode="x509/name" StreamDriverPermittedPeers="localhost"
         TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")
}}
"""


def _rsyslog_driver_present(driver: str) -> bool:
    for d in ("/usr/lib/x86_64-linux-gnu/rsyslog", "/usr/lib/aarch64-linux-gnu/rsyslog"):
        if os.path.exists(f"{d}/lmnsd_{driver}.so"):
            return True
    return False


@pytest.mark.parametrize("driver", ["ossl", "gtls"])
async def test_rsyslog_forwards_over_tls_with_its_stream_driver(
    certs: Certs, tmp_path: Path, driver: str
) -> None:
    rsyslogd = shutil.which("rsyslogd") or shutil.which("rsyslogd", path="/usr/sbin")
    if rsyslogd is None:
        pytest.skip("rsyslog is not installed")
    if not _rsyslog_driver_present(driver):
        pytest.skip(f"rsyslog-{'openssl' if driver == 'ossl' else 'gnutls'} is not installed")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        inport = probe.getsockname()[1]
    async with running_daemon(local_config(_tls_listener(certs))) as d:
        conf = tmp_path / "rsyslog.conf"
        conf.write_text(
            RSYSLOG_TLS_CONF.format(
                work=tmp_path, ca=certs.ca, inport=inport,
                port=listener_addr(d, "tls")[1], driver=driver,
            )
        )  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            rsyslogd, "-n", "-f", str(conf), "-i", str(tmp_path / "rsyslog.pid"),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        token = uuid.uuid4().hex
        try:

            async def forwarded() -> list[str]:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # until rsyslog is up
                    s.sendto(f"<35>1 - web-7 sshd 42 - - via {driver} {token}".encode(),
                             ("127.0.0.1", inport))  # fmt: skip
                return await _messages(d, token)

            recs = await wait_for(forwarded, timeout=20, interval=0.2)
        finally:
            proc.terminate()
            _, err = await asyncio.wait_for(proc.communicate(), 10)
        assert recs[0] == f"via {driver} {token}", err
        logs = (await get_json(d, f"/logs?q={token}"))["logs"]
        assert (logs[0]["host"], logs[0]["service"], logs[0]["format"]) == (
            "web-7",
            "sshd",
            "rfc5424",
        )
        tls = d.listeners["tls"].tls
        assert tls is not None
        assert tls.stats.handshakes >= 1


def test_on_uvloop_a_tls_client_plaintext_and_a_silent_peer_are_each_handled(
    certs: Certs,
) -> None:
    """The daemon runs on uvloop: the same TLS layer, on its transports."""
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> None:
        cfg = local_config(_tls_listener(certs, handshake_timeout=0.3))
        async with running_daemon(cfg) as d:
            host, port = listener_addr(d, "tls")
            silent_r, silent_w = await asyncio.open_connection(host, port)
            _, plain_w = await asyncio.open_connection(host, port)
            plain_w.write(b"<14>1 - h a - - - plaintext\n")
            token = uuid.uuid4().hex
            await _send_tls(d, certs.client_context(), f"<14>1 - h a - - - {token}")
            assert await wait_for(lambda: _messages(d, token)) == [token]
            assert await asyncio.wait_for(silent_r.read(), 5) == b""
            await wait_for(lambda: _failures(d) == {"protocol": 1, "timeout": 1})
            silent_w.close()
            plain_w.close()

    uvloop.run(scenario())


async def test_past_the_pending_handshake_bound_new_connections_are_closed_and_counted(
    certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("collector.tls.MAX_PENDING_HANDSHAKES", 2)
    async with running_daemon(local_config(_tls_listener(certs))) as d:
        host, port = listener_addr(d, "tls")
        tls = d.listeners["tls"].tls
        assert tls is not None
        silent = [await asyncio.open_connection(host, port) for _ in range(2)]
        await wait_for(lambda: tls.stats.pending == 2)
        third_r, third_w = await asyncio.open_connection(host, port)
        assert await asyncio.wait_for(third_r.read(), 5) == b""  # closed at once
        assert _failures(d) == {"limit": 1}
        for _, w in silent:
            w.close()
        third_w.close()
        await wait_for(lambda: tls.stats.pending == 0)
        token = uuid.uuid4().hex
        await _send_tls(d, certs.client_context(), f"<14>1 - h a - - - {token}")
        assert await wait_for(lambda: _messages(d, token)) == [token]
