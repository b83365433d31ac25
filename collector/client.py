"""The CLI's side of the HTTP API: `collector query` and `collector tail`.

A small blocking client on http.client (stdlib): it talks to the daemon's
HTTP port only, never to the store. Relative times (`-15m`) are turned into
absolute ones here, where reading the clock is allowed.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from collector.config import parse_duration

DEFAULT_URL = "http://127.0.0.1:9514"
PAGE_MAX = 10_000  # the API's largest page
TIMEOUT = 30.0
# /tail sends a blank line every 15 s; four missed ones mean the daemon is gone.
TAIL_TIMEOUT = 60.0

_RELATIVE = re.compile(r"([+-])\s*(\d+(?:\.\d+)?\s*(?:ms|s|m|h|d)?)")
_COLOURS = {
    "emerg": "\x1b[1;97;41m",
    "alert": "\x1b[1;97;41m",
    "crit": "\x1b[1;91m",
    "err": "\x1b[91m",
    "warning": "\x1b[93m",
    "notice": "\x1b[96m",
    "info": "",
    "debug": "\x1b[2m",
}
_RESET = "\x1b[0m"
# A log line must not drive the terminal it is printed on (ESC sequences,
# CR overwriting the line): C0 controls and DEL are shown escaped, tab kept.
_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(32), 127] if c != 9}
_CONTROLS[10] = "\\n"
_CONTROLS[13] = "\\r"


class ClientError(Exception):
    """The request could not be answered; `exit_code` 2 means bad input."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True)
class Target:
    """Where the daemon is, and the token it wants (if any)."""

    url: str = DEFAULT_URL
    token: str | None = None


def absolute_time(value: str, now: float | None = None) -> str:
    """`now`, `-15m`, `+1h` -> Unix seconds; anything else is passed through
    for the server to read (RFC 3339 or Unix seconds) and judge."""
    text = value.strip()
    now = time.time() if now is None else now
    if text.lower() == "now":
        return f"{now:.6f}"
    m = _RELATIVE.fullmatch(text)
    if m is None:
        return text
    seconds = parse_duration(m[2])
    return f"{now - seconds if m[1] == '-' else now + seconds:.6f}"


def _connect(target: Target, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    parts = urlsplit(target.url if "://" in target.url else f"http://{target.url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ClientError(f"--url: expected http://host:port; got {target.url!r}", 2)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    return cls(parts.hostname, parts.port, timeout=timeout), parts.path.rstrip("/")


def _request(
    target: Target, path: str, params: dict[str, str], timeout: float
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    conn, prefix = _connect(target, timeout)
    headers = {"Accept": "application/json", "User-Agent": "collector-cli"}
    if target.token:
        headers["Authorization"] = f"Bearer {target.token}"
    query = f"?{urlencode(params)}" if params else ""
    try:
        conn.request("GET", f"{prefix}{path}{query}", headers=headers)
        resp = conn.getresponse()
    except (ConnectionRefusedError, socket.gaierror, TimeoutError, OSError) as e:
        conn.close()
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e) or type(e).__name__
        raise ClientError(
            f"cannot reach the daemon at {target.url}: {reason} (is `collector run` running? see --url)"
        ) from None
    except http.client.HTTPException as e:
        conn.close()
        raise ClientError(f"the daemon at {target.url} answered nonsense: {e!r}") from None
    if resp.status != 200:
        body = resp.read()
        conn.close()
        try:
            message = json.loads(body)["error"]
        except (ValueError, KeyError, TypeError):
            message = body[:200].decode("utf-8", "replace") or resp.reason
        raise ClientError(f"{message} (HTTP {resp.status})", 2 if resp.status == 400 else 1)
    return conn, resp


def query_records(target: Target, params: dict[str, str], limit: int) -> Iterator[dict[str, Any]]:
    """Records from GET /logs, following next_cursor until `limit` are seen
    or none are left."""
    left = limit
    cursor: str | None = None
    while left > 0:
        page_params = {**params, "limit": str(min(left, PAGE_MAX))}
        if cursor:
            page_params["cursor"] = cursor
        conn, resp = _request(target, "/logs", page_params, TIMEOUT)
        try:
            page = json.loads(resp.read())
        except (ValueError, OSError) as e:
            raise ClientError(f"bad answer from {target.url}: {e}") from None
        finally:
            conn.close()
        logs = page.get("logs", [])
        yield from logs[:left]
        left -= len(logs)
        cursor = page.get("next_cursor")
        if not cursor:
            return


def tail_records(target: Target, params: dict[str, str]) -> Iterator[dict[str, Any]]:
    """Records from GET /tail as they arrive; keep-alive blank lines skipped.
    Ends when the daemon closes the stream."""
    conn, resp = _request(target, "/tail", params, TAIL_TIMEOUT)
    try:
        while True:
            try:
                line = resp.readline()
            except (TimeoutError, OSError, http.client.HTTPException) as e:
                raise ClientError(
                    f"lost the stream from {target.url}: {e or type(e).__name__}"
                ) from None
            if not line:
                return
            if line.strip():
                yield json.loads(line)
    finally:
        conn.close()


def format_record(rec: dict[str, Any], colour: bool = False) -> str:
    """One readable line: time, host, service[pid], level, message (control
    characters escaped)."""
    service = str(rec.get("service") or "-")
    if rec.get("procid"):
        service = f"{service}[{rec['procid']}]"
    level = str(rec.get("level", ""))
    shown = f"{_COLOURS.get(level, '')}{level}{_RESET}" if colour and _COLOURS.get(level) else level
    message = str(rec.get("message", "")).translate(_CONTROLS)
    host = str(rec.get("host") or "-").translate(_CONTROLS)
    return f"{rec.get('timestamp')} {host} {service.translate(_CONTROLS)} {shown}: {message}"
