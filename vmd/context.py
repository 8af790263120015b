"""The `ctx` object a loader's `watch`, `setup` and `load` receive.

It is a plain value object: the worker fills it in before each run and wires `reload` to the
daemon, so loaders can be unit-tested by constructing a Context by hand. Written without
dataclasses because every worker and the daemon import it at start-up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

EventType = Literal["add", "change", "unlink"]


class Event:
    """One change that triggered a run: `type` is "add", "change" or "unlink"; `path` is
    relative to the loader's folder and `/`-separated, like `Context.watched_files`."""

    __slots__ = ("type", "path")

    def __init__(self, type: EventType, path: str) -> None:
        self.type = type
        self.path = path

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and (self.type, self.path) == (other.type, other.path)

    def __hash__(self) -> int:
        return hash((self.type, self.path))

    def __repr__(self) -> str:
        return f"Event(type={self.type!r}, path={self.path!r})"


def _no_reload(data: Any = None) -> None:
    raise RuntimeError("ctx.reload() is only available while the loader runs inside vmd")


class Context:
    """What a loader knows about the module it is generating.

    Attributes:
        id: the module id: the loader's absolute path plus an optional `?query`.
        path: the loader file.
        query: the id's query string as a dict (last value wins).
        mode: "serve" (dev server, editor) or "build".
        watched_files: files (never folders) the `watch` globs match now, relative to the
            loader's folder, `/`-separated, sorted.
        events: what triggered this run; empty on a first load.
        data: the value given to `reload(data)`, else None.

    Example:
        >>> ctx = Context(id="/p/users.vmd.py?role=admin", path=Path("/p/users.vmd.py"),
        ...               query={"role": "admin"})
        >>> ctx.mode, ctx.events
        ('serve', [])
    """

    def __init__(
        self,
        id: str,
        path: Path,
        query: dict[str, str] | None = None,
        mode: Literal["serve", "build"] = "serve",
        watched_files: list[str] | None = None,
        events: list[Event] | None = None,
        data: Any = None,
        _reload: Callable[[Any], None] = _no_reload,
    ) -> None:
        self.id = id
        self.path = path
        self.query: dict[str, str] = query if query is not None else {}
        self.mode: Literal["serve", "build"] = mode
        self.watched_files: list[str] = watched_files if watched_files is not None else []
        self.events: list[Event] = events if events is not None else []
        self.data = data
        self._reload = _reload
        self._lock = threading.Lock()

    def reload(self, data: Any = None) -> None:
        """Re-run this module with `ctx.data = data` and notify every client.

        Thread-safe: call it from a subscription thread, a callback or an asyncio task started
        in `setup`. `data` must be JSON-serialisable.
        """
        with self._lock:
            self._reload(data)

    def __repr__(self) -> str:
        return (
            f"Context(id={self.id!r}, mode={self.mode!r}, query={self.query!r}, "
            f"watched_files={len(self.watched_files)} files, events={self.events!r})"
        )
