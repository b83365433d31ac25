"""Parse stage for JSON lines: one line (bytes) -> one Record.

Pure. Thin version: a JSON object's message/level/service/host are read, the
rest is kept raw; the full alias and time handling replaces it behind
`parse_json_line(data, received_at, sender, opts, truncated=False)`.
"""

from __future__ import annotations

import json
from typing import Any

from collector.parse import ParseOptions, apply_clock_skew, raw_record
from collector.record import INFO, Record, level_from_name


def parse_json_line(
    data: bytes,
    received_at: int,
    sender: str | None,
    opts: ParseOptions,
    truncated: bool = False,
) -> Record:
    """Parse one JSON line (trailing LF/CR already stripped)."""
    text = data.decode("utf-8", "replace")
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        rec = raw_record(text, received_at, sender)
    else:
        rec = record_from_object(obj, received_at, sender, opts)
    if truncated:
        rec.fields = {**(rec.fields or {}), "truncated": True}
    return apply_clock_skew(rec, opts)


def record_from_object(
    obj: dict[str, Any], received_at: int, sender: str | None, opts: ParseOptions
) -> Record:
    """A decoded JSON object (a JSON line, or an item of POST /logs) -> Record.

    Clock skew is not applied here; callers do it once per record."""
    obj = dict(obj)
    level = obj.pop("level", None)
    return Record(
        received_at,
        received_at,
        obj.pop("host", None) or sender,
        obj.pop("service", None),
        None,
        None,
        None,
        (level_from_name(level) if isinstance(level, str) else None) or INFO,
        str(obj.pop("message", "")),
        None,
        obj or None,
        "json",
    )
