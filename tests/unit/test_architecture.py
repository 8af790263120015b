"""The shape of the vmd package: its import graph has no cycle, and no file grows too big.

The graph is read from the source (ast), not by importing: every `import vmd...` or
`from vmd... import` anywhere in a module, including inside functions (lazy imports still make
one module depend on another). Imports under `if TYPE_CHECKING:` are counted separately: they
do not run, but a cycle through them is still two modules that each need the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "vmd"
# About 400 lines: past that, a module holds more than one responsibility (ARCHITECTURE.md).
MAX_LINES = 410


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(name: str, path: Path, known: set[str]) -> tuple[set[str], set[str]]:
    """The vmd modules `name` imports: (at run time, only under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for inner in node.body:
                typing_only.update(ast.walk(inner))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    runtime: set[str] = set()
    typing: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from vmd import x` imports the module vmd.x when there is one, else a name of vmd.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                (typing if node in typing_only else runtime).add(target)
    return runtime, typing - runtime


def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    modules = _modules()
    known = set(modules)
    runtime: dict[str, set[str]] = {}
    typing: dict[str, set[str]] = {}
    for name, path in modules.items():
        runtime[name], typing[name] = _imports(name, path, known)
    return runtime, typing


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph`, as the modules along it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            # A package's __init__ is imported by each of its modules: not an edge back.
            if nxt in path and nxt != path[-1] and not node.startswith(nxt + "."):
                if state.get(nxt) == 1:
                    return [*path[path.index(nxt):], nxt]
            if state.get(nxt) is None:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if state.get(node) is None:
            found = visit(node)
            if found:
                return found
    return None


def test_the_import_graph_has_no_cycle_at_run_time() -> None:
    runtime, _ = _graph()
    assert _cycle(runtime) is None


def test_the_import_graph_has_no_cycle_counting_type_checking_imports() -> None:
    runtime, typing = _graph()
    both = {name: runtime[name] | typing[name] for name in runtime}
    assert _cycle(both) is None


def test_the_graph_is_read_as_it_is() -> None:
    # The checks above would pass on an empty graph: make sure edges are found, lazy and
    # TYPE_CHECKING ones included.
    runtime, typing = _graph()
    assert "vmd.service" in runtime["vmd.server"] or "vmd.service" in typing["vmd.server"]
    assert "vmd.service" in runtime["vmd.server"]  # imported lazily, inside initialize
    assert "vmd.store" in runtime["vmd.service"]
    assert "vmd.filestate" in runtime["vmd.store"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


@pytest.mark.parametrize("name", sorted(_modules()))
def test_no_module_passes_the_size_limit(name: str) -> None:
    lines = len(_modules()[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines: split it by responsibility"
