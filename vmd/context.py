"""The `ctx` object a loader's `watch`, `setup` and `load` receive.

It is a plain value object: the worker fills it in before each run and wires `reload` to the
daemon, so loaders can be unit-tested by constructing a Context by hand.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

EventType = Literal["add", "change", "unlink"]


@dataclass(frozen=True)
class Event:
    """One change that triggered a run: `type` is "add", "change" or "unlink"; `path` is
    relative to the loader's folder and `/`-separated, like `Context.watched_files`."""

    type: EventType
    path: str


def _no_reload(data: Any = None) -> None:
    raise RuntimeError("ctx.reload() is only available while the loader runs inside vmd")


@dataclass
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
    """

    id: str
    path: Path
    query: dict[str, str] = field(default_factory=dict)
    mode: Literal["serve", "build"] = "serve"
    watched_files: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    data: Any = None
    _reload: Callable[[Any], None] = field(default=_no_reload, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def reload(self, data: Any = None) -> None:
        """Re-run this module with `ctx.data = data` and notify every client.

        Thread-safe: call it from a subscription thread, a callback or an asyncio task started
        in `setup`. `data` must be msgpack/JSON-serialisable.
        """
        with self._lock:
            self._reload(data)
