"""The daemon's side of preloading: which modules to preload, the preloader processes
(generations) that have them, and forking a worker from the right one.

A generation is one preloader process (`vmd.workers.preloader`) asked to import a list of
modules. The list grows as loaders are seen to import modules from outside the project (a
loader's top-level imports, read before its first run; every module a run imported, reported
by the worker); when it grows, a new generation is built in the background and replaces the
old one once ready. A loader whose imports the ready generation lacks waits for the generation
being built with them, which has been importing them since the loader was seen, so its first
run is no slower than a spawned worker's. Whenever no generation can fork (none ready, one that
died or refused), `fork` returns None and the pool spawns: correctness never depends on this.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Literal

from vmd.workers import ipc, scan
from vmd.workers.generation import Generation
from vmd.workers.piped import PipedProcess

logger = logging.getLogger(__name__)

_DEATHS_ALLOWED = 3  # preloaders that may die within _DEATH_WINDOW before preloading stops
_DEATH_WINDOW = 60.0
_MAX_ATTEMPTS = 3




class Preloader:
    """The generations of preloaders for one pool: `fork(needs)` forks a worker that has
    `needs` (module names) preloaded when a generation can, else returns None."""

    def __init__(self, *, cwd: str | None, roots: list[str]) -> None:
        self._cwd = cwd
        self._roots = list(roots)
        self._wanted: dict[str, None] = {}  # modules to preload, in the order first seen
        self._excluded: set[str] = set()  # failed or started a thread: never asked again
        self._ready: Generation | None = None
        self._building: list[Generation] = []  # oldest first
        self._rebuild = False  # the wanted list grew while a build was under way
        self._numbers = 0
        self._deaths: list[float] = []
        self._old: set[Generation] = set()  # replaced, finishing their forks
        self._tasks: set[asyncio.Task[None]] = set()
        self.enabled = True
        self.on_ready: Callable[[], None] = lambda: None  # a new generation is ready to fork

    def learn(self, modules: Iterable[str]) -> None:
        """Modules a run imported from outside the project: a later generation has them. Not
        the first generation: it is built when a loader first needs a fork (a build of one
        loader file never does, and a preloader would only take CPU from its runs)."""
        if self._want(modules) and self._numbers:
            self._schedule()

    def prepare(self, needs: Iterable[str]) -> list[str]:
        """A loader importing `needs` is about to run: have a generation with them built, if
        none is ready or building. Returns the needs that can be preloaded."""
        needs = [n for n in needs if n not in self._excluded]
        self._want(needs)
        ready = self._ready
        if ready is None or not self._has(ready, needs):
            if not any(self._has(g, needs) for g in self._building):
                self._schedule(now=True)
        return needs

    def ready_for(self, needs: Iterable[str]) -> bool:
        """Whether a generation with `needs` can fork now."""
        ready = self._ready
        return (
            ready is not None
            and not ready.dead
            and self._has(ready, needs)
        )

    async def fork(self, needs: Iterable[str] = ()) -> PipedProcess | None:
        """A worker forked from a generation that has `needs`, else from the ready one (the
        worker imports the rest itself); None when there is none (the pool spawns).

        When the ready generation lacks `needs`, this waits for one being built with them
        (started now if none is): a spawned worker would import them too, later than a
        generation that started importing them when the first loader needing them was seen."""
        needs = self.prepare(needs)
        for _ in range(_MAX_ATTEMPTS):
            if not self.enabled:
                return None
            generation = await self._generation_for(needs)
            if generation is None:
                return None
            result = await self._fork_from(generation)
            if result is not False:
                return result
        return None

    async def fork_ahead(self) -> tuple[PipedProcess, int] | None:
        """A worker forked now from the ready generation, for a loader still to come, with
        that generation's number (for `fits` and `unchanged`); None if none is ready."""
        generation = self._ready
        if not self.enabled or generation is None or generation.dead:
            return None
        proc = await self._fork_from(generation)
        return (proc, generation.number) if proc else None

    def fits(self, number: int, needs: Iterable[str]) -> bool | None:
        """Whether a worker forked ahead from generation `number` has `needs` preloaded; None
        if that generation is no longer the ready one (the worker lacks what is wanted now)."""
        ready = self._ready
        if ready is None or ready.dead or ready.number != number:
            return None
        return self._has(ready, needs)

    async def unchanged(self, number: int) -> bool:
        """Whether a worker forked ahead from generation `number` is as good as one forked
        now: the files of its modules are unchanged on disk (else the generation is dropped
        and another built, as when it refuses a fork)."""
        generation = self._ready
        if generation is None or generation.number != number:
            return False
        refused = await generation.check()
        if refused:
            logger.info("vmd: preloader %d is out of date: %s", generation.number, refused)
            self._lost(generation)
        return not refused

    async def _fork_from(self, generation: Generation) -> PipedProcess | None | Literal[False]:
        """A worker forked from `generation`; False if it did not fork (it is dropped and
        another built: try again), None if forking is failing here (no pipes left, say)."""
        try:
            result = await generation.fork()
        except OSError as exc:
            logger.warning("vmd: could not fork a worker: %s", exc)
            return None
        if isinstance(result, PipedProcess):
            return result
        logger.info("vmd: preloader %d did not fork: %s", generation.number, result)
        self._lost(generation)
        return False

    def pids(self) -> set[int]:
        """The preloader processes alive now."""
        return {pid for g in self._all() if (pid := g.pid()) is not None}

    def kill_all(self) -> None:
        for generation in self._all():
            generation.kill()

    async def close(self) -> None:
        self.enabled = False
        gens = self._all()
        self._ready, self._building = None, []
        await asyncio.gather(*(g.close() for g in gens), return_exceptions=True)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- generations -------------------------------------------------------------------------

    def _all(self) -> set[Generation]:
        return {g for g in (self._ready, *self._building, *self._old) if g is not None}

    def _has(self, generation: Generation, needs: Iterable[str]) -> bool:
        """Whether `generation` preloaded what of `needs` is worth waiting for: all but the
        excluded and the standard library's (a worker imports one it lacks in milliseconds,
        and a later generation has it once a run reports it), so a loader importing only
        those forks from any."""
        return generation.covers.issuperset(
            n for n in needs if n not in self._excluded and not scan.only_standard([n])
        )

    def _want(self, modules: Iterable[str]) -> bool:
        new = [m for m in modules if m not in self._wanted and m not in self._excluded]
        self._wanted.update(dict.fromkeys(new))
        return bool(new)

    async def _generation_for(self, needs: list[str]) -> Generation | None:
        ready = self._ready
        if ready is not None and not ready.dead and self._has(ready, needs):
            return ready
        for building in reversed(self._building):  # the newest that has them
            if self._has(building, needs):
                try:
                    await asyncio.shield(building.loaded)
                except Exception:
                    pass
                break
        ready = self._ready
        return ready if ready is not None and not ready.dead else None

    def _schedule(self, *, now: bool = False) -> None:
        """Build a generation with every wanted module: now, or after the build under way
        (`now`: a loader waits for these modules)."""
        if not self.enabled:
            return
        if self._building and not now:
            self._rebuild = True
            return
        modules = [m for m in self._wanted if m not in self._excluded]
        ready = self._ready
        if not now and ready is not None and not ready.dead and ready.covers.issuperset(modules):
            return  # learned, but the ready generation has them (vmd's own, or a build's)
        self._numbers += 1
        generation = Generation(self._numbers, modules, self._exited, self._idle)
        self._building.append(generation)
        task = asyncio.create_task(self._build(generation))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _build(self, generation: Generation) -> None:
        loaded: ipc.Loaded | None = None
        try:
            await generation.start(self._cwd, self._roots)
            loaded = await generation.loaded
        except Exception as exc:
            if self.enabled:
                logger.warning("vmd: a preloader failed to start: %s", exc)
                self._died()
        finally:
            if generation in self._building:
                self._building.remove(generation)
        if loaded is not None:
            generation.covers = (generation.covers - set(loaded.failed)) | set(loaded.base)
            self._excluded.update(loaded.failed, loaded.threaded)
            for name in loaded.threaded:
                logger.info("vmd: not preloading %s: importing it starts a thread", name)
        ready = self._ready
        if loaded is None or loaded.unsafe or not self.enabled:
            self._rebuild = self._rebuild or bool(loaded and loaded.unsafe)
            await generation.close()
        elif ready is not None and ready.number > generation.number:
            await generation.close()  # a newer one was ready first
        else:
            self._ready = generation
            if ready is not None:
                self._retire(ready)
            self.on_ready()
        if self._rebuild and not self._building:
            self._rebuild = False
            self._schedule()

    def _exited(self, generation: Generation) -> None:
        """A preloader exited on its own (killed, crashed, refused): build another."""
        if self._ready is generation or generation in self._building:
            self._died()
        self._lost(generation)

    def _lost(self, generation: Generation) -> None:
        if self._ready is generation:
            self._ready = None
            self._schedule()
        if generation not in self._building:
            self._retire(generation)

    def _died(self) -> None:
        now = time.monotonic()
        self._deaths = [t for t in self._deaths if now - t < _DEATH_WINDOW] + [now]
        if len(self._deaths) > _DEATHS_ALLOWED and self.enabled:
            self.enabled = False
            logger.warning(
                "vmd: preloaders keep dying (%d in %.0f s); spawning every worker from now on",
                len(self._deaths), _DEATH_WINDOW,
            )

    def _retire(self, generation: Generation) -> None:
        if generation.retiring:
            return
        generation.retiring = True
        self._old.add(generation)
        self._idle(generation)

    def _idle(self, generation: Generation) -> None:
        """A retired generation goes once its last fork request and worker are done (its
        workers die with it); the generation calls this when they are."""
        if generation.retiring and not generation.pending:
            self._close_later(generation)

    def _close_later(self, generation: Generation) -> None:
        if generation.closing:
            return
        generation.closing = True  # once: its exit from now on is no news

        async def close() -> None:
            await generation.close()
            self._old.discard(generation)

        task = asyncio.create_task(close())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
