"""The daemon's one file watcher: a thin, self-healing layer over `watchfiles.awatch`.

The owner says *what* it cares about (absolute paths, each recursive or not) and hears *which*
paths changed; it stats them itself to learn their final state, because watchfiles reports an
atomic save as added + deleted in an unordered batch. This module decides which folders to watch
so that every target is heard about, including targets that do not exist yet, and restarts
watchfiles when that set of folders changes (a running `awatch` cannot take new paths), or when
a watched folder was replaced under the same name (`git checkout`, a regenerated folder): an OS
watch follows the folder it was put on, and a new folder of that name is not it. The folders
above each watched one, up to the workspace root's parent, are watched too (flat), so that such
a replacement is heard about.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Iterable

from vmd.fence import Fences, with_fence

logger = logging.getLogger("vmd.watch")

# After a watch task fails, wait this long before re-resolving and starting it again, so a
# persistent failure (a folder vanishing over and over) cannot spin the event loop.
_RETRY_DELAY_S = 0.1

# A new folder under a recursive watch is scanned for files created before its own OS watch
# existed; past this many entries the scan stops with a warning rather than stall the loop.
_MAX_NEW_ENTRIES = 10_000

# How long close() waits for a stopped task (watchfiles checks its stop event every `step` ms).
_CLOSE_TIMEOUT_S = 2.0


class Watcher:
    """Watch a changing set of paths with at most two `watchfiles.awatch` tasks.

    A target that is an existing folder is watched with its recursive flag; an existing file
    through its parent folder (atomic saves replace the file's inode); a missing path through
    its nearest existing ancestor, re-resolved as the folders on the way appear. Targets inside
    a recursively watched folder need no watch of their own. watchfiles' `recursive` is per
    `awatch` call, so recursive and flat folders get one task each.

    Args:
        on_changes: called on the event loop with the absolute paths of each batch of changes
            (deduplicated; the change type is dropped: stat the paths to learn their state).
        on_restart: called on the event loop after watching (re)started on a new set of folders,
            once the new watch is live: whatever changed before it may have been missed, so
            re-stat what is being watched.
        step_ms: quiet time that ends a batch; 1 ms keeps a single save's latency at ~2 ms.
        debounce_ms: the longest a batch may keep growing under a stream of changes.
        roots: the workspace roots: the folders above a watched one are watched up to the
            parent of the root it is in (only its parent when it is in none). None: only the
            folders the targets need.
        fences: keep a private folder watched by every task, for `fence`.

    Example:
        >>> watcher = Watcher(lambda paths: print(sorted(paths)))  # doctest: +SKIP
        >>> watcher.watch([("/proj/content", True), ("/proj/users.csv", False)])  # doctest: +SKIP
        >>> await watcher.close()  # doctest: +SKIP
    """

    def __init__(
        self,
        on_changes: Callable[[set[str]], None],
        *,
        on_restart: Callable[[], None] | None = None,
        step_ms: int = 1,
        debounce_ms: int = 100,
        roots: Iterable[str] | None = None,
        fences: bool = False,
    ) -> None:
        self._on_changes = on_changes
        self._fences = Fences() if fences else None
        self._roots = None if roots is None else [os.path.normpath(os.path.abspath(r))
                                                  for r in roots]
        self._on_restart = on_restart
        self._step_ms = step_ms
        self._debounce_ms = debounce_ms
        self._targets: frozenset[tuple[str, bool]] = frozenset()
        # The folders each task watches now: recursive=True / recursive=False.
        self._folders: dict[bool, frozenset[str]] = {True: frozenset(), False: frozenset()}
        self._tasks: dict[bool, _WatchTask] = {}
        # Paths whose appearing or vanishing can change which folders must be watched: the
        # watched folders, the targets, and the next missing folder on the way to a target.
        self._sensitive: frozenset[str] = frozenset()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sync_scheduled = False
        self._restart_scheduled = False
        self._closed = False

    @property
    def folders(self) -> dict[bool, frozenset[str]]:
        """The folders watched now, keyed by recursive (True) or flat (False)."""
        return dict(self._folders)

    def watch(self, targets: Iterable[tuple[str, bool]]) -> None:
        """Set the full desired set of `(absolute path, recursive)` targets.

        Cheap to call often: calls in one event-loop tick are coalesced, and watchfiles is
        restarted only when the set of folders to watch changes. May be called from another
        thread once the watcher has been used on its loop.
        """
        if self._closed:
            raise RuntimeError("Watcher is closed")
        new = frozenset((os.path.normpath(os.path.abspath(p)), bool(r)) for p, r in targets)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            if self._loop is None:
                raise RuntimeError(
                    "Watcher.watch() must first be called from a running event loop"
                ) from None
            self._loop.call_soon_threadsafe(self._set_targets, new)
            return
        if self._loop is None:
            self._loop = loop
        if loop is not self._loop:
            self._loop.call_soon_threadsafe(self._set_targets, new)
            return
        self._set_targets(new)

    async def fence(self) -> bool:
        """Whether every change made before this call has been delivered to `on_changes`:
        True once each watch task reported a fence (see `vmd.fence`); False when that cannot
        be told (no fences, a task not live yet, a new set of folders on its way): re-stat."""
        tasks = {recursive for recursive, task in self._tasks.items() if task.live}
        if (self._fences is None or not tasks or len(tasks) != len(self._tasks)
                or self._sync_scheduled or self._closed):
            return False
        return await self._fences.wait(tasks)

    async def close(self) -> None:
        """Stop every watch task and wait for them; the watcher cannot be used afterwards."""
        self._closed = True
        if self._fences is not None:
            self._fences.close()
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.stop()
        for task in tasks:
            await task.wait(_CLOSE_TIMEOUT_S)

    # -- internals ---------------------------------------------------------------------------

    def _set_targets(self, targets: frozenset[tuple[str, bool]]) -> None:
        # The same targets need no new resolution (every run ends by setting them): what the
        # file system does to the answer arrives as events on the sensitive paths.
        if self._closed or targets == self._targets:
            return
        self._targets = targets
        self._schedule_sync()

    def _schedule_sync(self) -> None:
        if self._sync_scheduled or self._loop is None:
            return
        self._sync_scheduled = True
        self._loop.call_soon(self._sync)

    def _sync(self) -> None:
        self._sync_scheduled = False
        if self._closed:
            return
        try:
            folders, sensitive = resolve(self._targets)
            if self._roots is not None:
                folders, sensitive = guarded(folders, sensitive, self._roots)
        except Exception:  # a resolution bug must not kill the watcher: keep the old watch
            logger.exception("vmd.watch: could not resolve watch targets")
            return
        self._sensitive = sensitive
        folders = {r: with_fence(folders[r], self._fences) for r in (True, False)}
        for recursive in (True, False):
            task = self._tasks.get(recursive)
            if folders[recursive] != self._folders[recursive] or (task and task.replaced()):
                self._restart(recursive, folders[recursive])

    def _restart(self, recursive: bool, folders: frozenset[str]) -> None:
        self._folders[recursive] = folders
        old = self._tasks.pop(recursive, None)
        if old is not None:
            old.stop()
        if folders:
            logger.debug("watching %s (%s)", sorted(folders), "recursive" if recursive else "flat")
            self._tasks[recursive] = _WatchTask(self, recursive, folders)

    def _live(self, task: _WatchTask) -> None:
        """A task's watchfiles watch is established: tell the owner to re-stat (once per tick)."""
        task.live = True
        if self._tasks.get(task.recursive) is not task or self._on_restart is None:
            return
        if not self._restart_scheduled and self._loop is not None:
            self._restart_scheduled = True
            self._loop.call_soon(self._fire_restart)

    def _fire_restart(self) -> None:
        self._restart_scheduled = False
        if self._closed or self._on_restart is None:
            return
        try:
            self._on_restart()
        except Exception:
            logger.exception("vmd.watch: on_restart callback failed")

    def _deliver(self, task: _WatchTask, paths: set[str]) -> None:
        if self._closed:
            return
        if self._fences is not None:  # a fence waiter resumes after on_changes has run
            paths = self._fences.seen(task.recursive, paths)
            if not paths:
                return
        try:
            self._on_changes(paths)
        except Exception:
            logger.exception("vmd.watch: on_changes callback failed")
        for watching in self._tasks.values():
            if not watching.folders.isdisjoint(paths):
                watching.moved = True  # its OS watch may be gone (renamed away and back)
        if not self._sensitive.isdisjoint(paths):
            self._schedule_sync()

    def _failed(self, task: _WatchTask) -> None:
        """A task died (a folder vanished under it, a backend error): start over from scratch."""
        if self._closed or self._tasks.get(task.recursive) is not task:
            return
        del self._tasks[task.recursive]
        self._folders[task.recursive] = frozenset()
        self._schedule_sync()


class _WatchTask:
    """One `awatch` over a fixed set of folders, stopped through its stop event."""

    def __init__(self, owner: Watcher, recursive: bool, folders: frozenset[str]) -> None:
        self.owner = owner
        self.recursive = recursive
        self.folders = folders
        # Which folder each is now: one replaced under the same name needs a new OS watch.
        self.identity = {folder: _identity(folder) for folder in folders}
        self.moved = False  # a folder it watches was itself reported changed
        self.live = False  # its OS watch is established: it reports every change from now
        # watchfiles polls this from its worker thread every `step` ms.
        self._stop = threading.Event()
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"vmd.watch({'recursive' if recursive else 'flat'})"
        )

    def stop(self) -> None:
        self._stop.set()

    def replaced(self) -> bool:
        """Whether a folder it watches was moved, is gone or is another folder now (same
        name): its OS watch may be on nothing."""
        return self.moved or any(_identity(f) != was for f, was in self.identity.items())

    async def wait(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except asyncio.TimeoutError:
            logger.warning("vmd.watch: watch task did not stop in %.1f s; cancelling", timeout)
            self._task.cancel()
        except Exception:  # already logged by _run
            pass

    async def _run(self) -> None:
        owner = self.owner
        # Imported here: watchfiles pulls in multiprocessing (~30 ms), which start-up and build
        # mode (no watching at all) should not pay for.
        import watchfiles

        try:
            changes = watchfiles.awatch(
                *sorted(self.folders),
                watch_filter=None,  # the default filter drops node_modules, .venv, .git...
                debounce=owner._debounce_ms,
                step=owner._step_ms,
                stop_event=self._stop,
                recursive=self.recursive,
                ignore_permission_denied=True,
            )
            # The first __anext__ creates the OS watch synchronously, before its first await;
            # a callback scheduled now therefore runs once the watch is live.
            asyncio.get_running_loop().call_soon(owner._live, self)
            async for batch in changes:
                paths = {path for _, path in batch}
                if self.recursive:
                    for change, path in batch:
                        if change == watchfiles.Change.added:
                            _add_contents(path, paths)
                owner._deliver(self, paths)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception(
                "vmd.watch: watching %s failed; restarting", ", ".join(sorted(self.folders))
            )
            await asyncio.sleep(_RETRY_DELAY_S)
            owner._failed(self)


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _add_contents(folder: str, paths: set[str]) -> None:
    """Add everything inside `folder`, if it is a new folder under a recursive watch.

    The OS watch on a new subfolder is only added once its creation has been seen, so files
    created in it right away (`mkdir -p a/b && echo > a/b/c`) would never be reported.
    """
    try:
        if not os.path.isdir(folder) or os.path.islink(folder):
            return
        count = 0
        for parent, dirs, files in os.walk(folder):
            for name in (*dirs, *files):
                paths.add(os.path.join(parent, name))
            count += len(dirs) + len(files)
            if count > _MAX_NEW_ENTRIES:
                logger.warning("vmd.watch: %s is too large to scan for new files", folder)
                return
    except OSError:  # vanished meanwhile: its deletion is reported separately
        pass


def resolve(
    targets: Iterable[tuple[str, bool]],
) -> tuple[dict[bool, frozenset[str]], frozenset[str]]:
    """The folders to watch for `targets`, by recursive flag, and the paths whose creation or
    deletion would change that answer.

    `targets` are absolute, normalised `(path, recursive)` pairs.
    """
    recursive: set[str] = set()
    flat: set[str] = set()
    sensitive: set[str] = set()
    for path, rec in targets:
        sensitive.add(path)
        if os.path.isdir(path):
            (recursive if rec else flat).add(path)
        elif os.path.lexists(path):
            flat.add(os.path.dirname(path))
        else:
            child, folder = path, os.path.dirname(path)
            while folder != child and not os.path.isdir(folder):
                child, folder = folder, os.path.dirname(folder)
            flat.add(folder)
            sensitive.add(child)  # appears in `folder`'s flat watch when created
    recursive = {p for p in recursive if not _under_any(p, recursive)}
    flat = {p for p in flat if p not in recursive and not _under_any(p, recursive)}
    sensitive |= recursive | flat
    return {True: frozenset(recursive), False: frozenset(flat)}, frozenset(sensitive)


def guarded(
    folders: dict[bool, frozenset[str]], sensitive: frozenset[str], roots: list[str]
) -> tuple[dict[bool, frozenset[str]], frozenset[str]]:
    """`folders` and `sensitive` (from `resolve`) with the folders above each watched one
    added, flat, up to the parent of the root it is in (only its parent when in none): the
    deletion, creation or renaming of a watched folder, or of one on its way, is then an event
    in a watched folder, and the watcher re-resolves."""
    recursive = set(folders[True])
    flat = set(folders[False])
    for watched in recursive | flat:
        root = next((r for r in roots if watched == r or watched.startswith(r + os.sep)), None)
        top = os.path.dirname(root if root is not None else watched)
        below, parent = watched, os.path.dirname(watched)
        while parent != below:  # up to the file system's root at most
            if parent not in recursive and not _under_any(parent, recursive):
                flat.add(parent)
            if parent == top:
                break
            below, parent = parent, os.path.dirname(parent)
    return {True: folders[True], False: frozenset(flat)}, sensitive | flat


def _under_any(path: str, folders: set[str]) -> bool:
    """Whether `path` is strictly inside one of `folders`."""
    parent = os.path.dirname(path)
    while True:
        if parent in folders:
            return True
        up = os.path.dirname(parent)
        if up == parent:
            return False
        parent = up
