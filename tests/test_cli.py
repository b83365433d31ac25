"""CLI: check-config exit codes and messages, --version, --help."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from collector import __version__, parse
from collector.cli import main
from collector.netio import DETAIL as NETIO_DETAIL
from collector.parse import IMPLEMENTATION_DETAIL
from collector.query import RENDER_DETAIL

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "collector.yaml"


def test_check_config_on_the_example_prints_ok_and_exits_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check-config", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out == "ok\n"


def test_check_config_prints_one_line_per_problem_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text('store:\n  ttl: "soon"\n  fsync: maybe\nbogus: 1\n')
    assert main(["check-config", str(bad)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "bogus: unknown key",
        'store.ttl: expected a duration like 90s, 15m, 1h; got "soon"',
        "store.fsync: expected one of never, batch, always; got 'maybe'",
    ]


def test_check_config_on_a_missing_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_run_with_a_bad_config_exits_2_before_binding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("http: {bind: nowhere}\n")
    assert main(["run", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "http.bind" in err
    assert len(err.strip().splitlines()) == 1


def test_version_and_help_via_python_dash_m() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "collector", "--version"], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0
    assert out.stdout.strip() == (
        f"collector {__version__}, parser {IMPLEMENTATION_DETAIL}, "
        f"datagrams {NETIO_DETAIL}, pages {RENDER_DETAIL}"
    )
    helped = subprocess.run(
        [sys.executable, "-m", "collector", "--help"], capture_output=True, text=True, timeout=30
    )
    assert helped.returncode == 0
    assert "check-config" in helped.stdout
    assert "run" in helped.stdout


def test_version_says_pure_when_collector_pure_is_set() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "collector", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "COLLECTOR_PURE": "1"},
    )
    assert out.returncode == 0
    assert out.stdout.strip().endswith(
        "parser pure Python (native module: COLLECTOR_PURE is set), "
        "datagrams recvfrom (pure Python: native module: COLLECTOR_PURE is set), "
        "pages pure Python (native module: COLLECTOR_PURE is set)"
    )


def test_without_the_native_module_version_says_it_was_not_built() -> None:
    # As after an install where the C build failed: the module cannot be found.
    code = (
        "import sys, importlib.abc\n"
        "class NoNative(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'collector._native':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, NoNative())\n"
        "from collector.cli import main\n"
        "main(['--version'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "COLLECTOR_PURE"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, env=env
    )
    assert out.returncode == 0, out.stderr
    # The subprocess runs without COLLECTOR_PURE: _netio loads if it was built.
    built = importlib.util.find_spec("collector._netio") is not None
    netio = "recvmmsg (C)" if built else "recvfrom (pure Python: native module not built)"
    rendered = importlib.util.find_spec("collector._render") is not None
    pages = "native (C)" if rendered else "pure Python (native module not built)"
    assert out.stdout.strip() == (
        f"collector {__version__}, parser pure Python (native module not built), "
        f"datagrams {netio}, pages {pages}"
    )


def test_without_the_datagram_module_version_says_datagrams_are_read_with_recvfrom() -> None:
    # As after an install where _netio's build failed: the module cannot be found.
    code = (
        "import sys, importlib.abc\n"
        "class NoNetio(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'collector._netio':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, NoNetio())\n"
        "from collector.cli import main\n"
        "main(['--version'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "COLLECTOR_PURE"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, env=env
    )
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip()
    assert line.startswith(f"collector {__version__}, parser ")
    assert ", datagrams recvfrom (pure Python: native module not built), pages " in line


def test_with_a_compiler_at_hand_the_native_parser_is_built_and_loaded() -> None:
    if os.environ.get("COLLECTOR_PURE", "") not in ("", "0"):
        assert not parse.NATIVE
        assert parse.IMPLEMENTATION == "pure"
        assert "COLLECTOR_PURE" in parse.IMPLEMENTATION_DETAIL
        return
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        pytest.skip("no C compiler: the pure path is the expected one")
    assert parse.NATIVE, parse.IMPLEMENTATION_DETAIL
    assert parse.IMPLEMENTATION == "native"
    assert IMPLEMENTATION_DETAIL.startswith("native")


def test_no_command_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


def test_check_config_catches_a_listener_and_http_on_one_address(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "c.yaml"
    conf.write_text(
        "listeners: [{name: t, transport: tcp, bind: '127.0.0.1:19514'}]\n"
        "http: {bind: '127.0.0.1:19514'}\n"
    )
    assert main(["check-config", str(conf)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "http.bind: 127.0.0.1:19514 is already used by listeners[0] (tcp 127.0.0.1:19514)"
    ]


def test_run_on_an_address_in_use_says_why_once(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        conf = tmp_path / "c.yaml"
        conf.write_text(
            f"listeners: [{{name: t, transport: tcp, bind: '127.0.0.1:{port}'}}]\n"
            "http: {bind: '127.0.0.1:0'}\n"
        )
        out = subprocess.run(
            [sys.executable, "-m", "collector", "run", "--config", str(conf)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == (
        f"collector: listener t: cannot bind tcp 127.0.0.1:{port}: Address already in use"
    )


def test_make_run_persists_into_a_local_ignored_directory(tmp_path: Path) -> None:
    from collector.config import Config, load_config

    repo = EXAMPLE.parent.parent
    run_dir = tmp_path / "run"
    made = subprocess.run(
        ["make", "-s", "-C", str(repo), f"RUN_DIR={run_dir}", f"{run_dir}/collector.yaml"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    config = load_config(run_dir / "collector.yaml")
    assert config.store.persist_dir == f"{run_dir}/data"
    # Everything else is the built-in default: `make run` stays zero-config.
    assert config.listeners == Config().listeners
    assert config.http == Config().http
    assert ".collector/" in (repo / ".gitignore").read_text().splitlines()
