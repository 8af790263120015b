"""The worker pool: which process runs which loader, how many may, eviction, replacement.

Each loader file gets its own worker process (`python -m vmd.workers.main`), kept while its
code is unchanged so a data change does not re-pay the loader's imports, and replaced when the
code changes: a fresh process is the only way to unload Python code and keep memory flat.
At most `max_workers` processes host a loader at once; a loader that needs one beyond that
evicts the least recently used idle one, or waits for one to go idle. Workers live in their own
process group so a timeout kills whatever a loader spawned, too. One process's pipes, runs and
timeouts are `process`'s; having unassigned processes ready (the warm spare, starts in
parallel) is `supply`'s; starting one is `spawn`'s, reached only through `WorkerPool._spawn`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from typing import Any

from vmd.errors import LoaderCrashed, LoaderTimeout
from vmd.workers import failures, ipc, reaper, spawn
from vmd.workers.capture import Locality
from vmd.workers.preload import Preloader
from vmd.workers.process import REQUEUE, TIMED_OUT, Outcome, WorkerProcess
from vmd.workers.supply import Supply
from vmd.workers.turns import Turns

logger = logging.getLogger(__name__)

_READY_TIMEOUT = 10.0
_STOP_GRACE = 1.0  # cleanups get this long after Stop before the group is SIGKILLed
_REAP_TIMEOUT = 2.0
_STRAY_WAIT = 1.0


class WorkerPool:
    """Runs loaders in worker processes, one per loader file, at most `max_workers` at once
    (plus unassigned spares). `timeout_ms <= 0` means no timeout. `max_starts`: how many
    processes may start at once (default: the CPUs this process may use). `preload`: fork
    workers from a preloader (`vmd.workers.preload`); this process must be a child subreaper.
    `memory_limit_mb`: each worker's data size limit (`memoryLimitMb`; 0: none).
    """

    def __init__(
        self,
        *,
        roots: list[str],
        mode: str,
        timeout_ms: int,
        max_workers: int,
        on_log: Callable[[str, str], None],
        on_reload: Callable[[str, Any], None],
        max_starts: int | None = None,
        preload: bool = False,
        memory_limit_mb: int = 0,
    ) -> None:
        self._roots = list(roots)
        self._cwd = roots[0] if roots else None  # no root: where the daemon runs
        self._locality = Locality(roots)
        self._mode: Any = mode
        self._timeout_ms = timeout_ms
        self._max_workers = max(1, max_workers)
        self._memory_limit_mb = memory_limit_mb
        self._on_log = on_log
        self._on_reload = on_reload
        # loader path -> its worker, least recently used first (eviction order).
        self._workers: collections.OrderedDict[str, WorkerProcess] = collections.OrderedDict()
        # Every process not yet reaped (assigned, spare, retiring), for kill_all().
        self._live: dict[int, WorkerProcess] = {}
        self._preloader = Preloader(cwd=self._cwd, roots=roots) if preload else None
        self._supply = Supply(
            self._spawn, self._discard, keep_spare=mode == "serve", max_starts=max_starts,
            preloader=self._preloader, adopt=self._ready, roots=roots,
        )
        # Assignments under way: one per loader, each shared by all the runs waiting for it.
        self._assigning: dict[str, asyncio.Future[WorkerProcess]] = {}
        self._reserved = 0  # room taken by assignments still waiting for their process
        self._waiting = 0  # assignments waiting for room: the supply starts spares for them
        self._room = Turns()  # loaders waiting for room (see _reserve)
        # Loaders whose code changed since their worker started: the next run replaces it,
        # exactly once however many of the loader's modules noticed the change.
        self._outdated: set[str] = set()
        # Background retirements, kept so close() can finish them and nothing is collected early.
        self._background: set[asyncio.Future[None]] = set()
        self._stopping: dict[str, asyncio.Future[None]] = {}  # loader -> its old worker stopping
        self._closed = False

    # -- public API ----------------------------------------------------------------------------

    async def start(self, early: spawn.EarlyProcess | None = None) -> None:
        """Start the warm spare worker (adopting `early` if it was started in our folder) and
        wait until it is ready. (Serving, the supply starts the first preloader too.)"""
        await self._supply.start(early)

    async def run(
        self,
        loader: str,
        id: str,
        query: dict[str, str],
        events: list[tuple[str, str]],
        data: Any,
    ) -> ipc.Done:
        """Run module `id` of `loader` and return its Done, failed or not.

        Raises:
            LoaderTimeout: the run took longer than `timeout_ms`; its worker was killed.
            LoaderCrashed: the worker process died during the run (or could not start).
        """
        if loader in self._outdated:
            self._outdated.discard(loader)
            # The next process is taken while the old one stops; its Assign waits (_assign).
            if (stopping := self._retire_for(loader)) is not None:
                self._stopping[loader] = stopping
        while True:
            worker = await self._worker_for(loader, id)
            if not worker.usable:
                continue  # replaced or died while this run waited for it
            done = await self._run_on(worker, loader, id, query, events, data)
            if done is not None:
                return done
            # Found dead before the run reached it: not this run's fault, try a fresh one.
            if not worker.retired:
                self._forget(worker, reap=True)

    def stop_run(self, id: str) -> None:
        """No one waits for `id`'s run: kill the worker on it, as a timeout does (only that stops
        a loader mid-run); runs queued behind go elsewhere. The caller cancels the run's task."""
        for worker in [w for w in self._live.values() if w.on(id)]:
            worker.requeue()
            self._forget(worker, reap=True)

    def forget(self, loader: str, ids: list[str]) -> None:
        """The daemon forgot `ids` of `loader`: its worker drops their instances (cleanups run)."""
        if (worker := self._workers.get(loader)) is not None and worker.usable:
            worker.send(ipc.Forget(ids=ids))

    def code_changed(self, loader: str) -> None:
        """The loader or one of its local imports changed: its next run gets a fresh worker
        (the one it has finishes what it is running, on the code it imported)."""
        self._outdated.add(loader)

    async def replace(self, loader: str) -> None:
        """The loader's code changed: retire its worker; the next run gets a fresh one.

        An idle worker is stopped before this returns (its cleanups run first, within a short
        grace), so a new instance's setup does not race the old one's cleanup. A run in flight
        finishes normally and the worker is stopped after it, in the background.
        """
        if (stopping := self._retire_for(loader)) is not None:
            await stopping

    def _retire_for(self, loader: str) -> asyncio.Future[None] | None:
        """Retire the loader's worker; an idle one's stopping, to wait for (a busy one stops
        after its run, in the background)."""
        worker = self._workers.pop(loader, None)
        if worker is None:
            return None
        worker.retired = True
        stopping = self._in_background(self._retire(worker))
        return None if worker.busy else stopping

    async def close(self) -> None:
        """Stop every worker (cleanups get a short grace), then kill what is left and reap."""
        self._closed = True
        self._wake()
        await self._supply.close()
        self._workers.clear()
        workers = list(self._live.values())
        for worker in workers:
            worker.retired = True
        await asyncio.gather(
            *(self._retire(w, after_run=False) for w in workers), return_exceptions=True
        )
        if self._preloader is not None:  # after the workers it forked: they die with it
            await self._preloader.close()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    def pids(self) -> set[int]:
        """Every live worker process, the spare and preloaders included: what status and memory
        reports see."""
        return set(self._live) | (self._preloader.pids() if self._preloader else set())

    @property
    def settled(self) -> bool:
        """No worker is being stopped or reaped in the background any more."""
        return not self._background

    def kill_all(self) -> None:
        """SIGKILL every worker's process group now (for `finally` blocks and atexit)."""
        for worker in list(self._live.values()):
            worker.killpg()
        if self._preloader is not None:
            self._preloader.kill_all()

    # -- workers ---------------------------------------------------------------------------

    async def _worker_for(self, loader: str, id: str) -> WorkerProcess:
        if self._closed:
            raise LoaderCrashed("vmd is shutting down", id=id, file=loader, line=1)
        worker = self._workers.get(loader)
        if worker is not None and worker.usable:
            self._workers.move_to_end(loader)
            return worker
        # Every run of a loader that has no worker yet waits for the same assignment (a build's
        # hundreds of first runs wake together, not one after another behind a lock).
        assigning = self._assigning.get(loader)
        if assigning is None:
            assigning = self._assigning[loader] = asyncio.ensure_future(self._assign(loader))
            assigning.add_done_callback(lambda f: self._assigned(loader, f))
        try:
            return await asyncio.shield(assigning)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise LoaderCrashed(
                f"could not start a worker process: {exc}", id=id, file=loader, line=1
            ) from exc

    async def _assign(self, loader: str) -> WorkerProcess:
        # No lock: assignments of different loaders wait for room and for a process side by
        # side, so a build's loaders get their workers started in parallel.
        worker = self._workers.get(loader)
        if worker is not None and worker.usable:
            return worker
        if worker is not None:
            del self._workers[loader]
        await self._reserve()
        try:
            worker = await self._supply.take_for(loader)
        except BaseException:
            self._reserved -= 1
            self._wake()
            raise
        self._reserved -= 1  # the room is the worker's now
        if (stopping := self._stopping.pop(loader, None)) is not None:
            await asyncio.wait([stopping])  # the old one's cleanups ran (replace logs errors)
        worker.loader = loader
        worker.send(ipc.Assign(roots=self._roots, loader=loader, mode=self._mode,
                               memory_limit_mb=self._memory_limit_mb))
        self._workers[loader] = worker
        return worker

    def _assigned(self, loader: str, future: asyncio.Future[WorkerProcess]) -> None:
        if self._assigning.get(loader) is future:
            del self._assigning[loader]
        if not future.cancelled():
            future.exception()  # retrieved: the waiters that are left report it

    async def _reserve(self) -> None:
        """Wait for room for one more loader's process. `max_workers` counts every process that
        hosts a loader, the ones stopping included, so an evicted worker's room is free only
        once its cleanups ran (before another loader's code starts), as it exits. They wait
        in turn: one that took room or evicted passes it on (`_wake`)."""
        waited = False
        try:
            while True:
                if self._closed:
                    self._wake()
                    raise RuntimeError("vmd is shutting down")
                hosting = [w for w in self._live.values() if w.loader and not w.stopped.done()]
                if len(hosting) + self._reserved < self._max_workers:
                    break
                # Stopping soon: given up and idle (one replaced mid-run may run for long).
                soon = sum(1 for w in hosting if self._workers.get(w.loader) is not w
                           and not w.busy)
                if len(hosting) - soon + self._reserved >= self._max_workers and self._evict():
                    self._wake()
                    continue  # its room is free once it has exited
                if not waited:
                    waited = True
                    self._waiting += 1
                    # Processes for the loaders waiting, started now, ready when room is.
                    self._supply.ahead = min(self._waiting, self._max_workers)
                    self._supply.top_up()
                await self._room.wait()
        finally:
            if waited:
                self._waiting -= 1
                # No top_up: the take that follows does it, after taking a ready spare.
                self._supply.ahead = min(self._waiting, self._max_workers)
        self._reserved += 1
        self._wake()

    def _wake(self) -> None:
        """Room may have come free (a worker went idle or exited): the next waiting looks."""
        self._room.wake()

    def _evict(self) -> bool:
        """Stop the least recently used idle worker (its cleanups run); False if all are busy.

        One not sent a run yet is not idle: its runs, woken by its assignment, are about to."""
        for loader, worker in self._workers.items():
            if worker.used and not worker.busy:
                self._retire_for(loader)  # leaves the loop at once: the dict changed
                return True
        return False

    def _discard(self, worker: WorkerProcess) -> None:
        """A spare nobody needs any more."""
        worker.retired = True
        self._in_background(self._retire(worker, after_run=False))

    async def _spawn(self, early: spawn.EarlyProcess | None = None) -> WorkerProcess:
        """Spawn one ready worker process (the supply calls it, at most `max_starts` at once)."""
        proc = await early.take(self._cwd) if early is not None else None
        if early is not None and proc is None:
            self._in_background(early.close())  # started in another folder
        if proc is None:
            proc = await spawn.start_worker(self._cwd)
        return await self._ready(proc)

    async def _ready(self, proc: spawn.WorkerProcess) -> WorkerProcess:
        """Track a started process and wait until it says it is ready."""
        worker = WorkerProcess(
            proc,
            timeout_ms=self._timeout_ms,
            on_log=self._on_log,
            on_reload=self._on_reload,
            on_idle_death=self._died_idle,
        )
        self._live[worker.pid] = worker
        try:
            await asyncio.wait_for(asyncio.shield(worker.ready), _READY_TIMEOUT)
        except BaseException:
            worker.retired = True
            await asyncio.shield(self._reap(worker))
            raise
        return worker

    # -- running ---------------------------------------------------------------------------

    async def _run_on(self, worker: WorkerProcess, loader: str, id: str, query: dict[str, str],
                      events: list[tuple[str, str]], data: Any) -> ipc.Done | None:
        result = await worker.run(id, query, events, data)
        if not worker.busy:
            self._wake()  # it can be evicted now
        if result is REQUEUE:
            return None
        if isinstance(result, ipc.Done) and result.modules and self._preloader is not None:
            self._preloader.learn(result.modules)
        if isinstance(result, ipc.Done) and result.out_of_memory:
            self._outdated.add(loader)  # what it holds is unknown: the next run gets a fresh one
        if isinstance(result, Outcome):
            # Everything queued behind goes to a fresh worker, not to this one's fate.
            worker.requeue()
            if result is TIMED_OUT:
                raise await self._timed_out(worker, loader, id)
            raise await self._crashed(worker, loader, id)
        return result

    async def _timed_out(self, worker: WorkerProcess, loader: str, id: str) -> LoaderTimeout:
        self._forget(worker)
        stack = await worker.stack(failures.STACK_WAIT)
        await self._reap(worker)
        return failures.timed_out(stack, loader, id, self._timeout_ms)

    async def _crashed(self, worker: WorkerProcess, loader: str, id: str) -> LoaderCrashed:
        self._forget(worker)
        await self._reap(worker)  # also drains stderr, so faulthandler's report is complete
        return failures.crashed(worker.proc.returncode, worker.fault, loader, id,
                                self._locality.is_local)

    def _died_idle(self, worker: WorkerProcess) -> None:
        """Died with no run in flight (a setup thread crashed it, or it was killed)."""
        self._supply.forget(worker)
        self._forget(worker, reap=True)

    def _forget(self, worker: WorkerProcess, *, reap: bool = False) -> None:
        """It takes no more runs (`reap`: and is killed and reaped, in the background)."""
        worker.retired = True
        if self._workers.get(worker.loader) is worker:
            del self._workers[worker.loader]
        if reap:
            self._in_background(self._reap(worker))

    # -- stopping --------------------------------------------------------------------------

    async def _retire(self, worker: WorkerProcess, *, after_run: bool = True) -> None:
        """Stop (after the run in flight unless closing) so cleanups run; SIGKILL the group
        after a short grace; reap."""
        try:
            if after_run:
                await worker.idle()
            await worker.stop(_STOP_GRACE)
            self._wake()  # its room, if its cleanups ran
        finally:
            await self._reap(worker)

    async def _reap(self, worker: WorkerProcess) -> None:
        """Kill the process group, wait for the process and its pipes; forget the worker."""
        try:
            await worker.reap(_REAP_TIMEOUT)
        finally:
            self._live.pop(worker.pid, None)
            self._wake()
            if reaper.is_subreaper():
                # What its loader left behind is ours now; killed with its group, it exits
                # about now: look again a moment later (no SIGCHLD handler: the loop owns it).
                reaper.reap_strays()
                asyncio.get_running_loop().call_later(_STRAY_WAIT, reaper.reap_strays)

    def _in_background(self, coro: Any) -> asyncio.Future[None]:
        task: asyncio.Future[None] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task
