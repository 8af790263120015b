"""Module records and change detection: what each module depends on, and what a change makes stale.

The store is the only writer of module state. Pure bookkeeping: no processes, no protocol, no
clock. File state comes in through a `FileState` (`vmd.filestate`), so the whole module is
testable with a fake file system; a loader whose code changed is reported through
`on_code_changed` (the worker pool decides what that means for its processes).

A module's life, as the service drives it: `add` (first asked for), `mark_stale` (a change, a
reload), `begin` (a run, or a burst of runs, is under way), `take_run` (one run starts: what it
is for), `record_run` (its outcome), `still_dirty` (run again?), `finish` (the burst is over).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from vmd.chunks import Encoded, embed
from vmd.confine import ModuleId
from vmd.errors import VmdError
from vmd.filestate import DISK, FileState, Sig
from vmd.protocol import ChangedParams, ChangeReason, FileEvent, LoadResult
from vmd.record import Index, Mark, Outcome, Record, RunInput, rank
from vmd.table import Table
from vmd.workers.ipc import Done

__all__ = ["Mark", "Outcome", "RunInput", "Store"]

_encoder = msgspec.json.Encoder()


class Store:
    """All module records, indexed by id and by the files they depend on."""

    def __init__(
        self,
        files: FileState = DISK,
        on_code_changed: Callable[[str], None] = lambda loader: None,
        max_query_ids: int = 0,
    ) -> None:
        self.files = files
        self._on_code_changed = on_code_changed
        self._records = Table(max_query_ids)
        self._index = Index()

    # -- reading -----------------------------------------------------------------------------

    def __contains__(self, id: str) -> bool:
        return id in self._records

    def outcome(self, id: str) -> Outcome | None:
        rec = self._records.get(id)
        return rec.outcome if rec is not None else None

    def running(self, id: str) -> bool:
        return self._records[id].running

    def cached(self, id: str, stat_limit: int | None = None) -> Encoded | None:
        """The encoded result of a fresh module whose dependencies are unchanged on disk (the
        stat re-check that keeps a load racing the watcher from serving stale output). None
        too for one with more than `stat_limit` dependencies: ask the watcher (`fenced`)."""
        rec = self._records.get(id)
        if rec is None or not rec.fresh or rec.running or rec.many_dependencies(stat_limit):
            return None
        self._records.touch(id)
        encoded = rec.outcome.encoded
        if encoded is None:
            return None
        sig = self.files.signature
        for table in rec.tables():
            for path, seen in table.items():
                if sig(path) != seen:
                    return None
        return encoded

    def fenced(self, id: str, stat_limit: int) -> bool:
        """Whether `id` is fresh with more than `stat_limit` dependencies (see `cached`)."""
        rec = self._records[id]
        return rec.fresh and not rec.running and rec.many_dependencies(stat_limit)

    def needs_run(self, id: str) -> bool:
        """Whether a load must wait for a run: the output is stale, or a run is under way."""
        rec = self._records[id]
        return not rec.fresh or rec.running

    def version(self, id: str) -> int:
        """The version of `id`'s latest output (0: none yet, or an id that was refused)."""
        rec = self._records.get(id)
        return rec.version if rec is not None else 0

    def settled(self, id: str, version: int) -> bool:
        """Whether `id`'s output at `version` is still current: no run under way or since,
        and not reported stale."""
        rec = self._records.get(id)
        return rec is None or (rec.version == version and rec.fresh and not rec.running)

    def ids_of(self, loader: str) -> list[str]:
        """The ids of every module of the loader at real path `loader`."""
        return [r.id for r in self._records.of_loader(loader)]

    def targets(self) -> set[tuple[str, bool]]:
        """What the watcher must watch: glob bases (recursive when the glob needs it) and every
        dependency file, present or missing."""
        return self._index.targets()

    # -- requests ----------------------------------------------------------------------------

    def add(self, mid: ModuleId) -> None:
        """A module first asked for; `mid` was confined just now, so its first run may use it."""
        if mid.id not in self._records:
            self._records.add(mid)

    def touch(self, id: str) -> None:
        """`id` was asked for: the last to forget (see `forget_beyond`)."""
        self._records.touch(id)

    def forget_beyond(self, keep: Callable[[str], bool]) -> list[Outcome]:
        """Forget the least recently loaded ids with a query beyond `max_query_ids`, but not
        those running or to `keep`: their memory is given back, and a later load of one runs
        it as new. Returns their last outcomes."""
        gone = self._records.forget_beyond(lambda rec: rec.running or keep(rec.id))
        for rec in gone:
            self._index.remove(rec)
        return [rec.outcome for rec in gone]

    def mark_dirty(self, id: str) -> None:
        """A load arrived while a run is under way: once it ends, compare with what it saw (see
        `still_dirty`). The signatures of the previous run would report its own inputs again,
        and a code change would replace the fresh worker a second time."""
        self._records[id].dirty = True

    def reload(self, id: str, data: Any, *, notify: bool = True) -> Mark:
        """Re-run with `ctx.data = data` (a `vmd/reload`, or `ctx.reload()` in the loader)."""
        self._records[id].data = data
        return self.mark_stale(id, "reload", [], notify=notify)

    def invalidate(self, *, id: str | None = None, path: str | None = None
                   ) -> tuple[list[str], list[Mark]]:
        """Drop cached output of `id`, or of every module depending on `path` (normalised,
        absolute). Returns the ids dropped and what to tell clients."""
        recs: list[Record] = []
        if id is not None and (rec := self._records.get(id)) is not None:
            recs.append(rec)
        if path is not None:
            for rec, kind in self._affected(path):
                if kind == "code":
                    self._code_changed(rec.loader)
                recs.append(rec)
            real = self.files.realpath(path)
            for rec in self._records.of_loader(real):
                self._code_changed(rec.loader)
                recs.append(rec)
        out: list[str] = []
        marks: list[Mark] = []
        for rec in dict.fromkeys(recs):
            if rec.running:
                rec.reasons.add("invalidate")  # the burst runs once more (still_dirty)
            elif rec.outcome.result is not None or rec.outcome.error is not None:
                rec.outcome = Outcome(id=rec.id, loader=rec.loader, version=rec.version)
                rec.fresh = False
                changed = ChangedParams(id=rec.id, version=rec.version, reason="invalidate")
                marks.append(Mark(rec.id, changed, start=False))
            else:
                continue  # nothing cached (never run, or invalidated already): nothing to drop
            out.append(rec.id)
        return out, marks

    # -- change detection --------------------------------------------------------------------

    def on_paths_changed(self, paths: Iterable[str]) -> list[Mark]:
        """`paths` changed on disk (the watcher or a client said so): mark every module whose
        inputs really changed. Signatures decide, so a change reported twice counts once."""
        per_record: dict[Record, tuple[set[ChangeReason], list[FileEvent]]] = {}
        rediff: set[Record] = set()
        for path in paths:
            now = self.files.signature(path)
            for rec, kind in self._affected(path):
                ev = rec.event_for(path, now)
                if ev is None:
                    continue
                if kind == "code" and not rec.running:
                    # A run under way may have seen this very change (a client's hint came
                    # first): still_dirty compares with what it saw before replacing its worker.
                    self._code_changed(rec.loader)
                reasons, events = per_record.setdefault(rec, (set(), []))
                reasons.add(kind)
                events.append(ev)
            # A folder a glob walked changed: files may have come or gone inside it.
            for rec in self._records.values():
                if rec.is_walked_folder(path):
                    rediff.add(rec)
        for rec in rediff:
            events = rec.glob_diff(self.files)
            if events:
                reasons, evs = per_record.setdefault(rec, (set(), []))
                reasons.add("watch")
                evs.extend(e for e in events if e not in evs)
        marks: list[Mark] = []
        for rec, (reasons, events) in per_record.items():
            rec.reasons |= reasons
            marks.append(self.mark_stale(rec.id, max(reasons, key=rank), events))
        return marks

    def recheck(self, id: str, *, notify: bool = True) -> Mark | None:
        """Stat what `id` depends on; if anything changed, mark it stale (None: nothing did).

        This is what keeps a load that races the watcher from serving stale output."""
        rec = self._records[id]
        changed = self._changed_paths(rec)
        if not changed:
            return None
        events: list[FileEvent] = []
        reason: ChangeReason = "watch"
        folders = [p for p in changed if rec.is_walked_folder(p)]
        diff = rec.glob_diff(self.files) if folders else []
        if len(folders) == len(changed) and not diff:
            # Only a folder a glob walks changed (an editor's temporary file came and went, a
            # file the globs do not match): nothing the loader sees did. Remember the folder
            # as it is now, so the next load is served from memory again.
            for path in folders:
                rec.watched[path] = self.files.signature(path)
            return None
        for path in changed:
            if path in folders:
                continue
            if rec.is_code(path):
                reason = "code"
                self._code_changed(rec.loader)
            ev = rec.event_for(path, self.files.signature(path))
            if ev is not None:
                events.append(ev)
        events.extend(e for e in diff if e not in events)
        return self.mark_stale(id, reason, events, notify=notify)

    def recheck_siblings(self, id: str, *, notify: bool = True) -> list[Mark]:
        """Before a new module's first run: the loader's other modules ran in the worker it will
        run in, so code they imported that changed unreported (the watcher lags) makes them
        stale and that worker outdated, or the new module would run the old code."""
        rec = self._records[id]
        others = [r for r in self._records.of_loader(rec.loader) if r is not rec]
        seen: dict[str, Sig] = {}
        for other in others:
            if other.fresh:
                seen.update(other.code_deps)
        if all(self.files.signature(path) == sig for path, sig in seen.items()):
            return []
        self._code_changed(rec.loader)
        marks = (self.recheck(r.id, notify=notify) for r in others if not r.running)
        return [m for m in marks if m is not None]

    def recheck_all(self) -> list[Mark]:
        """Re-check every module that has run and is not running (after a watcher restart)."""
        recs = [rec for rec in self._records.values() if rec.version > 0 and not rec.running]
        return [mark for rec in recs if (mark := self.recheck(rec.id)) is not None]

    def mark_stale(
        self, id: str, reason: ChangeReason, events: list[FileEvent], *, notify: bool = True
    ) -> Mark:
        """Record why `id` is stale. Clients hear of the fresh -> stale transition only (once
        per burst); a run is started unless one is under way (it runs again, see still_dirty)."""
        rec = self._records[id]
        rec.reasons.add(reason)
        for ev in events:
            rec.pending[ev.path] = ev.type
        if rec.running:
            rec.dirty = True
            return Mark(id, None, start=False)
        # Output already dropped (invalidated) was reported then, and stays unserved until the
        # run this starts.
        was_fresh = rec.fresh and rec.version > 0
        rec.fresh = False
        rec.running = True  # the service starts the run this asks for
        changed = None
        if notify and was_fresh:
            changed = ChangedParams(id=id, version=rec.version, reason=reason, events=events)
        return Mark(id, changed, start=True)

    # -- runs --------------------------------------------------------------------------------

    def begin(self, id: str) -> None:
        """A run (or a burst of runs until `still_dirty` says no more) is under way."""
        self._records[id].running = True

    def confine(self, id: str, mid: ModuleId) -> None:
        """`id` was confined again as a run started (a symlink may have moved)."""
        self._records[id].mid = mid

    def take_run(self, id: str) -> RunInput:
        """One run of `id` starts: what it is for, taken from what arrived since the last.

        `seen`: the paths reported changed and the folders the globs walk, with their signature
        now, so a run that ends without reporting what it saw (refused, crashed, timed out)
        still settles these changes, and a load does not find them again, report them again
        and run again. Not every dependency: a data change must not stat all the files a large
        glob matched on its way to the page."""
        rec = self._records[id]
        rec.dirty = False
        rec.ran_old_code = False
        events: list[tuple[str, str]] = [
            (kind, posixpath.relpath(path, rec.folder)) for path, kind in rec.pending.items()
        ]
        seen = None
        if rec.pending:
            folders = (p for p in rec.watched if p not in rec.watched_files)
            seen = {path: self.files.signature(path) for path in (*rec.pending, *folders)}
        rec.pending = {}
        rec.reasons.clear()
        data, rec.data = rec.data, None
        confined = rec.mid if rec.just_confined else None
        rec.just_confined = False
        return RunInput(events=events, data=data, seen=seen, confined=confined)

    def record_run(
        self,
        id: str,
        done: Done | None,
        error: VmdError | None,
        seen: dict[str, Sig] | None = None,
    ) -> None:
        """Store a run's outcome and re-index its dependencies; bumps the version.

        A run without a `Done` reported no dependencies: the previous run's are kept, with
        the signatures in `seen` (taken as this run started) for the changes it was for."""
        rec = self._records[id]
        self._index.remove(rec)
        version = rec.version + 1
        if done is None and seen:
            for table in rec.tables():
                for path in table.keys() & seen.keys():
                    table[path] = seen[path]
        if done is not None:
            rec.globs = list(done.globs)
            rec.watched = dict(done.watched)
            rec.watched_files = set(done.watched_files)
            rec.code_deps = dict(done.code_deps)
            rec.instance_deps = dict(done.instance_deps)
            rec.data_deps = dict(done.data_deps)
        rec.code_deps.setdefault(rec.loader, self.files.signature(rec.loader))
        if rec.mid.path != rec.loader:  # reached through a symlink: re-pointing it is a code edit
            rec.code_deps.setdefault(rec.mid.path, self.files.signature(rec.mid.path))
        if error is None and done is not None and done.ok:
            result = LoadResult(
                id=rec.id,
                code=done.code,
                map=done.map,
                version=version,
                watch_files=done.watched_files,
                dependencies=rec.dependency_paths(),
                watch_dirs=rec.glob_dirs(self.files),
            )
            plain = _encoder.encode(result)  # a large module's code: the worker's JSON pieces
            encoded: Encoded = embed(plain, b"code", done.code_json) if done.large else plain
            rec.outcome = Outcome(id=rec.id, loader=rec.loader, version=version, result=result,
                                  encoded=encoded, first=version == rec.first)
        else:
            rec.outcome = Outcome(id=rec.id, loader=rec.loader, version=version, error=error,
                                  first=version == rec.first)
        self._index.add(rec)

    def still_dirty(self, id: str) -> bool:
        """After a run: whether the module must run again to reflect the final state of its
        inputs (coalescing a burst: only files whose state differs from what the run saw)."""
        rec = self._records[id]
        if rec.ran_old_code or rec.data is not None or rec.reasons & {"reload", "invalidate"}:
            return True
        if not rec.dirty:
            return False
        for path in list(rec.pending):
            if rec.tracks(path) and self.files.signature(path) == rec.known(path):
                del rec.pending[path]
        changed = [*rec.pending, *self._changed_paths(rec)]
        if any(rec.is_code(path) for path in changed):
            self._code_changed(rec.loader)  # code the run did not see: a fresh worker
        return bool(changed)

    def finish(self, id: str, *, fresh: bool = True) -> Outcome:
        """The burst is over: the output is current until something changes (not `fresh`: it
        was stopped; the next load runs, and re-checks finds the changes it was for)."""
        rec = self._records[id]
        rec.fresh = fresh
        rec.running = False
        rec.reasons.clear()
        return rec.outcome

    # -- internals ---------------------------------------------------------------------------

    def _code_changed(self, loader: str) -> None:
        self._on_code_changed(loader)
        for rec in self._records.values():
            if rec.loader == loader:
                rec.ran_old_code = rec.running or rec.ran_old_code

    def _affected(self, path: str) -> list[tuple[Record, ChangeReason]]:
        """The records a change of `path` may concern, with the kind of dependency."""
        out: list[tuple[Record, ChangeReason]] = []
        for id in self._index.ids_for(path):
            rec = self._records[id]
            out.append((rec, "code" if rec.is_code(path) else "watch"))
        return out

    def _changed_paths(self, rec: Record) -> list[str]:
        """Dependencies whose signature differs from what the last run saw."""
        sig = self.files.signature
        return [path for table in rec.tables() for path, seen in table.items() if sig(path) != seen]

