"""Telling a client that the daemon is working: `$/vmd/busy` and LSP work-done progress.

Both exist for clients waiting on slow loaders: `$/vmd/busy` so a client that gives up on a
daemon it has not heard from (a stuck one) hears from a busy one, and `$/progress` so an editor
shows what is running.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

from vmd.protocol import BUSY, BusyParams
from vmd.rpc import Rpc

T = TypeVar("T")

_BUSY_EVERY = 1.0  # seconds between `$/vmd/busy` notifications while loads are unanswered


class Busy:
    """While requests that run loaders are unanswered, say so every `_BUSY_EVERY`: a
    `vmd/loadMany` of slow loaders is answered only once all have run, and a client waiting
    that long must not take the silence for a stuck daemon."""

    def __init__(self, rpc: Rpc) -> None:
        self._rpc = rpc
        self._unanswered = 0  # requests that run loaders, not answered yet
        self._at: asyncio.TimerHandle | None = None

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        """Count one request as unanswered for as long as the block runs."""
        self._unanswered += 1
        if self._at is None:
            self._at = asyncio.get_running_loop().call_later(_BUSY_EVERY, self._still_busy)
        try:
            yield
        finally:
            self._unanswered -= 1

    def _still_busy(self) -> None:
        if self._unanswered == 0 or self._rpc.stopped.is_set():
            self._at = None
            return
        self._rpc.notify(BUSY, BusyParams(requests=self._unanswered))
        self._at = asyncio.get_running_loop().call_later(_BUSY_EVERY, self._still_busy)


class Progress:
    """LSP work-done progress for runs slower than `delay_ms`."""

    def __init__(self, rpc: Rpc, *, delay_ms: int) -> None:
        self._rpc = rpc
        self._delay = delay_ms / 1000
        self._ids = itertools.count(1)

    async def around(self, work: Awaitable[T], id: str) -> T:
        """`work`'s result; a run slower than the delay shows as progress on the client."""
        task: asyncio.Future[T] = asyncio.ensure_future(work)
        done, _ = await asyncio.wait({task}, timeout=self._delay)
        if not done:
            await self._progress_while(task, id)
        return task.result()

    async def _progress_while(self, task: asyncio.Future[Any], id: str) -> None:
        token = f"vmd/load/{next(self._ids)}"
        try:
            await asyncio.wait_for(self._rpc.request("window/workDoneProgress/create",
                                                     {"token": token}), 2)
        except Exception:  # a client that does not answer must not hold the load back
            await asyncio.wait({task})
            return
        name = os.path.basename(id.partition("?")[0])
        begin = {"kind": "begin", "title": "vmd", "message": f"running {name}"}
        self._rpc.notify("$/progress", {"token": token, "value": begin})
        await asyncio.wait({task})
        self._rpc.notify("$/progress", {"token": token, "value": {"kind": "end"}})
