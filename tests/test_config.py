"""Config: defaults, the shipped example, and every error naming its key."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import pytest

from collector.config import Config, ConfigError, config_from_dict, load_config
from collector.configvalues import parse_duration, parse_size, resolve_timezone

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "collector.yaml"


def test_the_shipped_example_loads_to_exactly_the_built_in_defaults() -> None:
    assert load_config(EXAMPLE) == Config()


def test_an_empty_file_is_the_default_config(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_config(path) == Config()


def test_defaults_match_the_contract() -> None:
    c = Config()
    assert [(lc.name, lc.transport, lc.format, lc.bind) for lc in c.listeners] == [
        ("syslog-udp", "udp", "syslog", "0.0.0.0:5514"),
        ("syslog-tcp", "tcp", "syslog", "0.0.0.0:5514"),
        ("json-tcp", "tcp", "json", "0.0.0.0:5515"),
    ]
    assert all(lc.max_connections == 1024 and lc.recv_buffer == 8 * 2**20 for lc in c.listeners)
    assert c.http.bind == "127.0.0.1:9514"
    assert c.http.auth_token is None
    assert c.store.ttl == 3600
    assert c.store.max_records == 5_000_000
    assert c.store.max_memory == 512 * 2**20
    assert c.store.persist_dir is None
    assert c.store.fsync == "batch"
    assert c.parsing.default_timezone == "UTC"
    assert c.parsing.max_message_bytes == 65536


def test_a_listener_entry_needs_only_name_and_transport() -> None:
    c = config_from_dict({"listeners": [{"name": "a", "transport": "udp"}]})
    assert c.listeners[0].bind == "0.0.0.0:5514"
    assert c.listeners[0].format == "syslog"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("500ms", 0.5, id="milliseconds"),
        pytest.param("30s", 30, id="seconds"),
        pytest.param("15m", 900, id="minutes"),
        pytest.param("1h", 3600, id="hours"),
        pytest.param("2d", 172800, id="days"),
        pytest.param(90, 90, id="bare-int-is-seconds"),
        pytest.param(1.5, 1.5, id="bare-float-is-seconds"),
        pytest.param("45", 45, id="numeric-string-is-seconds"),
    ],
)
def test_durations_are_read_in_every_contract_form(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "size"),
    [
        pytest.param("64KiB", 65536, id="KiB"),
        pytest.param("512MiB", 512 * 2**20, id="MiB"),
        pytest.param("2GiB", 2 * 2**30, id="GiB"),
        pytest.param(1000, 1000, id="bare-bytes"),
        pytest.param("1000", 1000, id="numeric-string-bytes"),
    ],
)
def test_sizes_are_read_in_every_contract_form(text: object, size: int) -> None:
    assert parse_size(text) == size


def _problems(data: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    return info.value.problems


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            {"store": {"ttl": "soon"}},
            'store.ttl: expected a duration like 90s, 15m, 1h; got "soon"',
            id="bad-duration-contract-wording",
        ),
        pytest.param({"store": {"ttl": 0}}, "store.ttl: expected a duration > 0", id="zero-ttl"),
        pytest.param(
            {"store": {"max_memory": "lots"}}, "store.max_memory: expected a size", id="bad-size"
        ),
        pytest.param(
            {"store": {"max_records": "many"}},
            "store.max_records: expected an integer",
            id="bad-int",
        ),
        pytest.param(
            {"store": {"max_records": 0}},
            "store.max_records: expected an integer >= 1",
            id="zero-records",
        ),
        pytest.param(
            {"store": {"fsync": "sometimes"}},
            "store.fsync: expected one of never, batch, always",
            id="bad-fsync",
        ),
        pytest.param({"store": {"color": 1}}, "store.color: unknown key", id="unknown-store-key"),
        pytest.param({"stor": {}}, "stor: unknown key", id="unknown-top-key"),
        pytest.param(
            {"http": {"bind": "localhost"}},
            'http.bind: expected "host:port"',
            id="http-bind-without-port",
        ),
        pytest.param(
            {"http": {"bind": "127.0.0.1:70000"}},
            "http.bind: port 70000 is out of range",
            id="http-port-range",
        ),
        pytest.param(
            {"http": {"auth_token": 5}},
            "http.auth_token: expected a non-empty string",
            id="token-type",
        ),
        pytest.param(
            {"http": []}, "http: expected a mapping; got a list", id="section-not-mapping"
        ),
        pytest.param(
            {"parsing": {"default_timezone": "Mars/Olympus"}},
            "parsing.default_timezone: expected an IANA zone name",
            id="bad-zone",
        ),
        pytest.param(
            {"parsing": {"max_message_bytes": 10}},
            "parsing.max_message_bytes: expected a size 64..64MiB",
            id="tiny-max-message",
        ),
        pytest.param(
            {"listeners": {"name": "x"}},
            "listeners: expected a list; got a mapping",
            id="listeners-not-list",
        ),
        pytest.param(
            {"listeners": ["x"]},
            "listeners[0]: expected a mapping; got a string",
            id="listener-not-mapping",
        ),
        pytest.param(
            {"store": {"ttl": float("inf")}},
            "store.ttl: expected a finite duration >= 0; got inf",
            id="infinite-ttl",
        ),
        pytest.param(
            {"listeners": [{"transport": "udp"}]},
            "listeners[0].name: required",
            id="listener-without-name",
        ),
        pytest.param(
            {"listeners": [{"name": "x", "transport": "sctp"}]},
            "listeners[0].transport: expected one of udp, tcp, unix, redis, kafka; got 'sctp'",
            id="bad-transport",
        ),
        pytest.param(
            {"listeners": [{"name": "x", "transport": "tcp", "format": "xml"}]},
            "listeners[0].format: expected one of syslog, json",
            id="bad-format",
        ),
        pytest.param(
            {"listeners": [{"name": "x", "transport": "tcp", "bind": "nowhere"}]},
            'listeners[0].bind: expected "host:port"',
            id="bad-bind",
        ),
        pytest.param(
            {"listeners": [{"name": "x", "transport": "tcp", "bind": "[zz::1]:514"}]},
            "listeners[0].bind:",
            id="bad-v6-bind",
        ),
        pytest.param(
            {"listeners": [{"name": "x", "transport": "unix", "bind": "127.0.0.1:514"}]},
            "listeners[0].bind: unix needs a socket path",
            id="unix-needs-path",
        ),
        pytest.param(
            {"listeners": [{"name": "x", "transport": "tcp", "max_connections": -1}]},
            "listeners[0].max_connections: expected an integer >= 1",
            id="negative-connections",
        ),
        pytest.param(
            {"listeners": [{"name": "x", "transport": "udp", "recv_buffer": "big"}]},
            "listeners[0].recv_buffer: expected a size",
            id="bad-recv-buffer",
        ),
        pytest.param(
            {"listeners": [{"name": "x", "transport": "udp", "extra": 1}]},
            "listeners[0].extra: unknown key",
            id="unknown-listener-key",
        ),
        pytest.param([1, 2], "(top level): expected a mapping", id="top-level-list"),
    ],
)
def test_every_error_names_its_dotted_key(data: object, expected: str) -> None:
    problems = _problems(data)
    assert any(p.startswith(expected) for p in problems), problems


def test_duplicate_listener_names_are_an_error_naming_both() -> None:
    problems = _problems(
        {
            "listeners": [
                {"name": "a", "transport": "udp", "bind": "127.0.0.1:1000"},
                {"name": "a", "transport": "tcp", "bind": "127.0.0.1:1001"},
            ]
        }
    )
    assert problems == ["listeners[1].name: duplicate of listeners[0]: 'a'"]


def test_two_listeners_of_one_transport_on_one_address_are_an_error() -> None:
    problems = _problems(
        {
            "listeners": [
                {"name": "a", "transport": "tcp", "bind": "0.0.0.0:5514"},
                {"name": "b", "transport": "tcp", "bind": "0.0.0.0:5514"},
            ]
        }
    )
    assert problems == ["listeners[1].bind: tcp 0.0.0.0:5514 is already used by listeners[0]"]


def test_a_tcp_listener_and_http_bind_on_one_address_are_an_error() -> None:
    problems = _problems(
        {
            "listeners": [{"name": "a", "transport": "tcp", "bind": "127.0.0.1:19514"}],
            "http": {"bind": "127.0.0.1:19514"},
        }
    )
    assert problems == [
        "http.bind: 127.0.0.1:19514 is already used by listeners[0] (tcp 127.0.0.1:19514)"
    ]


def test_a_wildcard_address_overlaps_a_specific_one_on_the_same_port() -> None:
    problems = _problems(
        {
            "listeners": [
                {"name": "a", "transport": "tcp", "bind": "0.0.0.0:5514"},
                {"name": "b", "transport": "tcp", "bind": "127.0.0.1:5514"},
                {"name": "c", "transport": "udp", "bind": "[::]:5516"},
                {"name": "d", "transport": "udp", "bind": "10.1.2.3:5516"},
                {"name": "e", "transport": "tcp", "bind": "[::1]:5517"},
            ],
            "http": {"bind": "0.0.0.0:5517"},  # IPv4 only: [::1] is another family
        }
    )
    assert problems == [
        "listeners[1].bind: tcp 127.0.0.1:5514 (overlaps 0.0.0.0:5514) is already used by listeners[0]",
        "listeners[3].bind: udp 10.1.2.3:5516 (overlaps [::]:5516) is already used by listeners[2]",
    ]


def test_a_unix_listener_in_a_directory_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    problems = _problems(
        {
            "listeners": [
                {"name": "ok", "transport": "unix", "bind": str(tmp_path / "log.sock")},
                {"name": "devlog", "transport": "unix", "bind": str(missing / "log.sock")},
            ]
        }
    )
    assert problems == [
        f"listeners[1].bind: directory {missing} does not exist; create it or bind elsewhere"
    ]


def test_a_unix_listener_on_a_file_that_is_not_a_socket_is_an_error(tmp_path: Path) -> None:
    plain = tmp_path / "log"
    plain.write_text("not a socket")
    problems = _problems({"listeners": [{"name": "u", "transport": "unix", "bind": str(plain)}]})
    assert problems == [f"listeners[0].bind: {plain} exists and is not a socket"]


def test_udp_and_tcp_may_share_an_address_and_port_zero_never_collides() -> None:
    c = config_from_dict(
        {
            "listeners": [
                {"name": "a", "transport": "udp", "bind": "0.0.0.0:5514"},
                {"name": "b", "transport": "tcp", "bind": "0.0.0.0:5514"},
                {"name": "c", "transport": "tcp", "bind": "127.0.0.1:0"},
                {"name": "d", "transport": "tcp", "bind": "127.0.0.1:0"},
            ]
        }
    )
    assert [lc.name for lc in c.listeners] == ["a", "b", "c", "d"]


def test_all_problems_are_reported_at_once() -> None:
    problems = _problems({"store": {"ttl": "x", "fsync": "y"}, "http": {"bind": "z"}})
    assert len(problems) == 3


def test_ipv6_binds_are_accepted() -> None:
    c = config_from_dict({"listeners": [{"name": "v6", "transport": "udp", "bind": "[::]:5514"}]})
    assert c.listeners[0].bind == "[::]:5514"


def test_unix_mode_accepts_octal_strings_and_yaml_octal() -> None:
    c = config_from_dict(
        {"listeners": [{"name": "u", "transport": "unix", "bind": "/tmp/x.sock", "mode": "0660"}]}
    )
    assert c.listeners[0].mode == 0o660


def test_an_unquoted_decimal_mode_is_refused_and_yaml_octal_is_read(tmp_path: Path) -> None:
    path = tmp_path / "mode.yaml"
    unix = "listeners:\n  - {name: u, transport: unix, bind: /tmp/x.sock, mode: %s}\n"
    path.write_text(unix % "0640")
    assert load_config(path).listeners[0].mode == 0o640
    path.write_text(unix % "600")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [
        'listeners[0].mode: expected a file mode like "0666"; got 600, a decimal number'
        ' in YAML (write "0600" in quotes for octal 600)'
    ]


@pytest.mark.parametrize("token", ["abc ", " abc", "a b", "héllo", "tab\there", ""])
def test_an_auth_token_no_client_could_send_is_refused_without_echoing_it(token: str) -> None:
    problems = _problems({"http": {"auth_token": token}})
    assert len(problems) == 1
    assert problems[0].startswith("http.auth_token: expected ")
    assert token.strip() == "" or token.strip() not in problems[0]


def test_invalid_yaml_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("store:\n  ttl: [1h\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "invalid YAML at line" in info.value.problems[0]


def test_a_missing_file_is_reported_not_raised(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert "cannot read" in info.value.problems[0]


def test_timezones_resolve_by_iana_name_utc_and_local() -> None:
    assert resolve_timezone("UTC") is _dt.timezone.utc
    berlin = resolve_timezone("Europe/Berlin")
    assert _dt.datetime(2026, 7, 1, tzinfo=berlin).utcoffset() == _dt.timedelta(hours=2)
    assert resolve_timezone("local") is not None


def test_a_key_repeated_in_one_mapping_is_an_error_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("store:\n  ttl: 1h\n  ttl: 2h\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [f"{path}: invalid YAML at line 3, column 3: duplicate key 'ttl'"]


def test_max_message_bytes_takes_a_size_within_64_bytes_to_64MiB() -> None:
    assert (
        config_from_dict({"parsing": {"max_message_bytes": "64KiB"}}).parsing.max_message_bytes
        == 65536
    )
    assert (
        config_from_dict({"parsing": {"max_message_bytes": 2048}}).parsing.max_message_bytes == 2048
    )
    assert _problems({"parsing": {"max_message_bytes": "1GiB"}}) == [
        "parsing.max_message_bytes: expected a size 64..64MiB; got '1GiB'"
    ]


def test_an_unhashable_yaml_key_is_reported_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text("? [a, b]\n: 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "found unhashable key" in info.value.problems[0]


def test_outputs_and_stream_listeners_are_checked_naming_their_keys() -> None:
    problems = _problems(
        {
            "listeners": [
                {"name": "in", "transport": "redis"},
                {"name": "k", "transport": "kafka", "url": "redis://x"},
            ],
            "outputs": [
                {"name": "o", "type": "syslog", "url": "http://x:1"},
                {"name": "o", "type": "redis", "url": "redis://h/0", "spool_max": "lots"},
                {"name": "p", "type": "kafka", "url": "kafka://h:9092", "colour": "red"},
            ],
        }
    )
    assert problems == [
        "listeners[0].url: required for transport redis",
        'listeners[1].url: expected kafka://HOST:PORT[,HOST:PORT...]; got "redis://x"',
        'outputs[0].url: expected tcp://HOST:PORT, tls://HOST:PORT or udp://HOST:PORT; got "http://x:1"',
        'outputs[1].spool_max: expected a size like 64KiB, 512MiB, 2GiB or bytes; got "lots"',
        "outputs[1].name: duplicate of outputs[0]: 'o'",
        "outputs[2].colour: unknown key",
    ]


def test_a_broker_whose_client_is_not_installed_is_a_config_error_naming_the_extra() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['confluent_kafka'] = None\n"
        "from collector.config import config_from_dict, ConfigError\n"
        "try:\n"
        "    config_from_dict({'outputs': [{'name': 'k', 'type': 'kafka', 'url': 'kafka://h:1'}]})\n"
        "except ConfigError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == (
        "outputs[0].type: kafka needs its client library: pip install 'collector[kafka]'"
    )
