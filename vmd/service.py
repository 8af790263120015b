"""The daemon's core: keeps every module fresh by running loaders when what they depend on
changes, and tells clients through a `Notifier`.

It owns the store, the worker pool and the watcher, and knows nothing of JSON-RPC or LSP:
`vmd.server` turns its calls into protocol messages.
"""

from __future__ import annotations

import asyncio
import logging
import os
import posixpath
from collections.abc import Iterable
from typing import Any, Protocol

from vmd import globs
from vmd.confine import parse_id
from vmd.errors import LoaderError, VmdError
from vmd.protocol import ChangedParams, ChangeReason, FileEvent, InitializationOptions
from vmd.store import Record, Store, rank
from vmd.watch import Watcher
from vmd.workers.ipc import Done
from vmd.workers.pool import WorkerPool
from vmd.workers.spawn import EarlyProcess

log = logging.getLogger("vmd.service")


class Notifier(Protocol):
    """What the service tells the outside world."""

    def changed(self, params: ChangedParams) -> None: ...

    def finished(self, rec: Record) -> None: ...

    def log(self, text: str) -> None: ...


class Service:
    """Module state, runs and invalidation for one workspace."""

    def __init__(
        self, *, roots: list[str], options: InitializationOptions, notifier: Notifier
    ) -> None:
        self.roots = [os.path.realpath(r) for r in roots]
        self.options = options
        self.notifier = notifier
        self.store = Store()
        self.pool = WorkerPool(
            roots=self.roots,
            mode=options.mode,
            timeout_ms=options.timeout_ms,
            max_workers=options.max_workers,
            on_log=self._on_worker_log,
            on_reload=self._on_worker_reload,
        )
        self.watcher: Watcher | None = None
        if options.mode == "serve":
            self.watcher = Watcher(self.on_paths_changed, on_restart=self.recheck_all)
        # Code generation per loader: bumped when the loader or a local import changes, so the
        # next run replaces the worker exactly once however many of its modules notice.
        self._code_gen: dict[str, int] = {}
        self._worker_gen: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
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

    def cached(self, id: str) -> bytes | None:
        """The encoded result of a fresh module whose dependencies are unchanged on disk."""
        rec = self.store.records.get(id)
        if rec is None or not rec.fresh or rec.encoded is None or rec.running is not None:
            return None
        sig = globs.signature
        for table in rec.tables():
            for path, seen in table.items():
                if sig(path) != seen:
                    return None
        return rec.encoded

    def version(self, id: str) -> int:
        """The version of `id`'s latest output (0: none yet, or an id that was refused)."""
        rec = self.store.records.get(id)
        return rec.version if rec is not None else 0

    def settled(self, id: str, version: int) -> bool:
        """Whether `id`'s output at `version` is still current: no run under way or since,
        and not reported stale."""
        rec = self.store.records.get(id)
        return rec is None or (rec.version == version and rec.fresh and rec.running is None)

    # -- requests --------------------------------------------------------------------------

    async def load(self, id: str, confined: dict[str, str] | None = None) -> Record:
        """The module's current output, running the loader if anything it depends on changed.

        `confined`: shared by loads asked for together (see `parse_id`).

        Raises:
            VmdError: the id is refused, or the loader failed (the error is cached until a
                dependency changes).
        """
        rec = self.store.get(id)
        if rec is None:
            rec = self.store.add(parse_id(id, self.roots, self.options.include, confined))
        elif rec.running is not None:
            # Compare with what the run in flight saw, once it ends (see _still_dirty): the
            # signatures of the previous run would report its own inputs again, and a code
            # change would replace the fresh worker a second time.
            rec.dirty = True
        else:
            self.recheck(rec)
        if not rec.fresh or rec.running is not None:
            await self._settle(rec)
        if rec.error is not None:
            raise rec.error
        return rec

    async def reload(self, id: str, data: Any) -> Record:
        """Re-run now with `ctx.data = data`."""
        rec = self.store.get(id)
        if rec is None:
            rec = self.store.add(parse_id(id, self.roots, self.options.include))
        rec.data = data
        self.mark_stale(rec, "reload", [], notify=rec.version > 0)
        await self._settle(rec)
        if rec.error is not None:
            raise rec.error
        return rec

    def invalidate(self, *, id: str | None = None, path: str | None = None) -> list[str]:
        """Drop cached output of `id`, or of every module depending on `path`."""
        recs: list[Record] = []
        if id is not None and (rec := self.store.get(id)) is not None:
            recs.append(rec)
        if path is not None:
            path = posixpath.normpath(path)
            for rec, kind in self.store.affected(path):
                if kind == "code":
                    self._bump(rec.loader)
                recs.append(rec)
            for rec in self.store.by_loader(os.path.realpath(path)):
                self._bump(rec.loader)
                recs.append(rec)
        out: list[str] = []
        for rec in dict.fromkeys(recs):
            if rec.running is not None:
                rec.reasons.add("invalidate")  # the burst runs once more (_still_dirty)
            elif rec.result is not None or rec.error is not None:
                self.store.drop_output(rec)
                self.notifier.changed(
                    ChangedParams(id=rec.id, version=rec.version, reason="invalidate")
                )
            else:
                continue  # nothing cached (never run, or invalidated already): nothing to drop
            out.append(rec.id)
        return out

    # -- change detection ------------------------------------------------------------------

    def on_paths_changed(self, paths: set[str]) -> None:
        """The watcher saw `paths` change: mark every module whose inputs really changed."""
        per_record: dict[Record, tuple[set[ChangeReason], list[FileEvent]]] = {}
        rediff: set[Record] = set()
        for path in paths:
            now = globs.signature(path)
            for rec, kind in self.store.affected(path):
                ev = rec.event_for(path, now)
                if ev is None:
                    continue
                if kind == "code" and rec.running is None:
                    # A run under way may have seen this very change (a client's hint came
                    # first): _still_dirty compares with what it saw before replacing its worker.
                    self._bump(rec.loader)
                reasons, events = per_record.setdefault(rec, (set(), []))
                reasons.add(kind)
                events.append(ev)
            # A folder a glob walked changed: files may have come or gone inside it.
            for rec in self.store.records.values():
                if path in rec.watched and path not in rec.watched_files:
                    rediff.add(rec)
        for rec in rediff:
            events = self._glob_diff(rec)
            if events:
                reasons, evs = per_record.setdefault(rec, (set(), []))
                reasons.add("watch")
                evs.extend(e for e in events if e not in evs)
        for rec, (reasons, events) in per_record.items():
            for reason in reasons:
                rec.reasons.add(reason)
            self.mark_stale(rec, max(reasons, key=rank), events)

    def on_hint(self, paths: set[str]) -> None:
        """A client's own watcher saw `paths` change (LSP `workspace/didChangeWatchedFiles`).

        Often sooner than ours, which waits for a quiet step. Treated like our watcher's report,
        so a change reported by both counts once: signatures decide."""
        if self.watcher is None:
            return
        if paths := worth_a_hint(paths):
            self.on_paths_changed(paths)

    def recheck(self, rec: Record) -> bool:
        """Stat what `rec` depends on; if anything changed, mark it stale. True if it did.

        This is what keeps a load that races the watcher from serving stale output."""
        changed = self.store.changed_paths(rec, globs.signature)
        if not changed:
            return False
        events: list[FileEvent] = []
        reason: ChangeReason = "watch"
        folders = [p for p in changed if p in rec.watched and p not in rec.watched_files]
        diff = self._glob_diff(rec) if folders else []
        if len(folders) == len(changed) and not diff:
            # Only a folder a glob walks changed (an editor's temporary file came and went, a
            # file the globs do not match): nothing the loader sees did. Remember the folder
            # as it is now, so the next load is served from memory again.
            for path in folders:
                rec.watched[path] = globs.signature(path)
            return False
        for path in changed:
            if path in folders:
                continue
            if rec.is_code(path):
                reason = "code"
                self._bump(rec.loader)
            ev = rec.event_for(path, globs.signature(path))
            if ev is not None:
                events.append(ev)
        events.extend(e for e in diff if e not in events)
        # In build mode nothing is watched and nobody awaits hot updates: a change found by
        # this re-check only makes the load that found it re-run, silently.
        self.mark_stale(rec, reason, events, notify=self.watcher is not None)
        return True

    def recheck_all(self) -> None:
        """After a watcher restart: catch up on whatever changed while it was not looking."""
        for rec in list(self.store.records.values()):
            if rec.version > 0 and rec.running is None:
                self.recheck(rec)

    def mark_stale(
        self, rec: Record, reason: ChangeReason, events: list[FileEvent], *, notify: bool = True
    ) -> None:
        """Record why `rec` is stale and make sure a run is under way; notify clients on the
        transition from fresh to stale (once per burst)."""
        rec.reasons.add(reason)
        for ev in events:
            rec.pending[ev.path] = ev.type
        if rec.running is not None:
            rec.dirty = True
            return
        # Only the fresh -> stale transition is reported: output already dropped (invalidated)
        # was reported then, and stays unserved until the run this starts.
        was_fresh = rec.fresh and rec.version > 0
        rec.fresh = False
        if notify and was_fresh:
            self.notifier.changed(
                ChangedParams(id=rec.id, version=rec.version, reason=reason, events=events)
            )
        self._start(rec)

    # -- runs ------------------------------------------------------------------------------

    async def _settle(self, rec: Record) -> None:
        if rec.running is None:
            self._start(rec)
        assert rec.running is not None
        await asyncio.shield(rec.running)

    def _start(self, rec: Record) -> None:
        task = asyncio.get_running_loop().create_task(self._run_burst(rec))
        rec.running = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_burst(self, rec: Record) -> None:
        """Run until the module reflects the final state of its inputs (coalescing a burst)."""
        try:
            while True:
                rec.dirty = False
                rec.code_changed = False
                await self._run_once(rec)
                if not self._still_dirty(rec):
                    break
        except Exception:  # never let one module's bookkeeping kill the daemon
            log.exception("internal error while running %s", rec.id)
        finally:
            rec.fresh = True
            rec.running = None
            rec.reasons.clear()
            self.notifier.finished(rec)
            self._update_watch()

    def _still_dirty(self, rec: Record) -> bool:
        if rec.code_changed or rec.data is not None or rec.reasons & {"reload", "invalidate"}:
            return True
        if not rec.dirty:
            return False
        # Events that arrived while the run was under way: rerun only for files whose state
        # differs from what the run itself saw.
        for path in list(rec.pending):
            if rec.tracks(path) and globs.signature(path) == rec.known(path):
                del rec.pending[path]
        changed = [*rec.pending, *self.store.changed_paths(rec, globs.signature)]
        if any(rec.is_code(path) for path in changed):
            self._bump(rec.loader)  # code the run did not see: the rerun needs a fresh worker
        return bool(changed)

    async def _run_once(self, rec: Record) -> None:
        events: list[tuple[str, str]] = [
            (kind, _relative(path, rec.folder)) for path, kind in rec.pending.items()
        ]
        # What this run is for, as it starts: a run that ends without reporting what it saw
        # (refused, crashed, timed out) still settles these changes, so a load does not find
        # them again, report them again and run again.
        seen = self.store.signatures(rec, globs.signature) if rec.pending else None
        rec.pending = {}
        rec.reasons.clear()
        data, rec.data = rec.data, None
        done: Done | None = None
        error: VmdError | None = None
        try:
            if rec.just_confined:
                rec.just_confined = False
            else:
                rec.mid = parse_id(rec.id, self.roots, self.options.include)  # it may have moved
            mid = rec.mid
            loader = mid.real
            gen = self._code_gen.get(loader, 0)
            if self._worker_gen.get(loader, 0) != gen:
                self._worker_gen[loader] = gen
                await self.pool.replace(loader)
            done = await self.pool.run(loader, rec.id, mid.query, events, data)
            if not done.ok and done.error is not None:
                error = LoaderError(
                    done.error.message,
                    id=rec.id,
                    file=done.error.file,
                    line=done.error.line,
                    traceback=done.error.traceback,
                )
        except VmdError as exc:
            error = exc
        self.store.record_run(rec, done, error, seen)

    def _bump(self, loader: str) -> None:
        self._code_gen[loader] = self._code_gen.get(loader, 0) + 1
        for rec in self.store.by_loader(loader):
            rec.code_changed = rec.running is not None or rec.code_changed

    def _glob_diff(self, rec: Record) -> list[FileEvent]:
        files, _ = globs.expand(rec.globs)
        now = set(files)
        events = [FileEvent(type="add", path=p) for p in sorted(now - rec.watched_files)]
        events += [FileEvent(type="unlink", path=p) for p in sorted(rec.watched_files - now)]
        return events

    def _update_watch(self) -> None:
        # Runs still finishing during close() must not touch the closed watcher: its error
        # would escape the run and leave the waiting request unanswered.
        if self.watcher is not None and not self._closed:
            self.watcher.watch(self.store.targets())

    # -- worker callbacks ------------------------------------------------------------------

    def _on_worker_log(self, loader: str, line: str) -> None:
        self.notifier.log(f"[{self._display(loader)}] {line}")

    def _on_worker_reload(self, id: str, data: Any) -> None:
        rec = self.store.get(id)
        if rec is None:
            return
        rec.data = data
        self.mark_stale(rec, "reload", [])

    def _display(self, path: str) -> str:
        for root in self.roots:
            if path.startswith(root + "/"):
                return path[len(root) + 1 :]
        return path


def worth_a_hint(paths: Iterable[str]) -> set[str]:
    """The paths of a client's hint to act on now (normalised): all but empty files, which an
    editor may have truncated and not written yet; our own watcher reports their final state."""
    out: set[str] = set()
    for path in paths:
        sig = globs.signature(path)
        if sig is None or sig[1] > 0 or os.path.isdir(path):
            out.add(posixpath.normpath(path))
    return out


def _relative(path: str, folder: str) -> str:
    return posixpath.relpath(path, folder)
