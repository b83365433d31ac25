"""The live settings: one object, swapped by a reload, read by reference by
every running part (listeners, HTTP, the daemon's loops)."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import replace

from collector.config import Config, ParsingConfig, StoreConfig
from collector.reload import reload
from collector.settings import Settings
from tests.support import running_daemon


def test_apply_swaps_the_config_and_the_parse_options_derived_from_it_together() -> None:
    s = Settings()
    assert s.parse_options.tz == dt.timezone.utc
    assert s.parse_options.ttl_us == 3600 * 1_000_000
    new = replace(
        Config(),
        parsing=ParsingConfig(default_timezone="Asia/Kolkata"),
        store=replace(StoreConfig(), ttl=90.0),
    )
    s.apply(new)
    assert s.config is new
    assert s.parse_options.tz == zoneinfo.ZoneInfo("Asia/Kolkata")
    assert s.parse_options.ttl_us == 90 * 1_000_000


async def test_every_running_part_reads_the_daemons_one_settings_object() -> None:
    async with running_daemon() as d:
        assert d.app is not None
        assert d.app.settings is d.settings
        assert all(lst.ingest.settings is d.settings for lst in d.listeners.values())
        new = replace(d.config, store=replace(d.config.store, ttl=120.0))
        assert await reload(d, new) is True
        # The same object, updated in place: nothing held a copy to patch.
        assert d.app.settings is d.settings
        assert all(lst.ingest.settings is d.settings for lst in d.listeners.values())
        assert d.settings.parse_options.ttl_us == 120 * 1_000_000
        assert d.app.http is d.settings.config.http
