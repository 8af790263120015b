"""File state as the daemon and its workers see it: stat signatures and glob expansion.

The one place file state comes from. Workers record signatures as a run uses files; the store
compares them with the files now. `FileState` is that view as an object, so the store can be
given a fake file system in tests (`DISK` is the real one). Imports only the stdlib: every
worker imports it at start-up.
"""

from __future__ import annotations

import os
import posixpath
import re
from typing import Protocol

from vmd import globs

# A file's stat signature: (mtime_ns, size, inode, ctime_ns), or None when it does not exist.
Sig = tuple[int, int, int, int] | None


def signature(path: str) -> Sig:
    """The stat signature of `path` (following symlinks), None if it does not exist."""
    try:
        st = os.stat(path)
    except OSError:  # missing, not a folder on the way, unreadable: nothing to compare
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)


def expand(patterns: list[str]) -> tuple[list[str], dict[str, Sig]]:
    """The files (never folders) the patterns match now, sorted, and every folder walked with
    its signature (a folder's mtime changes when an entry is added or removed)."""
    files: set[str] = set()
    walked: dict[str, Sig] = {}
    for pattern in patterns:
        base, rest = globs.split(pattern)
        regex = globs.compile(pattern)
        depth = None if "**" in rest else len(rest) - 1
        _walk(base, regex, depth, files, walked)
    return sorted(files), walked


def _walk(
    folder: str,
    regex: re.Pattern[str],
    depth: int | None,
    files: set[str],
    walked: dict[str, Sig],
) -> None:
    if folder not in walked:
        walked[folder] = signature(folder)
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        path = posixpath.join(folder, entry.name)
        try:
            is_dir = entry.is_dir()  # follows symlinks, like a shell glob
        except OSError:
            continue
        if is_dir:
            if (depth is None or depth > 0) and not entry.is_symlink():
                _walk(path, regex, None if depth is None else depth - 1, files, walked)
        elif regex.match(path):
            files.add(path)


class FileState(Protocol):
    """What the store asks of the file system."""

    def signature(self, path: str) -> Sig:
        """The stat signature of `path`, None if it does not exist."""
        ...

    def expand(self, patterns: list[str]) -> tuple[list[str], dict[str, Sig]]:
        """The files absolute glob `patterns` match now, sorted, and every folder walked with
        its signature (see `expand`)."""
        ...

    def is_dir(self, path: str) -> bool:
        """Whether `path` is an existing folder."""
        ...

    def realpath(self, path: str) -> str:
        """`path` with symlinks resolved."""
        ...


class Disk:
    """The real file system."""

    def signature(self, path: str) -> Sig:
        return signature(path)

    def expand(self, patterns: list[str]) -> tuple[list[str], dict[str, Sig]]:
        return expand(patterns)

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(path)

    def realpath(self, path: str) -> str:
        return os.path.realpath(path)


DISK = Disk()
