"""Configuration cross-checks on plain values: do two addresses collide at bind
time, does a URL suit its broker, is a broker's client installed, do PEM files load.

Called by config.py while it validates; each raises or returns why, never logs.
"""

from __future__ import annotations

import importlib.util
import re
import ssl

from collector.configvalues import parse_host_port

# The optional extra each broker client comes from: (import name, pip extra).
CLIENT_EXTRAS = {"redis": ("redis", "redis"), "kafka": ("confluent_kafka", "kafka")}


def load_pem(cert: str, key: str, client_ca: str | None) -> None:
    """Load the files as a TLS server would (collector.tls makes the real
    context; this is the check); ssl.SSLError or OSError when they do not."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key, password=lambda: "")  # an encrypted key fails, never prompts
    if client_ca is not None:
        ctx.load_verify_locations(cafile=client_ca)


# Hosts that take a port on every address of their family ("::" is dual-stack
# here: the listeners and the HTTP port take IPv4 on it too).
_ANY_HOST = {"0.0.0.0": "4", "": "4", "::": "any"}


def same_address(a: tuple[str, int], b: tuple[str, int]) -> bool:
    """Would binding both collide (EADDRINUSE)? Same port and the same host,
    or a wildcard on either side covering the other's family."""
    if a[1] != b[1] or a[1] == 0:  # ephemeral ports never collide
        return False
    ha, hb = (("127.0.0.1" if h == "localhost" else h) for h in (a[0], b[0]))
    if ha == hb or "any" in (_ANY_HOST.get(ha), _ANY_HOST.get(hb)):
        return True
    for wild, other in ((ha, hb), (hb, ha)):
        if _ANY_HOST.get(wild) == "4" and ":" not in other:
            return True
    return False


def check_broker_url(kind: str, url: str) -> None:
    """Raise ValueError unless `url` suits a `kind` broker (redis, kafka, syslog)."""
    if kind == "redis":
        if not re.match(r"^(redis|rediss|unix)://", url):
            raise ValueError(
                f'expected redis://HOST:PORT/DB, rediss://... or unix://PATH; got "{url}"'
            )
        return
    if kind == "kafka":
        m = re.fullmatch(r"kafka://([^/]+)/?", url)
        if m is None:
            raise ValueError(f'expected kafka://HOST:PORT[,HOST:PORT...]; got "{url}"')
        for hp in m[1].split(","):
            parse_host_port(hp)
        return
    m = re.fullmatch(r"(tcp|tls|udp)://(.+)", url)
    if m is None:
        raise ValueError(
            f'expected tcp://HOST:PORT, tls://HOST:PORT or udp://HOST:PORT; got "{url}"'
        )
    _, port = parse_host_port(m[2])
    if port == 0:
        raise ValueError(f'port 0 cannot be sent to; got "{url}"')


def missing_extra(kind: str) -> str | None:
    """Why a `kind` broker cannot be used here (its client is not installed), or None."""
    if kind not in CLIENT_EXTRAS:
        return None
    module, extra = CLIENT_EXTRAS[kind]
    if importlib.util.find_spec(module) is not None:
        return None
    return f"{kind} needs its client library: pip install 'collector[{extra}]'"
