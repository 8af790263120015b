"""Dependency capture inside a worker: which project modules and files the loader used.

A `sys.meta_path` finder sees every project-local import (and failed ones, so the daemon can
watch for the file appearing) and compiles it from source, never from a `.pyc`; an `open`
audit hook sees the files read and written. Runs only in worker processes.
"""

from __future__ import annotations

import functools
import importlib.machinery
import os
import sys
from collections.abc import Iterable, Sequence
from types import CodeType, ModuleType
from typing import Any

from vmd import filestate
from vmd.paths import native_is_under

# The vmd package itself is never project code, even when the project is vmd.
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))  # vmd/
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC
_WRITE_MODES = frozenset("wax+")
_SQLITE_FILES = ("-wal", "-shm", "-journal")  # what SQLite keeps next to a database


class Locality:
    """Which paths are project code or data: under a root (after resolving symlinks) and not
    in the interpreter, a site-packages or vmd itself. Shared by the worker (what to capture)
    and the daemon (which crash-report frame to point at)."""

    def __init__(self, roots: list[str]) -> None:
        self._roots = [os.path.realpath(r) for r in roots]
        self._excluded = _excluded_dirs(self._roots)
        self._cache: dict[str, bool] = {}

    def is_local(self, path: str) -> bool:
        """Whether absolute `path` is project code or data."""
        local = self._cache.get(path)
        if local is None:
            real = os.path.realpath(path)
            local = any(native_is_under(real, r) for r in self._roots) and not any(
                native_is_under(real, x) for x in self._excluded
            )
            self._cache[path] = local
        return local


class Capture:
    """Records the code and files the current import / setup / watch / load depends on."""

    def __init__(self) -> None:
        self.locality = _locality(())
        # Every project-local module imported (and import candidates missed) in this process:
        # modules stay imported, so every run depends on all of them.
        self.code_deps: dict[str, filestate.Sig] = {}
        # Where files read are recorded now; None outside import/setup/watch/load.
        self.target: dict[str, filestate.Sig] | None = None
        # Files opened for writing since the last Run started: a file the loader writes is its
        # output, not its input (reading it back must not make every run stale the next).
        self.written: set[str] = set()
        # Databases sqlite3 connected to since the last Run started -> the table they went in.
        self.databases: dict[str, dict[str, filestate.Sig]] = {}
        self._installed = False

    def begin_run(self) -> None:
        """A Run starts: what it writes and connects to is its own from now on."""
        self.written = set()
        self.databases = {}

    def own_effects(
        self, watched: dict[str, filestate.Sig], globs: list[str]
    ) -> dict[str, filestate.Sig]:
        """After a run: what it did to its own inputs taken as it left them (see `own_writes`,
        `settle_databases`), so they do not make it run again."""
        watched = self.settle_databases(watched)
        return own_writes(watched, globs, self.written) if self.written else watched

    def settle_databases(self, watched: dict[str, filestate.Sig]) -> dict[str, filestate.Sig]:
        """The databases the run connected to, as it left them. SQLite changes them from C code
        the audit hook cannot see: a reader creates the write-ahead log and touches the shared
        memory file, the last connection to close checkpoints the log into the database and
        deletes it, and a loader may write. Another process's commits later change the
        database or its log, and are seen."""
        if not self.databases:
            return watched
        out = dict(watched)
        for path, table in self.databases.items():
            for dep in (path, path + "-wal"):
                table[dep] = filestate.signature(dep)
            for dep in (path, *(path + s for s in _SQLITE_FILES)):
                if dep in out:  # watched by the loader's own globs (`app.db*`)
                    out[dep] = filestate.signature(dep)
        return out

    def configure(self, roots: list[str]) -> None:
        """Set the workspace roots that decide what is project code."""
        self.locality = _locality(tuple(roots))

    def install(self) -> None:
        """Put the finder before PathFinder and add the audit hook (once per process)."""
        if self._installed:
            return
        self._installed = True
        at = next(
            (i for i, f in enumerate(sys.meta_path) if f is importlib.machinery.PathFinder),
            len(sys.meta_path),
        )
        sys.meta_path.insert(at, _Finder(self))  # type: ignore[arg-type]
        sys.addaudithook(self.audit)

    def is_local(self, path: str) -> bool:
        """Whether absolute `path` is project code or data (see `Locality`)."""
        return self.locality.is_local(path)

    def record_candidates(
        self, fullname: str, path: Iterable[str] | None, found_in: str | None = None
    ) -> None:
        """Watch where the module could appear: anywhere on the search path when the import
        found nothing, else in the entries searched before `found_in` (a file created there
        would shadow the one imported)."""
        name = fullname.rpartition(".")[2]
        for entry in sys.path if path is None else path:
            if not isinstance(entry, str):
                continue
            entry = os.path.abspath(entry or ".")
            if entry == found_in:
                return
            if self.is_local(entry):
                for candidate in (
                    os.path.join(entry, name + ".py"),
                    os.path.join(entry, name, "__init__.py"),
                ):
                    if candidate not in self.code_deps:
                        self.code_deps[candidate] = filestate.signature(candidate)

    def audit(self, event: str, args: tuple[Any, ...]) -> None:
        # Called for every audit event in the process: bail out as early as possible.
        if event != "open" or self.target is None:
            if event == "os.rename" and self.target is not None:  # os.replace too
                self._renamed_onto(args[1])
            elif event == "sqlite3.connect" and self.target is not None:
                self._connected(args[0])
            return
        try:
            path, mode, flags = args
            if isinstance(path, int):
                return
            if mode is None:
                writing = bool(flags & _WRITE_FLAGS)
            else:
                writing = not _WRITE_MODES.isdisjoint(mode)
            path = os.path.abspath(os.fsdecode(path))
            if writing:
                self.written.add(path)
                return
            capture = self.target
            if (
                capture is None
                or path in capture
                or path in self.code_deps
                or path.endswith(".pyc")
                or "__pycache__" in path
                or not self.is_local(path)
                or os.path.isdir(path)
            ):
                return
            capture[path] = filestate.signature(path)
        except Exception:  # a failing audit hook would fail the user's open()
            pass

    def _connected(self, database: Any) -> None:
        """sqlite3 opened `database` (from C: no `open` event): the loader depends on it and on
        its write-ahead log, in whatever journal mode; never on the shared memory file, which
        every read touches."""
        try:
            path = database_path(database)
            if path is None or not self.is_local(path) or self.target is None:
                return
            self.databases[path] = self.target
            for dep in (path, path + "-wal"):
                if dep not in self.target and dep not in self.code_deps:
                    self.target[dep] = filestate.signature(dep)
        except Exception:  # a failing audit hook would fail the user's connect()
            pass

    def _renamed_onto(self, dst: Any) -> None:
        """A file renamed into place (an atomic save) is written, as if opened for writing."""
        try:
            if not isinstance(dst, int):
                self.written.add(os.path.abspath(os.fsdecode(dst)))
        except Exception:  # a failing audit hook would fail the user's rename
            pass


