"""Which modules from outside the project a worker has: the ones it reports to the daemon
(what a preloader imports for the next workers) and the preloaded ones it must forget because
a module of the project shadows them. Runs only in worker processes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

# Set in a worker forked from the preloader: the modules it imported beyond the worker's own.
preloaded: frozenset[str] = frozenset()


def new_modules(seen: set[str], is_local: Callable[[str], bool]) -> list[str]:
    """Modules imported since `seen` (which this updates) that are not project code, in import
    order; the loader's own module is project code."""
    new = [name for name in list(sys.modules) if name not in seen]
    seen.update(new)
    out = []
    for name in new:
        if name.startswith("__vmd_loader_"):
            continue
        module = sys.modules.get(name)
        try:
            file = getattr(module, "__file__", None)
            places = [file] if file else list(getattr(module, "__path__", None) or ())
        except Exception:  # lazy or odd objects in sys.modules
            continue
        if not any(isinstance(p, str) and is_local(os.path.abspath(p)) for p in places):
            out.append(name)
    return out


def unshadow(front: list[str]) -> None:
    """Forget preloaded modules that a module in the loader's folder or a root shadows: a
    spawned worker would import the project's own (those folders come first on sys.path)."""
    if not preloaded:
        return
    tops = {name.partition(".")[0] for name in preloaded} & provided(front)
    for name in [n for n in preloaded if n.partition(".")[0] in tops]:
        sys.modules.pop(name, None)


def provided(folders: list[str]) -> set[str]:
    """The top-level module names files and folders in `folders` could provide (`x.py`, `x/`,
    `x.cpython-311-x86_64-linux-gnu.so` all give `x`): what shadows a library of that name."""
    names: set[str] = set()
    for folder in folders:
        try:
            names.update(n.partition(".")[0] for n in os.listdir(folder))
        except OSError:
            continue
    return names
