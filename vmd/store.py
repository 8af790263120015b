"""Module records and the invalidation graph: which module depends on which file.

Pure bookkeeping: no processes, no protocol. File state comes in through the `signature`
function the caller passes, so the whole module is testable with a fake file system.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from vmd import globs
from vmd.confine import ModuleId
from vmd.errors import VmdError
from vmd.protocol import ChangeReason, EventType, FileEvent, LoadResult
from vmd.workers.ipc import Done, Sig

SigFn = Callable[[str], Sig]
_encoder = msgspec.json.Encoder()

# When several reasons made a module stale, the notification names the strongest.
_RANK: dict[ChangeReason, int] = {"code": 3, "watch": 2, "reload": 1, "invalidate": 0}


def rank(reason: ChangeReason) -> int:
    """How strong a reason is: the strongest is what `vmd/changed` reports."""
    return _RANK[reason]


@dataclass(eq=False)
class Record:
    """Everything vmd knows about one module id."""

    mid: ModuleId
    version: int = 0
    result: LoadResult | None = None
    encoded: bytes | None = None  # `result` as JSON, so a cached load costs no encoding
    error: VmdError | None = None
    fresh: bool = False
    # What the last run depended on, with signatures as that run saw them (kept on failure).
    globs: list[str] = field(default_factory=list)
    watched: dict[str, Sig] = field(default_factory=dict)
    watched_files: set[str] = field(default_factory=set)
    code_deps: dict[str, Sig] = field(default_factory=dict)
    instance_deps: dict[str, Sig] = field(default_factory=dict)  # read at import / in setup
    data_deps: dict[str, Sig] = field(default_factory=dict)
    # What arrived since the last run started: path -> event kind, reasons, reload data.
    pending: dict[str, EventType] = field(default_factory=dict)
    reasons: set[ChangeReason] = field(default_factory=set)
    data: Any = None
    code_changed: bool = False
    dirty: bool = False  # something changed while a run was under way
    running: Any = None  # the service's task while a run (or a burst of runs) is under way
    # `mid` was confined just now, by the request that created the record: its first run may
    # use it as is. Every later run confines the id again (a symlink may have moved).
    just_confined: bool = False

    @property
    def id(self) -> str:
        return self.mid.id

    @property
    def loader(self) -> str:
        return self.mid.real

    @property
    def folder(self) -> str:
        return posixpath.dirname(self.mid.real)

    def reason(self) -> ChangeReason:
        """The strongest pending reason (what `vmd/changed` reports)."""
        return max(self.reasons, key=rank, default="watch")

    def dependency_paths(self) -> list[str]:
        """Absolute files the output depends on, for `LoadResult.dependencies`: only files that
        exist (the daemon also watches where a missing import or file could appear, but a client
        such as Vite's `addWatchFile` cannot take a path that does not exist)."""
        tables = (self.code_deps, self.instance_deps, self.data_deps)
        return sorted({p for table in tables for p, s in table.items() if s is not None})

    def glob_dirs(self) -> list[str]:
        """Existing folders the `watch` globs look in (`LoadResult.watch_dirs`): the literal
        base of each glob that has wildcards (a plain path is a file, listed in watch_files)."""
        out = {globs.split(p)[0] for p in self.globs if globs.has_magic(p)}
        return sorted(d for d in out if os.path.isdir(d))

    def known(self, path: str) -> Sig:
        """The signature this record last saw for `path` (None: absent or never seen)."""
        for table in self.tables():
            if path in table:
                return table[path]
        return None

    def tables(self) -> tuple[dict[str, Sig], ...]:
        """Every path -> signature table of the last run."""
        return (self.code_deps, self.instance_deps, self.watched, self.data_deps)

    def tracks(self, path: str) -> bool:
        return any(path in table for table in self.tables())

    def is_code(self, path: str) -> bool:
        """Whether a change of `path` needs a fresh worker process (not just a re-run): the
        loader, its local imports, and files read while importing or in `setup`."""
        return path in self.code_deps or path in self.instance_deps

    def event_for(self, path: str, now: Sig) -> FileEvent | None:
        """Classify a change of `path` by comparing what the last run saw with the file now."""
        before = self.known(path)
        if before == now and self.tracks(path):
            return None
        if before is None and now is None:
            return None
        kind: EventType = "add" if before is None else "unlink" if now is None else "change"
        return FileEvent(type=kind, path=path)


class Store:
    """All module records, indexed by id and by the files they depend on."""

    def __init__(self) -> None:
        self.records: dict[str, Record] = {}
        # exact path -> ids depending on it (code deps, data deps, watched files and folders)
        self._by_path: dict[str, set[str]] = {}
        # absolute glob pattern -> ids watching it
        self._by_glob: dict[str, set[str]] = {}

    def get(self, id: str) -> Record | None:
        return self.records.get(id)

    def add(self, mid: ModuleId) -> Record:
        rec = self.records.get(mid.id)
        if rec is None:
            rec = self.records[mid.id] = Record(mid, just_confined=True)
        return rec

    def by_loader(self, loader: str) -> list[Record]:
        return [r for r in self.records.values() if r.loader == loader]

    def record_run(
        self,
        rec: Record,
        done: Done | None,
        error: VmdError | None,
        seen: dict[str, Sig] | None = None,
    ) -> None:
        """Store a run's outcome and re-index its dependencies; bumps the version.

        A run without a `Done` reported no dependencies: the previous run's are kept, with
        the signatures in `seen` (taken as this run started) for the changes it was for."""
        self._unindex(rec)
        rec.version += 1
        if done is None and seen:
            for table in rec.tables():
                for path in table.keys() & seen.keys():
                    table[path] = seen[path]
        if done is not None:
            rec.globs = list(done.globs)
            rec.watched = dict(done.watched)
            rec.watched_files = {posixpath.normpath(posixpath.join(rec.folder, f))
                                 for f in done.watched_files}
            rec.code_deps = dict(done.code_deps)
            rec.instance_deps = dict(done.instance_deps)
            rec.data_deps = dict(done.data_deps)
        rec.code_deps.setdefault(rec.loader, globs.signature(rec.loader))
        if rec.mid.path != rec.loader:  # reached through a symlink: re-pointing it is a code edit
            rec.code_deps.setdefault(rec.mid.path, globs.signature(rec.mid.path))
        if error is None and done is not None and done.ok:
            rec.error = None
            rec.result = LoadResult(
                id=rec.id,
                code=done.code,
                map=done.map,
                version=rec.version,
                watch_files=sorted(rec.watched_files),
                dependencies=rec.dependency_paths(),
                watch_dirs=rec.glob_dirs(),
            )
            rec.encoded = _encoder.encode(rec.result)
        else:
            rec.error = error
            rec.result = None
            rec.encoded = None
        self._index(rec)

    def drop_output(self, rec: Record) -> None:
        """Forget cached output (invalidate); the next load runs the loader again."""
        rec.result = None
        rec.encoded = None
        rec.error = None
        rec.fresh = False

    def affected(self, path: str) -> list[tuple[Record, ChangeReason]]:
        """The records a change of `path` may concern, with the kind of dependency."""
        ids: set[str] = set(self._by_path.get(path, ()))
        for pattern, watchers in self._by_glob.items():
            if globs.matches(pattern, path):
                ids |= watchers
        out: list[tuple[Record, ChangeReason]] = []
        for id in ids:
            rec = self.records[id]
            out.append((rec, "code" if rec.is_code(path) else "watch"))
        return out

    def signatures(self, rec: Record, signature: SigFn) -> dict[str, Sig]:
        """What a run starting now is for, with its signature now: the paths reported changed
        and the folders the globs walk (a file come or gone there). Not every dependency: a
        data change must not stat all the files a large glob matched on its way to the page."""
        folders = (p for p in rec.watched if p not in rec.watched_files)
        return {path: signature(path) for path in (*rec.pending, *folders)}

    def changed_paths(self, rec: Record, signature: SigFn) -> list[str]:
        """Dependencies whose signature differs from what the last run saw (the stat re-check)."""
        out = []
        for table in rec.tables():
            for path, sig in table.items():
                if signature(path) != sig:
                    out.append(path)
        return out

    def targets(self) -> set[tuple[str, bool]]:
        """What the watcher must watch: glob bases (recursive when the glob needs it) and every
        dependency file, present or missing."""
        out: set[tuple[str, bool]] = set()
        for pattern in self._by_glob:
            out.add((globs.split(pattern)[0], globs.is_recursive(pattern)))
        for path in self._by_path:
            out.add((path, False))
        return out

    def _paths(self, rec: Record) -> Iterable[str]:
        yield from rec.code_deps
        yield from rec.instance_deps
        yield from rec.data_deps
        yield from (p for p, s in rec.watched.items() if p in rec.watched_files)

    def _index(self, rec: Record) -> None:
        for path in self._paths(rec):
            self._by_path.setdefault(path, set()).add(rec.id)
        for pattern in rec.globs:
            self._by_glob.setdefault(pattern, set()).add(rec.id)

    def _unindex(self, rec: Record) -> None:
        for path in self._paths(rec):
            ids = self._by_path.get(path)
            if ids is not None:
                ids.discard(rec.id)
                if not ids:
                    del self._by_path[path]
        for pattern in rec.globs:
            ids = self._by_glob.get(pattern)
            if ids is not None:
                ids.discard(rec.id)
                if not ids:
                    del self._by_glob[pattern]
