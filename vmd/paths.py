"""Path questions asked all over the daemon, answered once.

Imports only the stdlib: workers import it at start-up.
"""

from __future__ import annotations

import os


def is_under(path: str, folder: str, sep: str = "/") -> bool:
    """Whether `path` is `folder` or inside it (both absolute and normalised; no symlinks are
    resolved here). `sep`: the separator the paths use (`os.sep` for native paths)."""
    return path == folder or path.startswith(folder.rstrip(sep) + sep)


def relative_to_root(path: str, roots: list[str]) -> str:
    """`path` relative to the first root it is inside, else `path` as it is."""
    for root in roots:
        if path != root and is_under(path, root):
            return path[len(root.rstrip("/")) + 1 :]
    return path


def respell(path: str, spellings: list[tuple[str, str]]) -> str:
    """`path` under the first `(real, given)` root it is inside, spelled with `given`."""
    for real, given in spellings:
        if is_under(path, real):
            return given.rstrip("/") + path[len(real.rstrip("/")) :]
    return path


def native_is_under(path: str, folder: str) -> bool:
    """`is_under` for native paths (`os.sep`)."""
    return is_under(path, folder, os.sep)
