"""What the editor features read from a loader's source text: where `def load` is (the code
lenses' line) and which `watch` glob is under the cursor (hover), with LSP's UTF-16 columns.
"""

from __future__ import annotations

import ast

from lsprotocol import types


def load_line(text: str) -> int:
    """0-based line of `def load` (where the lenses go), else 0."""
    for number, line in enumerate(text.splitlines()):
        if line.startswith(("def load(", "async def load(")):
            return number
    return 0


def watch_glob_at(text: str, line: int, character: int) -> tuple[str, types.Range] | None:
    """The string literal of the module-level `watch` list under the cursor, and its range."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    lines = text.splitlines()
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            named = any(isinstance(t, ast.Name) and t.id == "watch" for t in stmt.targets)
        elif isinstance(stmt, ast.AnnAssign):
            named = isinstance(stmt.target, ast.Name) and stmt.target.id == "watch"
        else:
            continue
        if not named or stmt.value is None:
            continue
        value = stmt.value
        items = value.elts if isinstance(value, (ast.List, ast.Tuple)) else [value]
        for node in items:
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                continue
            if node.end_lineno is None or node.end_col_offset is None:
                continue
            start = (node.lineno - 1, _utf16(lines, node.lineno - 1, node.col_offset))
            end = (node.end_lineno - 1, _utf16(lines, node.end_lineno - 1, node.end_col_offset))
            if start <= (line, character) <= end:
                return node.value, types.Range(
                    start=types.Position(line=start[0], character=start[1]),
                    end=types.Position(line=end[0], character=end[1]),
                )
    return None


def _utf16(lines: list[str], line: int, byte_offset: int) -> int:
    """ast's UTF-8 byte column as LSP's default UTF-16 column."""
    if line >= len(lines):
        return byte_offset
    prefix = lines[line].encode("utf-8")[:byte_offset].decode("utf-8", errors="ignore")
    return len(prefix.encode("utf-16-le")) // 2
