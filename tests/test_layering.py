"""The import graph of ``connector``: no cycles, and the layers the README describes.

An AST walk (no import is executed): every ``import``/``from ... import`` anywhere in a
module counts, also inside functions, except under ``if TYPE_CHECKING:``.
``from pkg import sub`` counts as importing the submodule ``pkg.sub`` only.

The layers:
- ``connector.lapor`` (the wire), ``connector.store`` (the database) and
  ``connector.tracker`` (the trackers) never import ``connector.sync``, ``cli``,
  ``service``, ``runtime`` or ``daemon``;
- the sync path (``connector.sync``, ``store``, ``lapor``, ``tracker``) never imports the
  sandbox (``connector.sandbox``): only the wiring (``runtime``, ``service``, ``cli``)
  starts one;
- ``connector.sync.core`` (and ``sync.clock``) does no I/O: nothing it imports, directly or
  not, is SQLAlchemy, httpx, aiohttp, the store or the LAPOR! client;
- no cycle between packages either (``connector.store`` ↔ ``connector.tracker`` …), each
  top-level module counting as a unit of its own;
- which kind of tracker is at hand (``TrackerPort.inline``) is asked only where the sink is
  picked (``runtime.py``, ``tracker/``): the shells call the sink.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import connector

ROOT = Path(connector.__file__).parent


def _modules() -> dict[str, Path]:
    mods = {}
    for path in ROOT.rglob("*.py"):
        if "migrations" in path.relative_to(ROOT).parts:
            continue
        parts = ["connector", *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = path
    return mods


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """Every module name this module imports (inside ``connector`` or not)."""
    tree = ast.parse(path.read_text("utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom) and _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join([*package, base] if base else package)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in mods else base)
    return found


def _graph() -> dict[str, set[str]]:
    """Module → the ``connector`` modules it imports, and ``ext:`` + top-level outside ones."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        edges: set[str] = set()
        for target in _imports(name, path, mods):
            if not target.startswith("connector"):
                edges.add("ext:" + target.split(".")[0])
                continue
            while target not in mods:  # `import connector.x.y.name`: its module
                target = target.rpartition(".")[0]
            edges.add(target)
        edges.discard(name)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for v in sorted(graph):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return found


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for w in graph.get(todo.pop(), ()):
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


def test_the_walk_sees_the_imports() -> None:
    graph = _graph()
    assert "connector.store.base" in graph["connector.store"]
    assert "connector.service" in graph["connector.cli"]  # a function-level import
    assert "ext:sqlalchemy" in graph["connector.store.base"]


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_one() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_wire_store_and_trackers_never_import_the_layers_above() -> None:
    graph = _graph()
    above = (
        "connector.sync",
        "connector.cli",
        "connector.service",
        "connector.runtime",
        "connector.daemon",
    )
    wrong = {
        (module, target)
        for module, targets in graph.items()
        if module.startswith(("connector.lapor", "connector.store", "connector.tracker"))
        for target in targets
        if target.startswith(above)
    }
    assert wrong == set()


def test_the_core_does_no_io() -> None:
    graph = _graph()
    io = (
        "ext:sqlalchemy",
        "ext:httpx",
        "ext:aiohttp",
        "ext:httpx_aiohttp",
        "ext:alembic",
        "ext:psycopg",
        "ext:sqlite3",
        "connector.store",
        "connector.lapor.client",
        "connector.lapor.transport",
        "connector.tracker.redmine_api",
    )
    for core in ("connector.sync.core", "connector.sync.clock"):
        wrong = {t for t in _reachable(graph, core) if t.startswith(io)}
        assert wrong == set(), core


def test_the_sync_path_never_imports_the_sandbox() -> None:
    graph = _graph()
    path = ("connector.sync", "connector.store", "connector.lapor", "connector.tracker")
    wrong = {
        (module, target)
        for module, targets in graph.items()
        if module.startswith(path)
        for target in targets
        if target.startswith("connector.sandbox")
    }
    assert wrong == set()
    assert "connector.sandbox.embedded" in graph["connector.runtime"]


def _package(module: str) -> str:
    """``connector.store.intents`` → ``connector.store``; a top-level module is its own."""
    parts = module.split(".")
    if len(parts) > 1 and (ROOT / parts[1]).is_dir():
        return ".".join(parts[:2])
    return module


def _package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        edges = packages.setdefault(_package(module), set())
        edges.update(_package(t) for t in targets if t.startswith("connector"))
    for name, edges in packages.items():
        edges.discard(name)
    return packages


def test_no_package_level_import_cycles() -> None:
    packages = _package_graph(_graph())
    assert "connector.tracker" in packages["connector.sync"]  # the walk sees packages
    assert _cycles(packages) == []


def test_the_store_never_imports_the_trackers() -> None:
    graph = _graph()
    wrong = {
        (module, target)
        for module, targets in graph.items()
        if module.startswith("connector.store")
        for target in targets
        if target.startswith("connector.tracker")
    }
    assert wrong == set()


def test_the_package_cycle_finder_finds_one() -> None:
    graph = {
        "connector.store.intents": {"connector.tracker.port"},
        "connector.tracker.port": {"connector.domain"},
        "connector.tracker.builtin": {"connector.store.schema"},
        "connector.store.schema": set(),
        "connector.domain": set(),
    }
    assert _cycles(_package_graph(graph)) == [["connector.store", "connector.tracker"]]


def _asks_the_kind(path: Path) -> list[int]:
    return [
        n
        for n, line in enumerate(path.read_text("utf-8").splitlines(), 1)
        if re.search(r"\.inline\b|isinstance\([^)]*BuiltinTracker", line)
    ]


def test_only_the_sink_knows_which_kind_of_tracker_it_is() -> None:
    """``.inline`` (in the pull's transaction or not), or an ``isinstance`` test for the
    built-in tracker, is read only under ``tracker/``, where the sink is picked."""
    wrong = {
        f"{path.relative_to(ROOT)}:{n}"
        for path in ROOT.rglob("*.py")
        if "tracker" not in path.relative_to(ROOT).parts
        for n in _asks_the_kind(path)
    }
    assert wrong == set()


def test_the_kind_finder_finds_one(tmp_path: Path) -> None:
    src = tmp_path / "shell.py"
    src.write_text(
        "x = 1\nif rt.tracker.inline is None:\n    pass\ny = inline_ok\n"
        "z = isinstance(t, BuiltinTracker)\n"
    )
    assert _asks_the_kind(src) == [2, 5]
