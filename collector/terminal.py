"""What the CLI prints: records as lines, counts as a table, a sparkline.

Pure text functions over the API's JSON shapes (no I/O, no clock: the zone
to print times in comes in as an argument). Nothing a log line carries may
drive the terminal: control characters are shown escaped.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

INDENT = "    "
SPARKS = "▁▂▃▄▅▆▇█"

COLOURS = {
    "emerg": "\x1b[1;97;41m",
    "alert": "\x1b[1;97;41m",
    "crit": "\x1b[1;91m",
    "err": "\x1b[91m",
    "warning": "\x1b[93m",
    "notice": "\x1b[96m",
    "info": "",
    "debug": "\x1b[2m",
}
RESET = "\x1b[0m"
# C0 controls and DEL are shown escaped (an ESC sequence or a CR in a log
# line must not rewrite the screen); tab is kept, LF starts an indented line.
_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(32), 127] if c != 9}
_CONTROLS[13] = "\\r"
_CONTROLS_NO_LF = {**_CONTROLS, 10: "\\n"}


def shown_time(stamp: str, tz: dt.tzinfo | None) -> str:
    """An API timestamp (`...Z`) as printed: unchanged for `tz` None (UTC),
    else in `tz` with its offset (`2026-01-30T13:00:00.000000+01:00`)."""
    if tz is None or not stamp:
        return stamp
    try:
        t = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    return t.astimezone(tz).isoformat(timespec="microseconds")


def _scalar(v: Any) -> str:
    text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    if not text or any(c in text for c in ' ="\n\t') or text != text.strip():
        text = json.dumps(text, ensure_ascii=False)
    return text.translate(_CONTROLS_NO_LF)


def _flatten(prefix: str, value: Any, out: list[str]) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out.append(f"{prefix.translate(_CONTROLS_NO_LF)}={_scalar(value)}")


def pairs(fields: Mapping[str, Any] | None) -> str:
    """A JSON line's fields as `k=v` pairs, nested keys dotted, values quoted
    when they hold spaces, `=` or quotes: `user_id=42 http.status=500`."""
    out: list[str] = []
    for k, v in (fields or {}).items():
        _flatten(str(k), v, out)
    return " ".join(out)


def sd_text(sd: Mapping[str, Mapping[str, Any]] | None) -> str:
    """Structured data as RFC 5424 writes it: `[origin ip=10.0.0.1]`."""
    parts = []
    for sd_id, params in (sd or {}).items():
        items = []
        for k, v in params.items():
            for one in v if isinstance(v, list) else [v]:
                items.append(f"{k}={_scalar(one)}")
        parts.append("[" + " ".join([str(sd_id).translate(_CONTROLS_NO_LF), *items]) + "]")
    return "".join(parts)


def format_record(
    rec: Mapping[str, Any], *, colour: bool = False, tz: dt.tzinfo | None = None
) -> str:
    """One record for people: `time host service[pid] level: message k=v`.

    Times print in `tz` (None: UTC as the API has them). Structured data and
    fields follow the first line of the message; further lines of a
    multi-line message print under it, indented."""
    service = str(rec.get("service") or "-")
    if rec.get("procid"):
        service = f"{service}[{rec['procid']}]"
    level = str(rec.get("level", ""))
    shown = f"{COLOURS[level]}{level}{RESET}" if colour and COLOURS.get(level) else level
    message = str(rec.get("message", "")).replace("\r\n", "\n").rstrip("\n")
    first, *rest = message.split("\n")
    host = str(rec.get("host") or "-")
    head = (
        f"{shown_time(str(rec.get('timestamp') or ''), tz)} {host.translate(_CONTROLS_NO_LF)} "
        f"{service.translate(_CONTROLS_NO_LF)} {shown}: {first.translate(_CONTROLS)}"
    )
    extra = " ".join(
        t for t in (sd_text(rec.get("structured_data")), pairs(rec.get("fields"))) if t
    )
    if extra:
        head = f"{head} {extra}" if first else f"{head}{extra}"
    return "\n".join([head, *(INDENT + line.translate(_CONTROLS) for line in rest)])


def more_matched(total: int, shown: int) -> str | None:
    """The stderr note after `collector query`: how many matches were not printed."""
    more = total - shown
    if more <= 0:
        return None
    return f"{more} more matched (use -n to see more, or --since to narrow)"


def sparkline(counts: Sequence[int]) -> str:
    """Counts as one line of block characters scaled to the largest; an empty
    bucket is a space (so gaps show), any non-empty one at least the lowest block."""
    top = max(counts, default=0)
    if top <= 0:
        return SPARKS[0] * len(counts)
    n = len(SPARKS)  # block k (0-based) stands for up to (k + 1) / n of the largest
    return "".join(" " if c <= 0 else SPARKS[(c * n + top - 1) // top - 1] for c in counts)


def _rows(counts: Mapping[str, int], total: int) -> Iterable[tuple[str, str, str]]:
    for key, n in sorted(counts.items(), key=lambda kv: (kv[0] == "others", -kv[1], kv[0])):
        share = f"{100 * n / total:.1f}%" if total else "-"
        yield key, str(n), share


def stats_table(
    answer: Mapping[str, Any], *, spark: bool = False, tz: dt.tzinfo | None = None
) -> str:
    """`GET /stats` as a table: the total, then per `by` field its values
    with counts and shares; with `spark`, the histogram as a sparkline."""
    total = int(answer.get("total", 0))
    lines = [f"total {total}"]
    for field, counts in (answer.get("by") or {}).items():
        rows = list(_rows(counts, total))
        wk = max([len(field), *(len(k) for k, _, _ in rows)])
        wn = max([5, *(len(n) for _, n, _ in rows)])
        lines.append("")
        lines.append(f"{field:<{wk}}  {'count':>{wn}}  share")
        for key, n, share in rows:
            lines.append(f"{key.translate(_CONTROLS_NO_LF):<{wk}}  {n:>{wn}}  {share:>5}")
    histogram = answer.get("histogram") or []
    if histogram:
        counts = [int(b.get("count", 0)) for b in histogram]
        first = shown_time(str(histogram[0].get("start", "")), tz)
        last = shown_time(str(histogram[-1].get("start", "")), tz)
        lines.append("")
        if spark:
            lines.append(f"{sparkline(counts)}  max {max(counts)}/bucket")
            lines.append(f"{first} .. {last}")
        else:
            for b, c in zip(histogram, counts, strict=True):
                lines.append(f"{shown_time(str(b.get('start', '')), tz)}  {c}")
    return "\n".join(lines)
