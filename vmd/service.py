"""The daemon's core: keeps every module fresh by running loaders when what they depend on
changes, and tells clients through a `Notifier`.

It owns the store, the worker pool and the watcher, and knows nothing of JSON-RPC or LSP:
`vmd.server` turns its calls into protocol messages.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import posixpath
from collections.abc import Iterable
from typing import Any, Protocol

from vmd.chunks import Encoded
from vmd.confine import parse_id
from vmd.errors import LoaderError, VmdError
from vmd.filestate import signature
from vmd.paths import relative_to_root
from vmd.protocol import ChangedParams, InitializationOptions
from vmd.store import Mark, Outcome, Store
from vmd.watch import Watcher
from vmd.workers import memory
from vmd.workers.ipc import Done
from vmd.workers.pool import WorkerPool
from vmd.workers.reaper import is_subreaper
from vmd.workers.spawn import EarlyProcess

log = logging.getLogger("vmd.service")

# A fresh module with more dependencies than this is vouched for by the watcher's fence on a
# load, not re-stated (5.6 µs a path here: 500 take ~3 ms, what a fence takes).
_STAT_LIMIT = 500


class Notifier(Protocol):
    """What the service tells the outside world."""

    def changed(self, params: ChangedParams) -> None: ...

    def finished(self, outcome: Outcome) -> None:
        """A run ended, or a module was forgotten (an outcome with neither result nor error)."""

    def log(self, text: str) -> None: ...


def preloading(options: InitializationOptions) -> bool:
    """Fork workers from a preloader: unless turned off (the `preload` option, `VMD_PRELOAD=0`)
    or impossible (this process is not a child subreaper: not Linux, or not `vmd serve`)."""
    return options.preload and os.environ.get("VMD_PRELOAD", "1") != "0" and is_subreaper()


def memory_limit_mb(options: InitializationOptions) -> int:
    """Each worker's memory limit (0: none): the option, or a share of the machine's memory."""
    limit = options.memory_limit_mb
    return memory.default_limit_mb() if limit is None else limit


class Service:
    """Module state, runs and invalidation for one workspace."""

    def __init__(
        self, *, roots: list[str], options: InitializationOptions, notifier: Notifier
    ) -> None:
        self.roots = [os.path.realpath(r) for r in roots]
        self.options = options
        self.notifier = notifier
        self.pool = WorkerPool(
            roots=self.roots,
            mode=options.mode,
            timeout_ms=options.timeout_ms,
            max_workers=options.max_workers,
            preload=preloading(options),
            memory_limit_mb=memory_limit_mb(options),
            on_log=self._on_worker_log,
            on_reload=self._on_worker_reload,
        )
        # The pool alone decides what a code change means for its processes.
        self.store = Store(on_code_changed=self.pool.code_changed,
                           max_query_ids=options.max_query_ids)
        self.watcher: Watcher | None = None
        if options.mode == "serve":
            self.watcher = Watcher(
                self.on_paths_changed, on_restart=self.recheck_all, roots=self.roots, fences=True
            )
        self._runs: dict[str, asyncio.Task[bool]] = {}  # id -> its burst of runs under way
        self._waiters: collections.Counter[str] = collections.Counter()  # id -> loads waiting
        self._stopped: set[str] = set()  # bursts being stopped: nobody waits for them any more
        self._tasks: set[asyncio.Task[bool]] = set()
        self._closed = False

    async def start(self, early: EarlyProcess | None = None) -> None:
        """Get the warm spare ready (`early`: a worker process the daemon started at once)."""
        try:
            await self.pool.start(early)
        except OSError as exc:  # a root that does not exist yet: runs start their own later
            log.warning(
                "no spare worker in %s for now (%s); one starts when a loader runs",
                ", ".join(self.roots), exc.strerror or exc,
            )

    async def close(self) -> None:
        self._closed = True
        if self.watcher is not None:
            await self.watcher.close()
        await self.pool.close()

    def kill_workers(self) -> None:
        """Synchronous last resort on exit: no worker may outlive the daemon."""
        self.pool.kill_all()

    # -- the hot path --------------------------------------------------------------------

    def cached(self, id: str) -> Encoded | None:
        """The encoded result of a fresh module whose dependencies are unchanged on disk."""
        return self.store.cached(id, None if self.watcher is None else _STAT_LIMIT)

    def version(self, id: str) -> int:
        """The version of `id`'s latest output (0: none yet, or an id that was refused)."""
        return self.store.version(id)

    def settled(self, id: str, version: int) -> bool:
        """Whether `id`'s output at `version` is still current: no run under way or since,
        and not reported stale."""
        return self.store.settled(id, version)

    def ids_of(self, loader: str) -> list[str]:
        """The ids of every module of the loader at real path `loader` the daemon knows."""
        return self.store.ids_of(loader)

    # -- requests --------------------------------------------------------------------------

    async def load(self, id: str, confined: dict[str, str] | None = None) -> Outcome:
        """The module's current output, running the loader if anything it depends on changed.

        `confined`: shared by loads asked for together (see `parse_id`).

        Raises:
            VmdError: the id is refused, or the loader failed (the error is cached until a
                dependency changes).
        """
        store = self.store
        if id not in store:
            store.add(parse_id(id, self.roots, self.options.include, confined))
            self._forget_beyond(id)
            self._apply(store.recheck_siblings(id, notify=self.watcher is not None))
        elif store.running(id):
            store.mark_dirty(id)
        else:
            store.touch(id)
            if not await self._fenced(id):
                # In build mode nothing is watched and nobody awaits hot updates: a change found
                # by this re-check only makes the load that found it re-run, silently.
                self._apply([store.recheck(id, notify=self.watcher is not None)])
        if store.needs_run(id):
            await self._settle(id)
        return _raise_error(store.outcome(id))

    async def reload(self, id: str, data: Any) -> Outcome:
        """Re-run now with `ctx.data = data`."""
        store = self.store
        if id not in store:
            store.add(parse_id(id, self.roots, self.options.include))
            self._forget_beyond(id)
        store.touch(id)
        self._apply([store.reload(id, data, notify=store.version(id) > 0)])
        await self._settle(id)
        return _raise_error(store.outcome(id))

    def invalidate(self, *, id: str | None = None, path: str | None = None) -> list[str]:
        """Drop cached output of `id`, or of every module depending on `path`."""
        if path is not None:
            path = posixpath.normpath(path)
        ids, marks = self.store.invalidate(id=id, path=path)
        self._apply(marks)
        return ids

    async def _fenced(self, id: str) -> bool:
        """Whether the watcher vouches that nothing fresh `id` depends on changed unreported
        (its fence: ~3 ms), asked instead of re-stating more than `_STAT_LIMIT` paths."""
        if self.watcher is None or not self.store.fenced(id, _STAT_LIMIT):
            return False
        self._waiters[id] += 1  # not forgotten meanwhile (see _forget_beyond)
        try:
            return await self.watcher.fence()
        finally:
            self._waiters[id] -= 1
            if self._waiters[id] <= 0:
                del self._waiters[id]

    def _forget_beyond(self, new: str) -> None:
        """Beyond `maxQueryIds` ids with a query, forget the least recently loaded that no one
        waits for: clients hear they are invalidated, their workers drop their instances."""
        gone = self.store.forget_beyond(lambda id: id == new or self._waiters[id] > 0)
        of_loader: dict[str, list[str]] = {}
        for outcome in gone:
            if outcome.result is not None or outcome.error is not None:
                self.notifier.changed(
                    ChangedParams(id=outcome.id, version=outcome.version, reason="invalidate"))
            # No output any more: the editor drops what it showed of it (a loader error).
            self.notifier.finished(Outcome(id=outcome.id, loader=outcome.loader,
                                           version=outcome.version))
            of_loader.setdefault(outcome.loader, []).append(outcome.id)
        for loader, ids in of_loader.items():
            self.pool.forget(loader, ids)
        if gone:
            self._update_watch()

    # -- change detection ------------------------------------------------------------------

    def on_paths_changed(self, paths: set[str]) -> None:
        """The watcher saw `paths` change: mark every module whose inputs really changed."""
        self._apply(self.store.on_paths_changed(paths))

    def on_hint(self, paths: set[str]) -> None:
        """A client's own watcher saw `paths` change (LSP `workspace/didChangeWatchedFiles`).

        Often sooner than ours, which waits for a quiet step. Treated like our watcher's report,
        so a change reported by both counts once: signatures decide."""
        if self.watcher is None:
            return
        if paths := worth_a_hint(paths):
            self.on_paths_changed(paths)

    def recheck_all(self) -> None:
        """After a watcher restart: catch up on whatever changed while it was not looking."""
        self._apply(self.store.recheck_all())

    def _apply(self, marks: Iterable[Mark | None]) -> None:
        """Do what marking modules stale asked for: tell clients, start runs."""
        for mark in marks:
            if mark is None:
                continue
            if mark.changed is not None:
                self.notifier.changed(mark.changed)
            if mark.start:
                self._start(mark.id)

    # -- runs ------------------------------------------------------------------------------

    def stop_unwaited(self, ids: Iterable[str]) -> None:
        """The requests for `ids` were cancelled: stop the runs of those no other load waits
        for (the next load runs again; see `WorkerPool.stop_run`)."""
        for id in ids:
            task = self._runs.get(id)
            if task is None or self._waiters[id] > 0 or id in self._stopped:
                continue
            self._stopped.add(id)
            self.pool.stop_run(id)
            task.cancel()

    async def _settle(self, id: str) -> None:
        """Wait for `id`'s burst of runs, counted as waiting for it (a burst stopped because
        no one else waited is started again for this load)."""
        self._waiters[id] += 1
        try:
            while True:
                task = self._runs.get(id)
                if task is None:
                    self.store.begin(id)
                    task = self._start(id)
                if await asyncio.shield(task):
                    return
        finally:
            self._waiters[id] -= 1
            if self._waiters[id] <= 0:
                del self._waiters[id]

    def _start(self, id: str) -> asyncio.Task[bool]:
        task = asyncio.get_running_loop().create_task(self._run_burst(id))
        self._runs[id] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run_burst(self, id: str) -> bool:
        """Run until the module reflects the final state of its inputs (coalescing a burst).
        False: stopped (`stop_unwaited`); the output stays stale, with what it depended on."""
        store = self.store
        stopped = False
        try:
            while True:
                await self._run_once(id)
                if not store.still_dirty(id):
                    break
        except asyncio.CancelledError:
            if id not in self._stopped:
                raise
            stopped = True
        except Exception:  # never let one module's bookkeeping kill the daemon
            log.exception("internal error while running %s", id)
        finally:
            self._stopped.discard(id)
            outcome = store.finish(id, fresh=not stopped)
            del self._runs[id]
            self.notifier.finished(outcome)
            self._update_watch()
        return not stopped

    async def _run_once(self, id: str) -> None:
        run = self.store.take_run(id)
        done: Done | None = None
        error: VmdError | None = None
        try:
            mid = run.confined
            if mid is None:
                mid = parse_id(id, self.roots, self.options.include)  # it may have moved
                self.store.confine(id, mid)
            done = await self.pool.run(mid.real, id, mid.query, run.events, run.data)
            if not done.ok and done.error is not None:
                error = LoaderError(
                    done.error.message,
                    id=id,
                    file=done.error.file,
                    line=done.error.line,
                    traceback=done.error.traceback,
                )
        except VmdError as exc:
            error = exc
        self.store.record_run(id, done, error, run.seen)

    def _update_watch(self) -> None:
        # Runs still finishing during close() must not touch the closed watcher: its error
        # would escape the run and leave the waiting request unanswered.
        if self.watcher is not None and not self._closed:
            self.watcher.watch(self.store.targets())

    # -- worker callbacks ------------------------------------------------------------------

    def _on_worker_log(self, loader: str, text: str) -> None:
        """What a worker printed, in whole lines: one message, each line prefixed."""
        prefix = f"[{relative_to_root(loader, self.roots)}] "
        self.notifier.log(prefix + text.replace("\n", "\n" + prefix))

    def _on_worker_reload(self, id: str, data: Any) -> None:
        if id in self.store:
            self._apply([self.store.reload(id, data)])


def worth_a_hint(paths: Iterable[str]) -> set[str]:
    """The paths of a client's hint to act on now (normalised): all but empty files, which an
    editor may have truncated and not written yet; our own watcher reports their final state."""
    out: set[str] = set()
    for path in paths:
        sig = signature(path)
        if sig is None or sig[1] > 0 or os.path.isdir(path):
            out.add(posixpath.normpath(path))
    return out


def _raise_error(outcome: Outcome | None) -> Outcome:
    """`outcome`, or its error raised."""
    assert outcome is not None
    if outcome.error is not None:
        raise outcome.error
    return outcome
