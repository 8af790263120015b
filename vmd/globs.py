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
_CLASS_SPECIAL = frozenset("\\[]^&~|")  # literal inside a class, but not to Python's `re`


class GlobError(ValueError):
    """A pattern that cannot be matched (a class range such as `[z-a]`)."""

    def __init__(self, pattern: str, reason: str) -> None:
        super().__init__(f"invalid glob {pattern!r}: {reason}")
        self.pattern = pattern
        self.reason = reason


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
            start = i + 1 if i < n and part[i] in "!^" else i
            if start < n and part[start] == "]":  # a `]` first is a member, as in fnmatch
                start += 1
            j = part.find("]", start)
            if j == -1:
                out.append(re.escape(c))
                continue
            body = part[i:j]
            i = j + 1
            negate = body[:1] in ("!", "^")
            members = "".join("\\" + m if m in _CLASS_SPECIAL else m for m in body[negate:])
            # A negated class never matches `/`, just as `*` and `?` never do.
            out.append(("[^/" if negate else "[") + members + "]")
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
    try:
        return re.compile(regex + r"\Z", re.DOTALL)
    except re.error as exc:
        raise GlobError(pattern, exc.msg) from None  # its position is in the regex, not here


def matches(pattern: str, path: str) -> bool:
    """Whether absolute `path` is matched by absolute `pattern`."""
    return compile(pattern).match(path) is not None
