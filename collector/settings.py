"""Settings stage: the one live settings object the running parts read by reference.

Nothing copies config values out of it: listeners, HTTP and the daemon's loops
hold this object and read it when they use it, so a reload changes every reader
at once with one `apply()`. Built from a validated Config; no I/O.
"""

from __future__ import annotations

from collector.config import Config, resolve_timezone
from collector.record import ParseOptions


class Settings:
    """The running config and the parse options derived from it.

    `apply(config)` swaps both together; between two event-loop turns a
    reader sees either the old pair or the new one, never a mix."""

    __slots__ = ("config", "parse_options")

    config: Config
    parse_options: ParseOptions

    def __init__(self, config: Config | None = None) -> None:
        self.apply(config if config is not None else Config())

    def apply(self, config: Config) -> None:
        """Make `config` the running one (a reload's single write)."""
        self.parse_options = ParseOptions(
            tz=resolve_timezone(config.parsing.default_timezone),
            ttl_us=int(config.store.ttl * 1_000_000),
        )
        self.config = config
