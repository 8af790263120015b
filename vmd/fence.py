"""Proof that the watcher has delivered every change made before a moment, in ~3 ms.

A cached load must not serve output whose inputs changed a moment ago, before the watcher
reported it. For a module with a few dependencies the daemon re-stats them (microseconds
each); for one watching thousands of files that costs more than a hundred milliseconds, so it
asks for a fence instead: a new file in a private folder every watch task also watches. An OS
watch reports events in the order they happened, so once each task has reported the fence,
every change made before it was created has been delivered (and marked its modules stale).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import tempfile
from collections.abc import Iterable

# A fence slower than this is not waited for: the caller re-stats instead (a loaded machine,
# a watch task restarting and missing the fence).
TIMEOUT_S = 0.1


class Fences:
    """The private folder and the fences in flight, for one `Watcher`."""

    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="vmd-fence-")
        self._prefix = self.folder + os.sep
        self._names = itertools.count()
        # fence file -> the tasks (by recursive flag) that have not reported it yet, and its
        # waiter.
        self._waiting: dict[str, tuple[set[bool], asyncio.Future[None]]] = {}

    async def wait(self, tasks: set[bool]) -> bool:
        """Create a fence and wait until every one of `tasks` has reported it. False: it did
        not come in time (or could not be made): the caller must not rely on the watcher."""
        path = os.path.join(self.folder, str(next(self._names)))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[path] = (set(tasks), future)
        try:
            with open(path, "wb"):
                pass
            await asyncio.wait_for(future, TIMEOUT_S)
            return True
        except (OSError, asyncio.TimeoutError):
            return False
        finally:
            del self._waiting[path]
            with contextlib.suppress(OSError):
                os.unlink(path)

    def seen(self, recursive: bool, paths: set[str]) -> set[str]:
        """A task reported `paths`: note the fences among them; returns the others."""
        if not any(p.startswith(self._prefix) or p == self.folder for p in paths):
            return paths
        for path in paths:
            entry = self._waiting.get(path)
            if entry is not None:
                tasks, future = entry
                tasks.discard(recursive)
                if not tasks and not future.done():
                    future.set_result(None)
        return {p for p in paths if not p.startswith(self._prefix) and p != self.folder}

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def with_fence(folders: Iterable[str], fences: Fences | None) -> frozenset[str]:
    """`folders` and the fence folder, when there is anything to watch at all."""
    out = frozenset(folders)
    return out | {fences.folder} if out and fences is not None else out
