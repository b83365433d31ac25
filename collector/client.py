"""The CLI's side of the HTTP API: `collector query`, `tail` and `stats`.

A small blocking client on http.client (stdlib): it talks to the daemon's
HTTP port only, never to the store. Relative times (`-15m`) go to the daemon
as they are: it resolves them once, and a cursor keeps what they meant.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

DEFAULT_URL = "http://127.0.0.1:9514"
PAGE_MAX = 10_000  # the API's largest page
TIMEOUT = 30.0
# /tail sends a blank line every 15 s; four missed ones mean the daemon is gone.
TAIL_TIMEOUT = 60.0


class ClientError(Exception):
    """The request could not be answered; `exit_code` 2 means bad input."""

    def __init__(self, message: str, exit_code: int = 1, status: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.status = status  # the HTTP status when the daemon answered with an error


@dataclass(frozen=True, slots=True)
class Target:
    """Where the daemon is, and the token it wants (if any)."""

    url: str = DEFAULT_URL
    token: str | None = None


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
        raise ClientError(
            f"{message} (HTTP {resp.status})", 2 if resp.status == 400 else 1, resp.status
        )
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
    return _stream(target, conn, resp)


def _stream(
    target: Target, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse
) -> Iterator[dict[str, Any]]:
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
                try:
                    yield json.loads(line)
                except ValueError:
                    # A line cut by a daemon going away mid-write: the stream is lost.
                    raise ClientError(f"lost the stream from {target.url}: cut line") from None
    finally:
        conn.close()


def _get_json(target: Target, path: str, params: dict[str, str]) -> Any:
    conn, resp = _request(target, path, params, TIMEOUT)
    try:
        return json.loads(resp.read())
    except (ValueError, OSError) as e:
        raise ClientError(f"bad answer from {target.url}: {e}") from None
    finally:
        conn.close()


def newest_records(
    target: Target, params: dict[str, str], n: int
) -> tuple[list[dict[str, Any]], int]:
    """The newest `n` matches, oldest first, and how many matched in all
    (`/stats` with the same filters, asked after the page)."""
    recs = list(query_records(target, {**params, "order": "desc"}, n))
    recs.reverse()
    total = int(stats(target, params).get("total", len(recs)))
    return recs, max(total, len(recs))


def stats(target: Target, params: dict[str, str]) -> dict[str, Any]:
    """`GET /stats` with these parameters."""
    answer: dict[str, Any] = _get_json(target, "/stats", params)
    return answer


# A reconnected stream replays from this long before the newest record
# printed, so that records stored while it was away with a slightly older
# time (another host's clock, a late line) still come; the ids printed
# recently (at most RECENT_IDS) are skipped, so none comes twice.
RESUME_MARGIN = 60.0
RECENT_IDS = 10_000


class Resume:
    """Where a followed stream picks up after a reconnect, and what it
    already printed."""

    def __init__(self, since: str | None = None) -> None:
        self.newest: str | None = None  # RFC 3339 timestamp, as the API prints it
        self.recent: dict[str, None] = {}  # ids printed, oldest first (insertion order)
        self.since = since

    def seen(self, rec: dict[str, Any]) -> bool:
        """Whether `rec` was already printed; remembers it if not."""
        rid = str(rec.get("id", ""))
        if rid in self.recent:
            return True
        self.recent[rid] = None
        if len(self.recent) > RECENT_IDS:
            del self.recent[next(iter(self.recent))]
        ts = str(rec.get("timestamp", ""))
        if self.newest is None or ts > self.newest:
            self.newest = ts
        return False

    def start(self) -> str | None:
        """The `start` to ask a reconnected stream for: RESUME_MARGIN before
        the newest record printed (Unix seconds), else what it began with."""
        if self.newest is None:
            return self.since
        try:
            t = dt.datetime.fromisoformat(self.newest.replace("Z", "+00:00"))
        except ValueError:
            return self.since
        return f"{t.timestamp() - RESUME_MARGIN:.6f}"


def follow(
    target: Target,
    params: dict[str, str],
    resume: Resume,
    say: Callable[[str], None],
    *,
    retry_seconds: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> Iterator[dict[str, Any]]:
    """Records from GET /tail, for ever: when the daemon goes away (a
    restart), say so, reconnect, and resume after the last record yielded
    (a replay from just before it, skipping what was printed): no gap, no
    duplicate. Ends only when the caller stops (Ctrl-C)."""
    down = False
    lost_at: str | None = None
    start = resume.since if resume.newest is None else resume.start()
    while True:
        ask = {**params, "start": start} if start else params
        try:
            stream = tail_records(target, ask)  # connects and reads the status now
            if down:
                say(f"reconnected to {target.url}; resuming after the last record printed")
                down = False
            for rec in stream:
                if not resume.seen(rec):
                    yield rec
            reason = "the daemon closed the stream"
        except ClientError as e:
            if e.status is not None:
                raise  # the daemon answered (a bad filter, a token): retrying cannot help
            reason = str(e)
        if not down:
            # With nothing printed yet, a reconnect replays from when the stream was lost.
            lost_at = f"{clock() - RESUME_MARGIN:.6f}"
            say(f"lost {target.url} ({reason}); reconnecting every {retry_seconds:g}s")
            down = True
        sleep(retry_seconds)
        start = resume.start() or lost_at
