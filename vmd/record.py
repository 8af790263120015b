"""One module's record, the index of what records depend on, and the immutable values the
store hands out about them.

Written by `vmd.store.Store` only; everything else sees `Outcome`s.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from vmd import globs
from vmd.chunks import Chunks, Encoded
from vmd.confine import ModuleId
from vmd.errors import VmdError
from vmd.filestate import FileState, Sig
from vmd.protocol import ChangedParams, ChangeReason, EventType, FileEvent, LoadResult

# When several reasons made a module stale, the notification names the strongest.
_RANK: dict[ChangeReason, int] = {"code": 3, "watch": 2, "reload": 1, "invalidate": 0}


def rank(reason: ChangeReason) -> int:
    """How strong a reason is: the strongest is what `vmd/changed` reports."""
    return _RANK[reason]


@dataclass(frozen=True, slots=True)
class Outcome:
    """A module's latest output as handed out: never the live record.

    Exactly one of `result` (with `encoded`, its JSON, so a cached load costs no encoding) and
    `error` is set once the module has run; neither before, or after an invalidate."""

    id: str
    loader: str
    version: int = 0
    result: LoadResult | None = None
    encoded: Encoded | None = None  # a large module's in pieces (its result.code is "")
    error: VmdError | None = None
    first: bool = False  # the output of the id's first run (a new module)

    def code(self) -> str:
        """The module's code (decoded from its pieces for a large one: for the editor)."""
        assert self.result is not None
        if isinstance(self.encoded, Chunks) and not self.result.code:
            return str(msgspec.json.decode(b"".join(self.encoded))["code"])
        return self.result.code


@dataclass(frozen=True, slots=True)
class Mark:
    """What marking a module stale asks of the service: tell clients (`changed`), and start a
    run (`start`: none was under way; the record counts as running from now on)."""

    id: str
    changed: ChangedParams | None
    start: bool


@dataclass(frozen=True, slots=True)
class RunInput:
    """What one run is for, taken as it starts."""

    events: list[tuple[str, str]]  # (type, path relative to the loader's folder)
    data: Any
    # What the run is for with its signature now (see `Store.take_run`); None: nothing pending.
    seen: dict[str, Sig] | None
    # The id as confined by the request that created the record, for its first run; None:
    # confine it again (a symlink may have moved).
    confined: ModuleId | None


@dataclass(eq=False)
class Record:
    """Everything vmd knows about one module id. Written by `Store` only."""

    mid: ModuleId
    outcome: Outcome
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
    # The loader's code changed while a run was under way: run again whatever it saw.
    ran_old_code: bool = False
    dirty: bool = False  # something changed while a run was under way
    running: bool = False  # a run (or a burst of runs) is under way
    just_confined: bool = False
    first: int = 1  # the version of its first run (above any forgotten id's, see `Table`)

    @property
    def id(self) -> str:
        return self.mid.id

    @property
    def loader(self) -> str:
        return self.mid.real

    @property
    def folder(self) -> str:
        return posixpath.dirname(self.mid.real)

    @property
    def version(self) -> int:
        return self.outcome.version

    def dependency_paths(self) -> list[str]:
        """Absolute files the output depends on, for `LoadResult.dependencies`: only files that
        exist (the daemon also watches where a missing import or file could appear, but a client
        such as Vite's `addWatchFile` cannot take a path that does not exist)."""
        tables = (self.code_deps, self.instance_deps, self.data_deps)
        return sorted({p for table in tables for p, s in table.items() if s is not None})

    def known(self, path: str) -> Sig:
        """The signature this record last saw for `path` (None: absent or never seen)."""
        for table in self.tables():
            if path in table:
                return table[path]
        return None

    def tables(self) -> tuple[dict[str, Sig], ...]:
        """Every path -> signature table of the last run."""
        return (self.code_deps, self.instance_deps, self.watched, self.data_deps)

    def many_dependencies(self, limit: int | None) -> bool:
        """Whether it has more than `limit` paths to re-stat (None: no limit)."""
        return limit is not None and sum(map(len, self.tables())) > limit

    def tracks(self, path: str) -> bool:
        return any(path in table for table in self.tables())

    def is_code(self, path: str) -> bool:
        """Whether a change of `path` needs a fresh worker process (not just a re-run): the
        loader, its local imports, and files read while importing or in `setup`."""
        return path in self.code_deps or path in self.instance_deps

    def is_walked_folder(self, path: str) -> bool:
        """Whether `path` is a folder the globs walked (a file may come or go in it)."""
        return path in self.watched and path not in self.watched_files

    def event_for(self, path: str, now: Sig) -> FileEvent | None:
        """Classify a change of `path` by comparing what the last run saw with the file now."""
        before = self.known(path)
        if before == now and self.tracks(path):
            return None
        if before is None and now is None:
            return None
        kind: EventType = "add" if before is None else "unlink" if now is None else "change"
        return FileEvent(type=kind, path=path)

    def glob_diff(self, files: FileState) -> list[FileEvent]:
        """Files the `watch` globs match now that the last run did not see, and those gone."""
        now = set(files.expand(self.globs)[0])
        events = [FileEvent(type="add", path=p) for p in sorted(now - self.watched_files)]
        events += [FileEvent(type="unlink", path=p) for p in sorted(self.watched_files - now)]
        return events

    def glob_dirs(self, files: FileState) -> list[str]:
        """Existing folders the `watch` globs look in (`LoadResult.watch_dirs`): the literal
        base of each glob that has wildcards (a plain path is a file, listed in watch_files)."""
        out = {globs.split(p)[0] for p in self.globs if globs.has_magic(p)}
        return sorted(d for d in out if files.is_dir(d))


class Index:
    """Which ids depend on which paths and globs: what a file change may concern."""

    def __init__(self) -> None:
        # exact path -> ids depending on it (code and data deps; the files a glob matched are
        # found through the glob: 100,000 of them must not cost 100,000 entries and watch targets)
        self._by_path: dict[str, set[str]] = {}
        # absolute glob pattern -> ids watching it
        self._by_glob: dict[str, set[str]] = {}

    def ids_for(self, path: str) -> set[str]:
        """The ids whose last run depended on `path`, or whose globs match it."""
        ids: set[str] = set(self._by_path.get(path, ()))
        for pattern, watchers in self._by_glob.items():
            if globs.matches(pattern, path):
                ids |= watchers
        return ids

    def targets(self) -> set[tuple[str, bool]]:
        """Glob bases (recursive when the glob needs it) and every dependency file."""
        out: set[tuple[str, bool]] = set()
        for pattern in self._by_glob:
            out.add((globs.split(pattern)[0], globs.is_recursive(pattern)))
        for path in self._by_path:
            out.add((path, False))
        return out

    def add(self, rec: Record) -> None:
        for path in _paths(rec):
            self._by_path.setdefault(path, set()).add(rec.id)
        for pattern in rec.globs:
            self._by_glob.setdefault(pattern, set()).add(rec.id)

    def remove(self, rec: Record) -> None:
        for path in _paths(rec):
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


def _paths(rec: Record) -> Iterable[str]:
    yield from rec.code_deps
    yield from rec.instance_deps
    yield from rec.data_deps
