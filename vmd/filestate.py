"""File state as the daemon and its workers see it: stat signatures and glob expansion.

The one place file state comes from. Workers record signatures as a run uses files; the store
compares them with the files now. `FileState` is that view as an object, so the store can be
given a fake file system in tests (`DISK` is the real one). Imports only the stdlib: every
worker imports it at start-up.
"""

from __future__ import annotations

import os
from typing import Protocol

# A file's stat signature: (mtime_ns, size, inode, ctime_ns), or None when it does not exist.
Sig = tuple[int, int, int, int] | None


def signature(path: str) -> Sig:
    """The stat signature of `path` (following symlinks), None if it does not exist."""
    try:
        st = os.stat(path)
    except OSError:  # missing, not a folder on the way, unreadable: nothing to compare
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)


class FileState(Protocol):
    """What the store asks of the file system."""

    def signature(self, path: str) -> Sig:
        """The stat signature of `path`, None if it does not exist."""
        ...

    def expand(self, patterns: list[str]) -> tuple[list[str], dict[str, Sig]]:
        """The files absolute glob `patterns` match now, sorted, and every folder walked with
        its signature (see `vmd.globs.expand`)."""
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
        from vmd import globs

        return globs.expand(patterns)

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(path)

    def realpath(self, path: str) -> str:
        return os.path.realpath(path)


DISK = Disk()
