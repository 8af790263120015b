"""Which modules a loader file imports, read from its source without running it: what the
preloader can import before the loader's first run.
"""

from __future__ import annotations

import ast
import sys

from vmd.workers.modules import provided


def top_level_imports(path: str, front: list[str]) -> list[str]:
    """The absolute imports a loader file makes outside functions and classes, minus the ones
    a module in `front` (its folder, the roots: first on the worker's sys.path) provides."""
    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read(), path)
    except (OSError, SyntaxError, ValueError):
        return []
    names: list[str] = []
    todo: list[ast.stmt] = list(tree.body)
    while todo:
        node = todo.pop(0)
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(node, field, ()):
                    todo.extend(child.body if isinstance(child, ast.ExceptHandler) else [child])
    local = provided(front)
    return [n for n in dict.fromkeys(names) if n.partition(".")[0] not in local]


def only_standard(names: list[str]) -> bool:
    """Whether every module in `names` is the standard library's or vmd's: what any worker can
    import at once, with no library to wait for."""
    return all(n.partition(".")[0] in _AT_HAND for n in names)


_AT_HAND = frozenset(sys.stdlib_module_names) | {"vmd"}
