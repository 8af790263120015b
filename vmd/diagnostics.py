"""Loader errors as LSP diagnostics, aggregated per file across module ids, and published.

One loader used with several queries can fail in several ways at once; a file's diagnostics are
the union of what every module id reports for it, and a success clears only that id's share.
`Publisher` sends `textDocument/publishDiagnostics` for the files whose diagnostics changed,
gathered over a short delay.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vmd import frames
from vmd.errors import VmdError
from vmd.paths import respell

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
    frame = frames.deepest(frames.parse(traceback), lambda file: file == loader)
    return frame[1] if frame is not None else 1


_PUBLISH_DELAY = 0.02  # seconds: diagnostics changes gathered into one publish per file


class Publisher:
    """Publishes each file's diagnostics once for the runs that ended within `_PUBLISH_DELAY`:
    a build's hundreds of failing queries of one loader would otherwise re-send the file's
    growing list once per query, quadratic in their number.

    `spellings`: (real root, root as the client gave it) for roots the client named through a
    symlink: it shows files by that spelling, while what runs (and fails) is known by its real
    path."""

    def __init__(self, notify: Callable[[str, Any], None]) -> None:
        self._notify = notify
        self.spellings: list[tuple[str, str]] = []
        self._set = DiagnosticSet()
        self._unpublished: set[str] = set()  # files whose diagnostics changed, not yet sent
        self._at: asyncio.TimerHandle | None = None

    def update(self, id: str, loader: str, error: VmdError | None) -> None:
        """`id`'s run ended with `error` (None: success): publish what that changed, soon."""
        files = self._set.update(id, loader, error)
        if files and self._at is None:
            self._at = asyncio.get_running_loop().call_later(_PUBLISH_DELAY, self._publish)
        self._unpublished.update(files)

    def flush(self) -> None:
        """Publish what is pending now: the session is ending, and the client may be gone
        before `_PUBLISH_DELAY` is up."""
        if self._at is not None:
            self._at.cancel()
            self._publish()

    def _publish(self) -> None:
        self._at = None
        files, self._unpublished = sorted(self._unpublished), set()
        for file in files:
            diags = [
                {
                    "range": {
                        "start": {"line": line - 1, "character": 0},
                        "end": {"line": line - 1, "character": 10000},
                    },
                    "severity": 1,
                    "source": "vmd",
                    "message": message,
                }
                for line, message in self._set.for_file(file)
            ]
            uri = Path(respell(file, self.spellings)).as_uri()
            self._notify("textDocument/publishDiagnostics", {"uri": uri, "diagnostics": diags})
