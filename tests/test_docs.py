"""The repository documents itself, and its examples work as written: every
config key has a row in docs/configuration.md, every HTTP route a section in
docs/api.md, README.md and docs/ link only to files in this repository, and
the README's shell and Python examples run against a daemon on ephemeral ports."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from collector.config import (
    Config,
    HttpConfig,
    ListenerConfig,
    OutputConfig,
    ParsingConfig,
    StoreConfig,
)
from collector.routes import LOG_ROUTE, ROUTES

REPO = Path(__file__).resolve().parent.parent
SECTIONS = {
    "listeners": ListenerConfig,
    "http": HttpConfig,
    "store": StoreConfig,
    "parsing": ParsingConfig,
    "outputs": OutputConfig,
}


def _section(text: str, heading: str) -> str:
    """The text under `## heading` up to the next `## `."""
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_every_config_key_has_a_row_in_the_configuration_reference(section: str) -> None:
    text = _section((REPO / "docs/configuration.md").read_text(), f"`{section}`")
    rows = set(re.findall(r"^\| `(\w+)` \|", text, flags=re.MULTILINE))
    keys = {f.name for f in dataclasses.fields(SECTIONS[section])}
    assert keys == rows


def test_the_configuration_reference_covers_every_section_of_the_config() -> None:
    assert {f.name for f in dataclasses.fields(Config)} == set(SECTIONS)


def test_every_http_route_and_method_has_a_section_in_the_api_reference() -> None:
    text = (REPO / "docs/api.md").read_text()
    routes = [(method, path) for path, methods in ROUTES.items() for method in methods]
    routes.append(("GET", LOG_ROUTE))
    missing = [f"{m} {p}" for m, p in routes if f"\n## {m} {p}\n" not in text]
    assert missing == []


@pytest.mark.parametrize(
    "page", ["README.md", *sorted(str(p.relative_to(REPO)) for p in REPO.glob("docs/*.md"))]
)
def test_links_in_the_docs_lead_to_files_in_this_repository(page: str) -> None:
    path = REPO / page
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text())
    local = [t for t in targets if "://" not in t]
    assert [t for t in local if not (path.parent / t).exists()] == []


def _readme_python_example() -> str:
    section = _section((REPO / "README.md").read_text(), "Sending logs")
    match = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert match is not None
    return match.group(1)


@pytest.mark.parametrize("transport", ["tcp", "udp", "unix"])
async def test_the_readme_sysloghandler_example_runs_as_written_and_keeps_the_traceback(
    transport: str, tmp_path: Path
) -> None:
    from collector.config import ListenerConfig
    from tests.support import get_json, listener_addr, local_config, running_daemon, wait_for

    sock = tmp_path / "log.sock"
    config = local_config(
        ListenerConfig(name="udp", transport="udp", bind="127.0.0.1:0"),
        ListenerConfig(name="tcp", transport="tcp", bind="127.0.0.1:0"),
        ListenerConfig(name="unix", transport="unix", bind=str(sock)),
    )
    code = _readme_python_example()
    handlers = re.findall(r"^(?:# )?(handler = .*)$", code, flags=re.MULTILINE)
    assert len(handlers) == 3  # TCP, UDP, unix, in that order
    chosen = handlers[["tcp", "udp", "unix"].index(transport)]
    async with running_daemon(config) as d:
        port = 0 if transport == "unix" else listener_addr(d, transport)[1]
        # The example as written, with the chosen handler line active and the
        # default port and socket path pointed at this test's daemon.
        lines = [ln for ln in code.splitlines() if not re.match(r"^#? ?handler = ", ln)]
        at = next(i for i, ln in enumerate(lines) if ln.startswith("handler.setFormatter"))
        lines.insert(at, chosen)
        script = "\n".join(lines).replace("5514", str(port))
        script = script.replace("/run/collector/log.sock", str(sock))
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script)
        assert await asyncio.wait_for(proc.wait(), 30) == 0

        async def both() -> list[dict[str, object]] | None:
            logs = (await get_json(d, "/logs?service=app&limit=10"))["logs"]
            return logs if len(logs) >= 2 else None

        started, failed = await wait_for(both)
    assert started["message"] == "started"
    assert started["level"] == "info"
    assert failed["level"] == "err"
    assert str(failed["message"]).startswith("request failed\nTraceback (most recent call last):")
    assert str(failed["message"]).endswith("ZeroDivisionError: division by zero")
    assert failed["procid"] is not None


def _readme_shell_lines(*headings: str) -> list[str]:
    """The commands of the ```sh blocks under these README headings, one per
    entry (backslash continuations joined, comment lines dropped)."""
    readme = (REPO / "README.md").read_text()
    lines: list[str] = []
    for heading in headings:
        for block in re.findall(r"```sh\n(.*?)```", _section(readme, heading), flags=re.DOTALL):
            for line in block.replace("\\\n", " ").splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    lines.append(line)
    return lines


@pytest.mark.skipif(
    not all(shutil.which(t) for t in ("logger", "curl", "jq", "bash")),
    reason="needs util-linux logger, curl, jq and bash",
)
async def test_the_readme_shell_examples_run_as_written_against_a_daemon() -> None:
    from tests.support import get_json, listener_addr, local_config, running_daemon, wait_for

    commands = _readme_shell_lines("A 60-second tour", "Sending logs", "Asking questions")
    async with running_daemon(local_config()) as d:
        udp, tcp, json_tcp = (listener_addr(d, n)[1] for n in ("udp", "tcp", "json"))
        http = d.http_address[1]
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
            "COLLECTOR_URL": f"http://127.0.0.1:{http}",
        }
        ran = []
        for cmd in commands:
            live = "tail" in cmd.split("#")[0] or re.search(r"\s(-f|--follow)\b", cmd.split("#")[0])
            if re.search(r"<[a-z_ ]+>", cmd) or live:
                continue  # placeholders to fill in, or a live stream that never ends
            # The default ports, pointed at this daemon's ephemeral ones.
            line = cmd.replace("9514", str(http)).replace("/5515", f"/{json_tcp}")
            line = line.replace("5514", str(tcp if " -T" in line else udp))
            proc = await asyncio.create_subprocess_exec(
                "bash", "-c", line, env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await asyncio.wait_for(proc.communicate(), 30)
            assert proc.returncode == 0, (cmd, out, err)
            ran.append(cmd)
        assert len(ran) >= 12

        async def arrived() -> dict[str, dict[str, object]] | None:
            logs = (await get_json(d, "/logs?limit=1000"))["logs"]
            by_message = {str(r["message"]): r for r in logs}
            wanted = [
                "hello over UDP", "hello over TCP", "slow request", "over UDP",
                "over TCP, octet counted", "RFC 3164 over TCP", "v42 rolled out",
            ]  # fmt: skip
            return by_message if all(w in by_message for w in wanted) else None

        found = await wait_for(arrived)
    assert found["hello over TCP"]["service"] == "sshd"
    assert found["slow request"]["service"] == "api"
    assert found["slow request"]["level"] == "warning"
    assert found["RFC 3164 over TCP"]["service"] == "cron"
    assert found["v42 rolled out"]["service"] == "deploy"
