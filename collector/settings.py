"""Settings stage: the one live settings object the running parts read by reference.

Nothing copies config values out of it: listeners, HTTP and the daemon's loops
hold this object and read it when they use it, so a reload changes every reader
at once with one `apply()`. Built from a validated Config; no I/O.
"""

from __future__ import annotations

import os

from collector.config import Config
from collector.configvalues import resolve_timezone
from collector.record import ParseOptions
from collector.redact import Redactor


class Settings:
    """The running config and what is derived from it: parse options and
    the redaction rules (with their HMAC key).

    `apply(config)` swaps them together; between two event-loop turns a
    reader sees either the old set or the new one, never a mix."""

    __slots__ = ("config", "parse_options", "redact_key", "redaction_counts", "redactor")

    config: Config
    parse_options: ParseOptions
    redactor: Redactor | None

    def __init__(self, config: Config | None = None, redact_key: bytes | None = None) -> None:
        # Without a key from the daemon (see redact.load_key): one for this run.
        self.redact_key = redact_key if redact_key is not None else os.urandom(32)
        self.redaction_counts: dict[str, int] = {}  # rule -> values replaced, across reloads
        self.apply(config if config is not None else Config())

    def apply(self, config: Config, redact_key: bytes | None = None) -> None:
        """Make `config` the running one (a reload's single write)."""
        if redact_key is not None:
            self.redact_key = redact_key
        rules = config.parsing.redact
        self.redactor = Redactor(rules, self.redact_key, self.redaction_counts) if rules else None
        self.parse_options = ParseOptions(
            tz=resolve_timezone(config.parsing.default_timezone),
            ttl_us=int(config.store.ttl * 1_000_000),
        )
        self.config = config
