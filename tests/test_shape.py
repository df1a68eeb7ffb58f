"""The shape of ``connector``: no function longer than ``MAX_LINES``.

A function is measured from its ``def`` line to its last line (decorators not counted),
nested ones on their own as well as inside their parent. The Alembic migrations under
``connector/store/migrations/`` are declarative tables, written once and never read as
code: they are not measured. There is no exemption list: split a long function instead.
"""

from __future__ import annotations

import ast
from pathlib import Path

import connector

ROOT = Path(connector.__file__).parent
MAX_LINES = 80


def _long_functions(path: Path, limit: int = MAX_LINES) -> list[tuple[str, int]]:
    """``(name, lines)`` of each function in ``path`` longer than ``limit`` lines."""
    tree = ast.parse(path.read_text("utf-8"))
    return [
        (node.name, n)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (n := (node.end_lineno or node.lineno) - node.lineno + 1) > limit
    ]


def test_no_function_is_longer_than_80_lines() -> None:
    migrations = ROOT / "store" / "migrations"
    wrong = sorted(
        f"{path.relative_to(ROOT.parent)}:{name} ({n} lines)"
        for path in ROOT.rglob("*.py")
        if not path.is_relative_to(migrations)
        for name, n in _long_functions(path)
    )
    assert wrong == []


def test_the_length_finder_finds_one(tmp_path: Path) -> None:
    def body(lines: int, indent: str = "    ") -> str:
        return "".join(f"{indent}x{i} = {i}\n" for i in range(lines))

    src = tmp_path / "long.py"
    src.write_text(
        "def short():\n    return 1\n\n\n"
        f"async def long():\n{body(80)}\n\n"  # the def line and 80 more: 81
        f"class C:\n    def exactly_80(self):\n{body(79, '        ')}"
    )
    assert _long_functions(src) == [("long", 81)]