class FromSource(importlib.machinery.SourceFileLoader):
    """Compiles from source every time: CPython trusts a `.pyc` whose source has the same size
    and whole-second mtime, so a quick same-size edit would otherwise run stale code."""

    def get_code(self, fullname: str) -> CodeType:
        path = self.get_filename(fullname)
        return self.source_to_code(self.get_data(path), path)


class _Finder:
    """A `sys.meta_path` finder placed just before PathFinder: resolves like PathFinder, swaps in
    `FromSource` for project-local modules and records them (and failed lookups) as code deps."""

    def __init__(self, capture: Capture) -> None:
        self._capture = capture

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        capture = self._capture
        if spec is None or spec.origin is None:  # not found, or a namespace package
            capture.record_candidates(fullname, path)
            return spec
        origin = spec.origin
        if (
            origin.endswith(".py")
            and isinstance(spec.loader, importlib.machinery.SourceFileLoader)
            and capture.is_local(os.path.abspath(origin))
        ):
            origin = os.path.abspath(origin)
            capture.code_deps[origin] = filestate.signature(origin)
            spec.loader = FromSource(fullname, origin)
            package = spec.submodule_search_locations is not None
            found_in = os.path.dirname(os.path.dirname(origin) if package else origin)
            capture.record_candidates(fullname, path, found_in)
        return spec

    def invalidate_caches(self) -> None:
        pass


def _excluded_dirs(roots: list[str]) -> list[str]:
    """The interpreter's and installed packages' folders: never project code, even inside a root
    (a `.venv` in the project). A prefix that contains a root (a project under /usr/src) is
    replaced by its library folders."""
    libs, prefixes = interpreter_dirs()
    out = set(libs)
    for prefix in prefixes:
        if not any(native_is_under(root, prefix) for root in roots):
            out.add(prefix)
    return [p for p in out if not any(native_is_under(root, p) for root in roots)]


@functools.cache
def _locality(roots: tuple[str, ...]) -> Locality:
    """One Locality per set of roots in this process (a preloader's workers share its)."""
    return Locality(list(roots))


def warm(roots: list[str]) -> None:
    """Find what a worker's Capture needs for `roots` (the preloader does, before forking)."""
    _locality(())
    _locality(tuple(roots))


@functools.cache
def interpreter_dirs() -> tuple[frozenset[str], frozenset[str]]:
    """The library folders and the prefixes of this interpreter (and vmd's folder), resolved:
    the same for every root, so found once per process (~2 ms of realpaths and sysconfig; a
    forked worker has them from its preloader, which finds them before forking)."""
    import site
    import sysconfig

    libs = {p for p in sysconfig.get_paths().values() if p}
    libs.update(p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages"))
    if hasattr(site, "getsitepackages"):
        libs.update(site.getsitepackages())
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, _PACKAGE_DIR}
    return frozenset(map(os.path.realpath, libs)), frozenset(map(os.path.realpath, prefixes))


def database_path(database: Any) -> str | None:
    """The absolute file of a `sqlite3.connect` argument: a path or a `file:` URI; None for an
    in-memory or temporary database."""
    import urllib.parse

    name = os.fsdecode(database) if not isinstance(database, int) else ""
    if name.startswith("file:"):
        parsed = urllib.parse.urlsplit(name)
        if parsed.netloc not in ("", "localhost"):
            return None
        query = urllib.parse.parse_qs(parsed.query)
        if query.get("mode") == ["memory"]:
            return None
        name = urllib.parse.unquote(parsed.path)
    if name in ("", ":memory:"):
        return None
    return os.path.abspath(name)


def own_writes(
    watched: dict[str, filestate.Sig], globs: list[str], written: set[str]
) -> dict[str, filestate.Sig]:
    """`watched` (the glob matches and walked folders, as a run's `watch` found them) with what
    the run itself wrote there taken as it left it: a loader writing into its own watch globs
    must not run again because of that, let alone forever.

    The files it wrote get their signature now. The folders walked do too (an atomic save of
    its output adds and removes a temporary entry) if the files matched now are the ones
    matched before plus ones it wrote: an addition or removal by anyone else is still seen."""
    files, walked = filestate.expand(globs)
    out = dict(watched)
    for path in files:
        if path in written:
            out[path] = filestate.signature(path)
    before = {p for p in watched if p not in walked}
    now = set(files)
    if before <= now and now - before <= written:
        out.update(walked)
    return out
