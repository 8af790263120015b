"""Taking turns at a shared condition: whoever waits for it is woken one at a time.

The pool's loaders wait for room (`max_workers`). Waking all of them at every change (a worker
idle, one exited) had each re-check the same counts: with a build's hundred loaders waiting,
tens of thousands of checks. All wait for the same thing, so if the first woken finds nothing,
none would; one that found something passes the turn on, as the next may find some too.
"""

from __future__ import annotations

import asyncio
import collections


class Turns:
    """`await wait()` until woken; `wake()` wakes the one waiting longest (the one woken calls
    `wake()` again if what it found may leave something for the next)."""

    def __init__(self) -> None:
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    async def wait(self) -> None:
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.wake()  # woken, but gone: the turn goes on
            raise

    def wake(self) -> None:
        while self._waiting:
            if not (turn := self._waiting.popleft()).done():
                turn.set_result(None)
                return
