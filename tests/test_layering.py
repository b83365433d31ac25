"""The house rules on imports (README.md, Layout), read with `ast`: parsing,
framing, store and query import no I/O or event loop and read no clock;
listeners hand batches to a sink and never import the store or HTTP; and no
collector modules import each other in a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PURE = [
    "times",
    "record",
    "parse",
    "rfc5424",
    "rfc3164",
    "jsonlines",
    "framing",
    "store",
    "shard",
    "shardquery",
    "sealing",
    "memo",
    "textheap",
    "block",
    "stats",
    "query",
    "search",
    "matching",
    "wordfilter",
    "blockcache",
    "blockrun",
    "terminal",
]
FORBIDDEN_MODULES = {"asyncio", "socket", "selectors", "logging", "time", "os", "subprocess"}
FORBIDDEN_CALLS = {"now", "utcnow", "today", "time", "time_ns", "monotonic", "perf_counter"}
PACKAGE = Path(__file__).resolve().parent.parent / "collector"
# Listeners know the sink and the settings, not where records go.
LISTENERS_MUST_NOT_IMPORT = {"store", "http", "tail", "daemon", "reload", "persist"}


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
    assert {"times", "record", "parse", "framing", "store", "query"} <= set(_modules())


def _collector_imports(module: str) -> set[str]:
    """The collector modules `module` imports, anywhere in the file: at the
    top, inside functions, under `if TYPE_CHECKING:` (a cycle there is still
    two modules that each need the other)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    known = {p.stem for p in PACKAGE.glob("*.py")}
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "collector":
                names = [f"collector.{alias.name}" for alias in node.names]
            else:
                names = [node.module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "collector" and len(parts) > 1 and parts[1] in known:
                found.add(parts[1])
    found.discard(module)
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the collector modules it imports."""
    return {p.stem: _collector_imports(p.stem) for p in sorted(PACKAGE.glob("*.py"))}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each group of modules that import each other (Tarjan's strongly
    connected components of more than one module), as one cycle through
    them: ["persist", "wal", "persist"]."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_through(graph, group) for group in sorted(groups)]


def _cycle_through(graph: dict[str, set[str]], group: list[str]) -> list[str]:
    """A shortest import path from the group's first module back to itself."""
    start, members = group[0], set(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    return [*paths[v], start]
                if w not in paths:
                    paths[w] = [*paths[v], w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {group}")  # Tarjan said there is one


def test_no_collector_modules_import_each_other_in_a_cycle() -> None:
    cycles = [" -> ".join(c) for c in import_cycles(import_graph())]
    assert cycles == [], "import cycles: " + "; ".join(cycles)


@pytest.mark.parametrize("module", ["listeners", "ingest"])
def test_listeners_import_neither_the_store_nor_http(module: str) -> None:
    assert _collector_imports(module) & LISTENERS_MUST_NOT_IMPORT == set()


def test_the_cycle_check_finds_a_cycle_and_names_the_way_round() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"d"}}
    assert import_cycles(graph) == [["a", "b", "c", "a"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_reader_sees_every_spelling_of_an_import() -> None:
    graph = import_graph()
    assert "store" in graph["routes"]  # from collector.store import ...
    assert "systemd" in graph["daemon"]  # from collector import systemd
    assert "daemon" in graph["cli"]  # inside a function
