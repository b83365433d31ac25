"""The repository documents itself: every config key the daemon accepts has a
row in docs/configuration.md, every HTTP route a section in docs/api.md, and
README.md and docs/ link only to files that exist in this repository."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from collector.config import Config, HttpConfig, ListenerConfig, ParsingConfig, StoreConfig
from collector.http import LOG_ROUTE, ROUTES

REPO = Path(__file__).resolve().parent.parent
SECTIONS = {
    "listeners": ListenerConfig,
    "http": HttpConfig,
    "store": StoreConfig,
    "parsing": ParsingConfig,
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
