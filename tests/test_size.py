"""Size limits of the package: no function over 60 lines, no module over 500 (a longer one holds two concerns
that want splitting, not folding). Lines are counted from `def` to the function's last line, nested ones too."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "w2s"
MAX_FUNCTION, MAX_MODULE = 60, 500


def test_no_function_or_module_is_too_long():
    too_long = []
    for path in sorted(PKG.rglob("*.py")):
        text = path.read_text()
        name = path.relative_to(PKG.parent).as_posix()
        if len(text.splitlines()) > MAX_MODULE:
            too_long.append(f"module {name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION:
                    too_long.append(f"function {name}:{node.lineno} {node.name}: {lines} lines")
    limits = f"over {MAX_FUNCTION} lines a function or {MAX_MODULE} a module"
    assert not too_long, f"{limits}: " + "; ".join(too_long)
