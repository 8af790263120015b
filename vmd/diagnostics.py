"""Loader errors as LSP diagnostics, aggregated per file across module ids.

One loader used with several queries can fail in several ways at once; a file's diagnostics are
the union of what every module id reports for it, and a success clears only that id's share.
"""

from __future__ import annotations

import re

from vmd.errors import VmdError

_FRAME = re.compile(r'File "([^"]+)", line (\d+)')

# (line 1-based, message) per file, per module id
Entries = dict[str, list[tuple[int, str]]]


class DiagnosticSet:
    """Which module ids report which problems on which files."""

    def __init__(self) -> None:
        self._by_id: dict[str, Entries] = {}

    def update(self, id: str, loader: str, error: VmdError | None) -> list[str]:
        """Record `id`'s current error (None: success); return the files to re-publish."""
        before = set(self._by_id.get(id, {}))
        entries: Entries = {}
        if error is not None:
            text = f"{error.message}" + (f" ({id})" if "?" in id else "")
            entries.setdefault(error.file, []).append((error.line, text))
            if error.file != loader:
                line = _loader_line(error.traceback, loader)
                entries.setdefault(loader, []).append(
                    (line, f"{text} (raised in {error.file}:{error.line})")
                )
        if entries:
            self._by_id[id] = entries
        else:
            self._by_id.pop(id, None)
        return sorted(before | set(entries))

    def for_file(self, file: str) -> list[tuple[int, str]]:
        """Every (line, message) currently reported on `file`."""
        out: list[tuple[int, str]] = []
        for entries in self._by_id.values():
            out.extend(entries.get(file, ()))
        return sorted(set(out))


def _loader_line(traceback: str, loader: str) -> int:
    line = 1
    for file, number in _FRAME.findall(traceback):
        if file == loader:
            line = int(number)
    return line
