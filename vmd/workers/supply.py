"""The supply of worker processes: started at most as many at once as the machine can run, and
kept ready ahead of need, so an assignment rarely waits for an interpreter and never waits for
another assignment's.

The pool (`vmd.workers.pool`) decides which loader a process hosts and how many may host one;
this module has a process ready when asked: forked from a preloader that has the loader's
imports (`vmd.workers.preload`), else a spawned one (the `obtain` callable the pool gives it:
the spare, or one started now).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from vmd.workers import scan, spawn
from vmd.workers.preload import Preloader
from vmd.workers.process import WorkerProcess

logger = logging.getLogger(__name__)

# Wraps a process forked from a preloader in a WorkerProcess once it is ready (the pool's).
Adopt = Callable[["spawn.WorkerProcess"], Awaitable[WorkerProcess]]


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        return os.cpu_count() or 1


class Supply:
    """Unassigned worker processes: the ones ready, the ones starting, and who waits for one.

    `obtain(early)` starts one process and returns it once it is ready (adopting `early`, an
    already running one, if given); `discard(worker)` stops one nobody needs any more.
    `keep_spare`: keep one ready even with nobody waiting (serving: a code change then never
    waits for interpreter start-up). `ahead` is set by the pool: how many loaders wait for
    room to get a worker; that many (up to `max_starts`) are started for them in advance.
    """

    def __init__(
        self,
        obtain: Callable[[spawn.EarlyProcess | None], Awaitable[WorkerProcess]],
        discard: Callable[[WorkerProcess], None],
        *,
        keep_spare: bool,
        max_starts: int | None = None,
        preloader: Preloader | None = None,
        adopt: Adopt | None = None,
        roots: Sequence[str] = (),
    ) -> None:
        self._obtain = obtain
        self._preloader = preloader
        self._adopt = adopt
        self._roots = list(roots)
        self._discard = discard
        self._keep_spare = keep_spare
        # Building, the spare `start()` makes is kept for the first assignment, then none.
        self._keep = 1
        # How many processes start at once. A start is CPU work from exec to Ready (the
        # interpreter, then msgspec and the worker's modules: 25-160 ms of CPU here), so more
        # starts at once than CPUs finish no sooner in all (they share the cores) and each
        # finishes later, which delays the first loader; fewer leaves a core idle while
        # loaders wait. maxWorkers is not this bound: it caps how many loaders hold a process
        # (their imports, their memory), which the pool enforces, and it may well exceed the
        # cores (8 by default, 2 cores here).
        self.max_starts = max(1, max_starts or usable_cpus())
        self._turns = asyncio.Semaphore(self.max_starts)
        self.ahead = 0
        self._ready: collections.deque[WorkerProcess] = collections.deque()
        self._takers: collections.deque[asyncio.Future[WorkerProcess]] = collections.deque()
        self._starting = 0  # started or waiting for a turn
        self._claims = 0  # spares reserved by _claim() for a take() to come
        self._tasks: set[asyncio.Task[WorkerProcess | None]] = set()
        # The last start failed: start only for those waiting, never to keep spares (a root
        # that does not exist would otherwise fail again and again).
        self._failing = False
        self._closed = False
        # Serving: a worker forked ahead from the ready generation (with its number), so a
        # loader whose code changed, or one evicted and visited again, need not wait for a fork.
        self._ahead: tuple[WorkerProcess, int] | None = None
        self._forking_ahead: asyncio.Task[None] | None = None
        if preloader is not None and keep_spare:
            preloader.on_ready = self._fork_ahead

    async def start(self, early: spawn.EarlyProcess | None = None) -> None:
        """Have a spare ready (adopting `early`, if given); raises what starting it raised.

        Serving, the first preloader starts next, so a dev server's first loaders fork; after
        the spare, which serves the first of them (importing alongside it cost a first module
        ~20-40 ms here). Building, it starts with the first run, with that loader's libraries:
        one started now as well would import alongside the spare and that generation (20
        pandas loaders read 2.3x one process running them, against 2.0x)."""
        try:
            if early is None and self._ready:
                return
            if early is not None or not self._tasks:
                task = self._start_one(early)
            else:
                task = next(iter(self._tasks))
            await asyncio.shield(task)
        finally:
            if self._preloader is not None and self._keep_spare and self._preloader.enabled:
                self._preloader.prepare(())

    async def take_for(self, loader: str) -> WorkerProcess:
        """A ready process for `loader`: forked from a preloader that has its imports, or else
        a spare (it beats waiting for a preloader still importing them: the spare imports them
        itself, as it always did; one still starting only if the loader imports nothing from
        outside the standard library), or else forked from what preloader there is (waiting
        for the generation importing them), or else spawned."""
        preloader, adopt = self._preloader, self._adopt
        if preloader is None or not preloader.enabled or adopt is None:
            return await self.take()
        needs = scan.top_level_imports(loader, [os.path.dirname(loader), *self._roots])
        try:
            return await self._take_needing(preloader, adopt, needs)
        finally:
            self._fork_ahead()

    async def _take_needing(
        self, preloader: Preloader, adopt: Adopt, needs: list[str]
    ) -> WorkerProcess:
        if (ahead := await self._take_ahead(preloader, needs)) is not None:
            return ahead
        # Building, the spare started for the first loader is its, preloader ready or not;
        # and one importing only the standard library asks for no preloader (a build of one
        # loader file never forks).
        standard, building = scan.only_standard(needs), not self._keep_spare
        if (building or not preloader.ready_for(needs)) and self._claim(starting=standard):
            if not (building and standard):
                preloader.prepare(needs)  # for the loaders that follow
            return await self.take(claimed=True)
        proc = await preloader.fork(needs)
        if proc is not None:
            try:
                return await adopt(proc)
            except Exception as exc:
                logger.info("vmd: a forked worker did not start (%s); spawning one", exc)
        return await self.take()

    async def take(self, *, claimed: bool = False) -> WorkerProcess:
        """A ready process: a spare, or the next to start; one retry if starting failed.
        `claimed`: the caller reserved one with `_claim()`."""
        if claimed:
            self._claims -= 1
        if not self._keep_spare or self._forking():
            self._keep = 0
        error: BaseException | None = None
        for _ in range(2):
            if self._closed:
                break
            while self._ready:
                worker = self._ready.popleft()
                if worker.usable:
                    self.top_up()  # serving: the spare is replaced at once
                    return worker
            future: asyncio.Future[WorkerProcess] = asyncio.get_running_loop().create_future()
            self._takers.append(future)
            self.top_up()
            try:
                return await future
            except asyncio.CancelledError:
                if future.done() and not future.cancelled() and future.exception() is None:
                    self._offer(future.result())  # handed over just as we were cancelled
                raise
            except Exception as exc:
                error = exc
                logger.warning("vmd: a worker failed to start: %s", exc)
            finally:
                if future in self._takers:
                    self._takers.remove(future)
        if self._closed:
            raise RuntimeError("vmd is shutting down")
        raise RuntimeError(f"no worker process could start: {error}")

    def _claim(self, *, starting: bool) -> bool:
        """Reserve a spare, ready or (`starting`) still starting, for a `take(claimed=True)` to
        follow; False when none is free.

        A starting one only for a loader importing what every worker has at start: one that
        imports a library would import it itself after its start, no sooner than the
        generation now importing it, and many such loaders arriving together would each start
        one (a batch of pandas loaders, each importing pandas on two shared cores) instead of
        forking from one import.

        And only while nobody waits for one already: each take starts the spare's replacement,
        so claiming replacements too would spawn a process for every loader that arrives before
        the preloader is ready (40 at a dev server's start) where one fork each would do."""
        waiting = len(self._takers) + self._claims
        free = len(self._ready) + (self._starting if starting and not waiting else 0)
        if free - waiting > 0:
            self._claims += 1
            return True
        return False

    def top_up(self) -> None:
        """Start what the demand asks for now; stop ready spares it no longer needs."""
        if self._closed:
            return
        have = len(self._ready) + self._starting
        wanted = len(self._takers) if self._failing else self._wanted()
        for _ in range(wanted - have):
            self._start_one()
        excess = have - self._wanted()
        while excess > 0 and self._ready:
            self._discard(self._ready.pop())
            excess -= 1

    def forget(self, worker: WorkerProcess) -> None:
        """A spare died: it is no longer ready."""
        if worker in self._ready:
            self._ready.remove(worker)
        if self._ahead is not None and self._ahead[0] is worker:
            self._ahead = None

    # -- forking ahead (serving) -----------------------------------------------------------

    async def _take_ahead(self, preloader: Preloader, needs: list[str]) -> WorkerProcess | None:
        """The worker forked ahead, if it has `needs` preloaded and its generation's files
        are unchanged (then it is as good as one forked now)."""
        if self._ahead is None:
            return None
        worker, number = self._ahead
        fits = preloader.fits(number, needs)
        if fits is False and worker.usable:
            return None  # kept for a loader it suits
        self._ahead = None
        if fits and worker.usable and await preloader.unchanged(number):
            return worker
        if worker.usable:
            self._discard(worker)
        return None

    def _fork_ahead(self) -> None:
        """Have a worker forked ahead from the ready generation, replacing one forked from an
        older generation (the preloader calls this when a generation becomes ready)."""
        preloader, adopt = self._preloader, self._adopt
        if not self._keep_spare or self._closed or preloader is None or adopt is None:
            return
        if not preloader.enabled:
            return
        if self._ahead is not None:
            worker, number = self._ahead
            if worker.usable and preloader.fits(number, ()) is not None:
                return
            self._ahead = None
            if worker.usable:
                self._discard(worker)
        if self._forking_ahead is None:
            self._forking_ahead = asyncio.create_task(self._fork_one_ahead(preloader, adopt))

    async def _fork_one_ahead(self, preloader: Preloader, adopt: Adopt) -> None:
        try:
            forked = await preloader.fork_ahead()
            if forked is not None:
                worker = await adopt(forked[0])
                if self._closed:
                    self._discard(worker)
                else:
                    self._ahead = (worker, forked[1])
        except Exception as exc:  # the next take forks or spawns as usual
            logger.info("vmd: could not fork a worker ahead: %s", exc)
        finally:
            self._forking_ahead = None

    async def close(self) -> None:
        """Fail whoever waits, and stop the starts under way (their processes are reaped)."""
        self._closed = True
        for future in self._takers:
            if not future.done():
                future.set_exception(RuntimeError("vmd is shutting down"))
        self._takers.clear()
        tasks: list[asyncio.Task[Any]] = [*self._tasks, *filter(None, [self._forking_ahead])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- starting --------------------------------------------------------------------------

    def _wanted(self) -> int:
        """How many processes should be ready or starting for the demand now (none ahead of
        need while forking: a fork takes milliseconds)."""
        forking = self._forking()
        ahead = 0 if forking else min(self.ahead, self.max_starts)
        # Serving keeps a spawned spare only while no preloader forks one ahead (the first,
        # started with the daemon, until a loader takes it): a replacement spawned as each
        # spare is taken is an interpreter start competing with the loaders for the CPUs.
        keep = self._keep if forking or not self._keep_spare else 1
        return len(self._takers) + keep + ahead

    def _forking(self) -> bool:
        return self._preloader is not None and self._preloader.enabled

    def _start_one(
        self, early: spawn.EarlyProcess | None = None
    ) -> asyncio.Task[WorkerProcess | None]:
        self._starting += 1
        task = asyncio.create_task(self._start(early))
        self._tasks.add(task)
        task.add_done_callback(self._started)
        return task

    async def _start(self, early: spawn.EarlyProcess | None) -> WorkerProcess | None:
        if early is not None:  # already running: it takes no turn
            return await self._obtain(early)
        async with self._turns:
            # The demand may have gone while this start waited for its turn (a build's last
            # loaders took the spares already ready).
            if self._closed or len(self._ready) + self._starting > self._wanted():
                return None
            return await self._obtain(None)

    def _started(self, task: asyncio.Task[WorkerProcess | None]) -> None:
        self._tasks.discard(task)
        self._starting -= 1
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self._failing = True
            taker = self._next_taker()
            if taker is not None:
                taker.set_exception(error)
            else:
                logger.warning("vmd: a spare worker failed to start: %s", error)
            return
        worker = task.result()
        if worker is not None:
            self._failing = False
            self._offer(worker)

    def _offer(self, worker: WorkerProcess) -> None:
        taker = self._next_taker()
        if taker is not None:
            taker.set_result(worker)
            return
        self._ready.append(worker)  # closing: the pool stops every live process itself
        if not self._closed:
            self.top_up()

    def _next_taker(self) -> asyncio.Future[WorkerProcess] | None:
        while self._takers:
            taker = self._takers.popleft()
            if not taker.done():
                return taker
        return None
