"""Redaction: built-ins, custom RE2 patterns with a capture group, the three
actions, where they apply (message, structured data, fields), the key, and
that the original never reaches the store, the write-ahead log or /tail."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import time
from pathlib import Path

import pytest

from collector.config import (
    ConfigError,
    ListenerConfig,
    ParsingConfig,
    RedactRule,
    StoreConfig,
    config_from_dict,
)
from collector.record import Record
from collector.redact import KEY_FILE, Redactor, load_key
from tests.support import get_json, http_request, listener_addr, local_config, running_daemon
from tests.support import wait_for as wait_until

KEY = b"k" * 32


def redact(text: str, *rules: RedactRule, counts: dict[str, int] | None = None) -> str:
    return Redactor(rules, KEY, counts if counts is not None else {}).text(text)


@pytest.mark.parametrize(
    ("match", "text", "want"),
    [
        ("ipv4", "from 10.0.0.1 port 22", "from [REDACTED] port 22"),
        ("ipv4", "version 1.2.3 and 999.1.1.1 stay", "version 1.2.3 and 999.1.1.1 stay"),
        ("ipv6", "from 2001:db8::1 and fe80::1%eth0", "from [REDACTED] and [REDACTED]%eth0"),
        ("ipv6", "at 12:01:05 nothing", "at 12:01:05 nothing"),
        ("email", "mail to bob.smith+x@example.co.uk now", "mail to [REDACTED] now"),
        ("card", "card 4111 1111 1111 1111 ok", "card [REDACTED] ok"),
        ("card", "order 4111111111111112 (not Luhn)", "order 4111111111111112 (not Luhn)"),
        ("secret", "login password=hunter2 user=bob", "login password=[REDACTED] user=bob"),
        ("secret", 'cfg token: "abc.def"', 'cfg token: "[REDACTED]"'),
        ("secret", "Authorization: Bearer eyJhbGc.x.y", "Authorization: Bearer [REDACTED]"),
        ("secret", "key AKIAIOSFODNN7EXAMPLE used", "key [REDACTED] used"),
    ],
)
def test_each_built_in_masks_what_it_names_and_leaves_the_rest(
    match: str, text: str, want: str
) -> None:
    assert redact(text, RedactRule(match=match)) == want
    # The batch path (one RE2 scan for ASCII, the finders for other text) agrees.
    for suffix in ("", " \u00e9"):
        rec = Record(0, 0, "h", "s", None, None, 1, 6, text + suffix, None, None, "raw")
        other = Record(0, 0, "h", "s", None, None, 1, 6, "nothing here", None, None, "raw")
        Redactor((RedactRule(match=match),), KEY, {}).apply([other, rec, other])
        assert rec.message == want + suffix
        assert other.message == "nothing here"


def test_partial_keeps_the_last_four_characters_and_hash_correlates_equal_values() -> None:
    assert redact("card 4111-1111-1111-1111", RedactRule("card", "partial")) == (
        "card " + "*" * 15 + "1111"
    )
    digest = hmac.new(KEY, b"bob@example.com", hashlib.sha256).hexdigest()[:12]
    out = redact("a bob@example.com b bob@example.com", RedactRule("email", "hash"))
    assert out == f"a h:{digest} b h:{digest}"


def test_a_custom_pattern_replaces_only_its_capture_group_and_counts_per_rule() -> None:
    counts: dict[str, int] = {}
    rule = RedactRule(match=r"user_id=(\d+)", action="mask", name="user")
    assert redact("user_id=42 and user_id=7", rule, counts=counts) == (
        "user_id=[REDACTED] and user_id=[REDACTED]"
    )
    assert counts == {"user": 2}
    assert redact("ssn 123-45-6789", RedactRule(r"\d{3}-\d{2}-\d{4}")) == "ssn [REDACTED]"


def test_a_rule_that_matches_everything_replaces_the_text_once_and_stays_fast() -> None:
    text = "x" * 60_000
    t0 = time.perf_counter()
    assert redact(text, RedactRule(".*")) == "[REDACTED]"
    assert redact("", RedactRule(".*")) == ""
    assert redact("a\nb", RedactRule("(?s)(.*)")) == "[REDACTED]"
    # RE2: a pattern that backtracks catastrophically elsewhere is linear here.
    assert redact("a" * 30_000 + "!", RedactRule("(a+)+$")) == "a" * 30_000 + "!"
    assert time.perf_counter() - t0 < 1.0


def test_rules_apply_to_structured_data_and_nested_field_values() -> None:
    rec = Record(
        0, 0, "h", "s", None, None, 1, 6, "ip 10.1.1.1",
        {"origin": {"ip": "10.0.0.1", "via": ["10.0.0.2", "x"]}},
        {"client": {"addr": "10.0.0.3", "n": 5}, "list": ["10.0.0.4"]},
        "json",
    )  # fmt: skip
    Redactor((RedactRule("ipv4"),), KEY, {}).apply([rec])
    assert rec.message == "ip [REDACTED]"
    assert rec.structured_data == {"origin": {"ip": "[REDACTED]", "via": ["[REDACTED]", "x"]}}
    assert rec.fields == {"client": {"addr": "[REDACTED]", "n": 5}, "list": ["[REDACTED]"]}


def test_a_bad_rule_is_a_config_error_naming_its_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict(
            {
                "parsing": {
                    "redact": [
                        {"match": "card"},
                        {"match": "(a)\\1"},
                        {"match": "email", "action": "shred"},
                    ],
                    "redact_key_file": str(tmp_path / "none"),
                }
            }
        )
    assert err.value.problems == [
        "parsing.redact[1].match: not a valid RE2 regular expression: invalid escape sequence: \\1",
        "parsing.redact[2].action: expected one of mask, partial, hash; got 'shred'",
        f"parsing.redact_key_file: cannot read {tmp_path / 'none'}: No such file or directory",
    ]


def test_the_hash_key_comes_from_the_file_else_is_made_once_in_persist_dir(
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("secret-key\n")
    assert load_key(str(key_file), None) == (b"secret-key", str(key_file))
    made, where = load_key(None, str(tmp_path / "p"))
    assert where == str(tmp_path / "p" / KEY_FILE)
    assert (tmp_path / "p" / KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert load_key(None, str(tmp_path / "p"))[0] == made  # kept: the same after a restart
    one, source = load_key(None, None)
    assert source == "a random key for this run"
    assert load_key(None, None)[0] != one


async def test_the_original_never_reaches_the_store_the_log_or_a_tail(tmp_path: Path) -> None:
    rules = (RedactRule("card", "partial"), RedactRule("email", "hash"), RedactRule("secret"))
    cfg = local_config(
        ListenerConfig(name="tcp", transport="tcp", bind="127.0.0.1:0"),
        parsing=ParsingConfig(redact=rules),
        store=StoreConfig(persist_dir=str(tmp_path / "p")),
    )
    secret_line = b"<14>1 - h app - - - pay 4111111111111111 by a@b.io password=pw123\n"
    async with running_daemon(cfg) as d:
        host, port = d.http_address
        tail_r, tail_w = await asyncio.open_connection(host, port)
        tail_w.write(b"GET /tail HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"200" in await asyncio.wait_for(tail_r.readline(), 10)
        with socket.create_connection(listener_addr(d, "tcp")) as s:
            s.sendall(secret_line)
        post = await http_request(
            d.http_address, "POST", "/logs", json.dumps({"message": "x a@b.io"}).encode()
        )
        assert post.status == 201
        await wait_until(lambda: len(d.store) == 2)
        streamed = b""
        while b"x h:" not in streamed:
            streamed += await asyncio.wait_for(tail_r.read(65536), 10)
        tail_w.close()
        logs = (await get_json(d, "/logs"))["logs"]
        metrics = (await http_request(d.http_address, "GET", "/metrics")).body.decode()
    # The TCP line may be stored after the POST (an LF-framed line waits a
    # moment for a continuation line): compare in a fixed order.
    messages = sorted((r["message"] for r in logs), key=lambda m: not m.startswith("pay"))
    assert messages[0].startswith("pay ************1111 by h:")
    assert messages[0].endswith(" password=[REDACTED]")
    assert messages[1] == "x " + messages[0].split(" by ")[1].split(" ")[0]  # same hash
    on_disk = b"".join(p.read_bytes() for p in (tmp_path / "p").rglob("*") if p.is_file())
    for original in (b"4111111111111111", b"a@b.io", b"pw123"):
        assert original not in on_disk
        assert original not in streamed
    assert b"pw123" not in on_disk
    assert 'collector_redactions_total{rule="email"} 2.0' in metrics
    assert 'collector_redactions_total{rule="card"} 1.0' in metrics
