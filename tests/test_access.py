"""Scoped tokens: read and write scopes from files, 401 and 403, auth_token
all-access, token files re-read on reload; check-config names missing files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from collector.cli import main
from collector.config import HttpConfig, TokenConfig, config_from_dict
from collector.reload import reload_from_file
from tests.support import http_request, local_config, running_daemon

READ, WRITE, ADMIN = "read-token-1234", "write-token-5678", "admin-token-0000"


def _token_files(tmp_path: Path) -> tuple[str, str]:
    (tmp_path / "read").write_text(READ + "\n")
    (tmp_path / "write").write_text(WRITE)
    return str(tmp_path / "read"), str(tmp_path / "write")


def _config(tmp_path: Path) -> dict[str, object]:
    read, write = _token_files(tmp_path)
    return {
        "listeners": [],
        "http": {
            "bind": "127.0.0.1:0",
            "auth_token": ADMIN,
            "tokens": [
                {"token_file": read, "scope": "read"},
                {"token_file": write, "scope": "write"},
            ],
        },
    }


async def _status(addr: tuple[str, int], method: str, path: str, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = json.dumps({"message": "hi"}).encode() if method == "POST" else b""
    return (await http_request(addr, method, path, body, headers)).status


async def test_read_tokens_read_write_tokens_post_and_auth_token_does_both(
    tmp_path: Path,
) -> None:
    async with running_daemon(config_from_dict(_config(tmp_path))) as d:
        a = d.http_address
        assert await _status(a, "GET", "/logs", READ) == 200
        assert await _status(a, "GET", "/metrics", READ) == 200
        assert await _status(a, "GET", "/stats", READ) == 200
        assert await _status(a, "POST", "/logs", READ) == 403
        assert await _status(a, "POST", "/logs", WRITE) == 201
        assert await _status(a, "GET", "/logs", WRITE) == 403
        assert await _status(a, "GET", "/metrics", WRITE) == 403
        assert await _status(a, "GET", "/logs", ADMIN) == 200
        assert await _status(a, "POST", "/logs", ADMIN) == 201
        assert await _status(a, "GET", "/logs", "wrong") == 401
        assert await _status(a, "GET", "/logs", None) == 401
        assert await _status(a, "GET", "/health", None) == 200
        answer = await http_request(a, "POST", "/logs", b"{}", {"Authorization": f"Bearer {READ}"})
        assert answer.json() == {
            "error": "authorization: this token's scope is read; POST /logs needs write"
        }


async def test_tokens_work_without_an_auth_token(tmp_path: Path) -> None:
    read, _ = _token_files(tmp_path)
    http = HttpConfig(bind="127.0.0.1:0", tokens=(TokenConfig(read, "read", READ),))
    async with running_daemon(local_config(http=http)) as d:
        assert await _status(d.http_address, "GET", "/logs", READ) == 200
        assert await _status(d.http_address, "GET", "/logs", None) == 401
        assert await _status(d.http_address, "POST", "/logs", READ) == 403


async def test_sighup_rereads_token_files(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    path = tmp_path / "collector.yaml"
    path.write_text(yaml.safe_dump(cfg))
    async with running_daemon(config_from_dict(cfg)) as d:
        d.config_path = str(path)
        (tmp_path / "read").write_text("rotated-read-token\n")
        assert await reload_from_file(d)
        assert await _status(d.http_address, "GET", "/logs", READ) == 401
        assert await _status(d.http_address, "GET", "/logs", "rotated-read-token") == 200


def test_check_config_names_missing_or_empty_token_and_tls_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").write_text("\n")
    cfg = {
        "listeners": [
            {
                "name": "tls",
                "transport": "tcp",
                "bind": "127.0.0.1:6514",
                "tls": {"cert": str(tmp_path / "c.pem"), "key": str(tmp_path / "k.pem")},
            }
        ],
        "http": {
            "tokens": [
                {"token_file": str(tmp_path / "nope"), "scope": "read"},
                {"token_file": str(tmp_path / "empty"), "scope": "write"},
                {"token_file": str(tmp_path / "empty"), "scope": "admin"},
            ]
        },
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["check-config", str(path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        f"listeners[0].tls.cert: cannot read {tmp_path}/c.pem: No such file or directory",
        f"listeners[0].tls.key: cannot read {tmp_path}/k.pem: No such file or directory",
        f"http.tokens[0].token_file: cannot read {tmp_path}/nope: No such file or directory",
        f"http.tokens[1].token_file: {tmp_path}/empty is empty",
        "http.tokens[2].scope: expected one of read, write; got 'admin'",
    ]
