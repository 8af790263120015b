"""Module ids: strict parsing and confinement, checked before any loader code runs.

A loader executes only when its real path (symlinks resolved) lies inside a workspace root and
matches the include globs. Everything else is refused here with a `Refused` error.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from urllib.parse import parse_qsl

from vmd import globs
from vmd.errors import Refused
from vmd.paths import is_under


@dataclass(frozen=True)
class ModuleId:
    """A parsed, confined module id."""

    id: str
    path: str  # the loader path as the client gave it
    real: str  # the loader's real path: what runs
    query: dict[str, str]


def parse_id(
    id: str, roots: list[str], include: list[str], confined: dict[str, str] | None = None
) -> ModuleId:
    """Parse `id` and check it names a loader vmd may run.

    `roots` must already be real (symlink-free) absolute paths. `confined` (loader path -> real
    path) keeps what was checked for ids checked together: a build's hundreds of queries of one
    loader resolve its symlinks once, not once each.

    Raises:
        Refused: the id is malformed, outside every root, not included, or not a file.
    """

    def refuse(why: str) -> Refused:
        return Refused(f"refused module id {id!r}: {why}", id=id, file=path or id, line=1)

    path = ""
    if not isinstance(id, str) or not id:
        raise Refused("module id must be a non-empty string", id=str(id), file=str(id))
    if "\x00" in id:
        raise refuse("it contains a NUL byte")
    path, _, query_string = id.partition("?")
    if "#" in id:
        raise refuse("'#' is not allowed in module ids")
    if not posixpath.isabs(path):
        raise refuse("module ids must be absolute paths (optionally followed by ?query)")
    # normpath keeps exactly two leading slashes (POSIX leaves their meaning open): refuse them.
    dotted = "/../" in path + "/" or "/./" in path + "/"
    if posixpath.normpath(path) != path or path.startswith("//") or dotted:
        raise refuse("the path must be normalised (no '.', '..' or '//' segments)")
    real = confined.get(path) if confined is not None else None
    if real is None:
        real = os.path.realpath(path)
        root = next((r for r in roots if is_under(real, r)), None)
        if root is None:
            raise refuse(f"{real} is outside the workspace root ({', '.join(roots) or 'none set'})")
        patterns = [globs.absolute(p, root) for p in include]
        if not any(globs.matches(p, real) for p in patterns):
            raise refuse(f"it does not match the include globs {include}")
        if not os.path.isfile(real):
            raise refuse(f"{path} does not exist or is not a file")
        if confined is not None:
            confined[path] = real
    try:
        pairs = parse_qsl(query_string, keep_blank_values=True, strict_parsing=False)
    except ValueError as exc:
        raise refuse(f"bad query string: {exc}") from None
    return ModuleId(id=id, path=path, real=real, query=dict(pairs))

