"""Watch-glob matching, shared by the worker (to fill `ctx.watched_files`) and the daemon (to
decide which file events concern which module), so both agree exactly. Pure: walking the file
system for a glob is `vmd.filestate.expand`.

Patterns are `/`-separated: `*` and `?` never cross a `/`, `[...]` is a character class and a
whole `**` component matches zero or more folders. Relative patterns are joined to the loader's
folder and normalised (`..` allowed), giving absolute patterns.
"""

from __future__ import annotations

import os
import posixpath
import re
from functools import lru_cache

_MAGIC = re.compile(r"[*?\[]")


def absolute(pattern: str, folder: str) -> str:
    """Join a loader's glob to its folder and normalise it (`a/../b` -> `b`)."""
    pattern = pattern.replace(os.sep, "/")
    joined = pattern if posixpath.isabs(pattern) else posixpath.join(folder, pattern)
    return posixpath.normpath(joined)


def split(pattern: str) -> tuple[str, list[str]]:
    """Split an absolute pattern into its literal base folder and the glob components after it."""
    parts = pattern.split("/")
    for i, part in enumerate(parts):
        if _MAGIC.search(part):
            return "/".join(parts[:i]) or "/", parts[i:]
    return posixpath.dirname(pattern) or "/", [parts[-1]]


def has_magic(pattern: str) -> bool:
    """Whether `pattern` has wildcards (else it names one path)."""
    return _MAGIC.search(pattern) is not None


def is_recursive(pattern: str) -> bool:
    """Whether matching needs more than the base folder's direct entries."""
    return len(split(pattern)[1]) > 1


def _translate_part(part: str) -> str:
    out: list[str] = []
    i, n = 0, len(part)
    while i < n:
        c = part[i]
        i += 1
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = part.find("]", i + 1 if i < n and part[i] in "!^" else i)
            if j == -1:
                out.append(re.escape(c))
                continue
            body = part[i:j]
            i = j + 1
            if body[:1] in ("!", "^"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
        else:
            out.append(re.escape(c))
    return "".join(out)


@lru_cache(maxsize=1024)
def compile(pattern: str) -> re.Pattern[str]:
    """A regex matching the absolute paths `pattern` matches."""
    parts = pattern.split("/")
    regex = ""
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            regex += ".*" if last else "(?:[^/]+/)*"
        else:
            regex += _translate_part(part) + ("" if last else "/")
    return re.compile(regex + r"\Z", re.DOTALL)


def matches(pattern: str, path: str) -> bool:
    """Whether absolute `path` is matched by absolute `pattern`."""
    return compile(pattern).match(path) is not None
