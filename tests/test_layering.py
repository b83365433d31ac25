"""The house rule that keeps the data path pure: parsing, framing, store and
query import no I/O or event loop and read no clock (DESIGN.md rule 1)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PURE = [
    "record",
    "parse",
    "rfc5424",
    "rfc3164",
    "jsonlines",
    "framing",
    "store",
    "shard",
    "textheap",
    "block",
    "stats",
    "query",
]
FORBIDDEN_MODULES = {"asyncio", "socket", "selectors", "logging", "time", "os", "subprocess"}
FORBIDDEN_CALLS = {"now", "utcnow", "today", "time", "time_ns", "monotonic", "perf_counter"}
PACKAGE = Path(__file__).resolve().parent.parent / "collector"


def _modules() -> list[str]:
    return [m for m in PURE if (PACKAGE / f"{m}.py").exists()]


@pytest.mark.parametrize("module", _modules())
def test_pure_module_imports_no_io_and_reads_no_clock(module: str) -> None:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name.split(".")[0] not in FORBIDDEN_MODULES, (module, alias.name)
        elif isinstance(node, ast.ImportFrom):
            assert (node.module or "").split(".")[0] not in FORBIDDEN_MODULES, (module, node.module)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            assert node.func.attr not in FORBIDDEN_CALLS, (module, ast.unparse(node))


def test_the_layering_check_sees_the_core_modules() -> None:
    assert {"record", "parse", "framing", "store", "query"} <= set(_modules())
