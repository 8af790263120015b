"""vmd.watch against a real file system and real watchfiles."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from vmd import watch
from vmd.watch import Watcher, guarded, resolve

TIMEOUT = 5.0


class Recorder:
    """Collects what a Watcher reports and lets a test wait for it."""

    def __init__(self, **options: int) -> None:
        self.seen: set[str] = set()
        self.batches: list[set[str]] = []
        self.restarts = 0
        self._changed = asyncio.Event()
        self._restarted = asyncio.Event()
        self.watcher = Watcher(self._on_changes, on_restart=self._on_restart, **options)

    def _on_changes(self, paths: set[str]) -> None:
        self.batches.append(paths)
        self.seen |= paths
        self._changed.set()

    def _on_restart(self) -> None:
        self.restarts += 1
        self._restarted.set()

    async def changed(self, path: Path | str, timeout: float = TIMEOUT) -> None:
        """Wait until `path` has been reported."""

        async def _wait() -> None:
            while str(path) not in self.seen:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(_wait(), timeout)

    async def restarted(self, count: int, timeout: float = TIMEOUT) -> None:
        """Wait until on_restart has been called `count` times in all."""

        async def _wait() -> None:
            while self.restarts < count:
                self._restarted.clear()
                await self._restarted.wait()

        await asyncio.wait_for(_wait(), timeout)


async def settled(watcher: Watcher) -> None:
    """Wait until the watcher has acted on every `watch()` call so far (they are resolved on a
    later tick of the loop, not at once)."""
    while watcher._sync_scheduled:
        await asyncio.sleep(0)


@pytest.fixture
def starts(monkeypatch: pytest.MonkeyPatch) -> list[frozenset[str]]:
    """The folders of every watchfiles watch started from now on, in order."""
    started: list[frozenset[str]] = []
    real = watch._WatchTask.__init__

    def recording(
        self: watch._WatchTask, owner: Watcher, recursive: bool, folders: frozenset[str]
    ) -> None:
        started.append(folders)
        real(self, owner, recursive, folders)

    monkeypatch.setattr(watch._WatchTask, "__init__", recording)
    return started


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return Path(os.path.realpath(tmp_path))


@pytest.fixture
async def rec() -> AsyncIterator[Recorder]:
    recorder = Recorder()
    yield recorder
    await recorder.watcher.close()


async def test_write_in_watched_folder_is_reported_with_its_absolute_path(
    root: Path, rec: Recorder
) -> None:
    rec.watcher.watch([(str(root), True)])
    await rec.restarted(1)
    (root / "a.txt").write_text("x")
    await rec.changed(root / "a.txt")


async def test_single_save_does_not_wait_for_the_debounce_window(root: Path) -> None:
    recorder = Recorder(debounce_ms=20_000)
    try:
        recorder.watcher.watch([(str(root), False)])
        await recorder.restarted(1)
        start = time.monotonic()
        (root / "a.txt").write_text("x")
        await recorder.changed(root / "a.txt", timeout=10.0)
        assert time.monotonic() - start < 10.0  # milliseconds, in fact; far from 20 s
    finally:
        await recorder.watcher.close()


async def test_atomic_save_of_a_watched_file_is_reported(root: Path, rec: Recorder) -> None:
    target = root / "users.csv"
    target.write_text("a\n")
    rec.watcher.watch([(str(target), False)])
    await rec.restarted(1)
    tmp = root / ".users.csv.tmp"
    tmp.write_text("a\nb\n")
    os.replace(tmp, target)
    await rec.changed(target)


async def test_change_under_node_modules_is_reported(root: Path, rec: Recorder) -> None:
    pkg = root / "node_modules" / "pkg"
    pkg.mkdir(parents=True)
    rec.watcher.watch([(str(root), True)])
    await rec.restarted(1)
    (pkg / "index.js").write_text("export default 1")
    await rec.changed(pkg / "index.js")


async def test_change_in_dot_git_and_pycache_is_reported(root: Path, rec: Recorder) -> None:
    for name in (".git", "__pycache__", ".venv"):
        (root / name).mkdir()
    rec.watcher.watch([(str(root / name), False) for name in (".git", "__pycache__", ".venv")])
    await rec.restarted(1)
    for name in (".git", "__pycache__", ".venv"):
        (root / name / "f").write_text("x")
    for name in (".git", "__pycache__", ".venv"):
        await rec.changed(root / name / "f")


async def test_missing_folder_is_watched_once_it_appears(root: Path, rec: Recorder) -> None:
    target = root / "content" / "users" / "a.csv"
    rec.watcher.watch([(str(target), False)])
    await rec.restarted(1)
    assert rec.watcher.folders[False] == {str(root)}

    (root / "content" / "users").mkdir(parents=True)
    await rec.restarted(2)
    assert rec.watcher.folders[False] == {str(root / "content" / "users")}
    target.write_text("x")
    await rec.changed(target)


async def test_missing_recursive_folder_is_watched_recursively_once_it_appears(
    root: Path, rec: Recorder
) -> None:
    target = root / "content"
    rec.watcher.watch([(str(target), True)])
    await rec.restarted(1)
    target.mkdir()
    await rec.restarted(2)
    assert rec.watcher.folders == {True: {str(target)}, False: set()}
    (target / "deep").mkdir()
    (target / "deep" / "x.md").write_text("x")
    await rec.changed(target / "deep" / "x.md")


async def test_files_created_right_after_their_folder_are_reported(
    root: Path, rec: Recorder
) -> None:
    rec.watcher.watch([(str(root), True)])
    await rec.restarted(1)
    for i in range(5):
        deep = root / f"n{i}" / "a" / "b"
        deep.mkdir(parents=True)
        (deep / "x.txt").write_text("x")
    for i in range(5):
        await rec.changed(root / f"n{i}" / "a" / "b" / "x.txt")


async def test_recursive_watch_sees_subfolders_and_flat_watch_does_not(root: Path) -> None:
    flat_dir, rec_dir = root / "flat", root / "rec"
    for folder in (flat_dir, rec_dir):
        (folder / "sub").mkdir(parents=True)
    recorder = Recorder()
    try:
        recorder.watcher.watch([(str(flat_dir), False), (str(rec_dir), True)])
        await recorder.restarted(1)
        assert recorder.watcher.folders == {True: {str(rec_dir)}, False: {str(flat_dir)}}
        (flat_dir / "sub" / "hidden.txt").write_text("x")
        (rec_dir / "sub" / "seen.txt").write_text("x")
        (flat_dir / "top.txt").write_text("x")
        await recorder.changed(rec_dir / "sub" / "seen.txt")
        # The flat watch reports in order: had it seen the subfolder's file, written first,
        # that would have come no later than top.txt.
        await recorder.changed(flat_dir / "top.txt")
        assert str(flat_dir / "sub" / "hidden.txt") not in recorder.seen
    finally:
        await recorder.watcher.close()


async def test_new_folder_restarts_and_calls_on_restart(root: Path, rec: Recorder) -> None:
    (root / "a").mkdir()
    (root / "b").mkdir()
    rec.watcher.watch([(str(root / "a"), False)])
    await rec.restarted(1)
    rec.watcher.watch([(str(root / "a"), False), (str(root / "b"), False)])
    await rec.restarted(2)
    assert rec.watcher.folders[False] == {str(root / "a"), str(root / "b")}
    (root / "b" / "x").write_text("x")
    await rec.changed(root / "b" / "x")


async def test_same_folders_do_not_restart(
    root: Path, rec: Recorder, starts: list[frozenset[str]]
) -> None:
    (root / "a.txt").write_text("a")
    rec.watcher.watch([(str(root / "a.txt"), False)])
    await rec.restarted(1)
    rec.watcher.watch([(str(root / "a.txt"), False), (str(root / "b.txt"), False)])
    rec.watcher.watch([(str(root), False)])
    await settled(rec.watcher)
    assert starts == [frozenset({str(root)})]  # no new watch: no restart can follow
    assert rec.restarts == 1


async def test_calls_in_one_tick_are_coalesced_into_one_start(
    root: Path, rec: Recorder, starts: list[frozenset[str]]
) -> None:
    for name in "abc":
        (root / name).mkdir()
    for name in "abc":
        rec.watcher.watch([(str(root / name), False)])
    await rec.restarted(1)
    await settled(rec.watcher)
    assert starts == [frozenset({str(root / "c")})]  # the one watch started has gone live
    assert rec.restarts == 1
    assert rec.watcher.folders[False] == {str(root / "c")}


async def test_deleted_and_recreated_folder_is_watched_again(root: Path, rec: Recorder) -> None:
    folder = root / "data"
    folder.mkdir()
    rec.watcher.watch([(str(folder), False)])
    await rec.restarted(1)
    shutil.rmtree(folder)
    await rec.restarted(2)
    assert rec.watcher.folders[False] == {str(root)}
    folder.mkdir()
    await rec.restarted(3)
    assert rec.watcher.folders[False] == {str(folder)}
    (folder / "x").write_text("x")
    await rec.changed(folder / "x")


async def test_failing_callback_does_not_stop_the_watcher(root: Path) -> None:
    seen: list[set[str]] = []
    got = asyncio.Event()

    def on_changes(paths: set[str]) -> None:
        seen.append(paths)
        got.set()
        raise ValueError("owner bug")

    live = asyncio.Event()
    watcher = Watcher(on_changes, on_restart=live.set)
    try:
        watcher.watch([(str(root), False)])
        await asyncio.wait_for(live.wait(), TIMEOUT)
        (root / "a").write_text("a")
        await asyncio.wait_for(got.wait(), TIMEOUT)
        got.clear()
        (root / "b").write_text("b")
        await asyncio.wait_for(got.wait(), TIMEOUT)
        assert any(str(root / "b") in batch for batch in seen)
    finally:
        await watcher.close()


async def test_close_stops_everything(root: Path, rec: Recorder) -> None:
    recorder = Recorder()
    recorder.watcher.watch([(str(root), True), (str(root / "f.txt"), False)])
    await recorder.restarted(1)
    rec.watcher.watch([(str(root), True)])  # a witness, still watching the same folder
    await rec.restarted(1)
    tasks = list(recorder.watcher._tasks.values())
    await recorder.watcher.close()
    assert all(task._task.done() for task in tasks)
    (root / "after.txt").write_text("x")
    await rec.changed(root / "after.txt")  # the write was there to be seen
    assert str(root / "after.txt") not in recorder.seen
    with pytest.raises(RuntimeError):
        recorder.watcher.watch([(str(root), True)])


async def test_no_targets_start_no_watch(root: Path, rec: Recorder) -> None:
    rec.watcher.watch([])
    await settled(rec.watcher)
    assert rec.watcher._tasks == {}
    assert rec.restarts == 0


async def test_emptying_the_targets_stops_the_watch(root: Path, rec: Recorder) -> None:
    rec.watcher.watch([(str(root), True)])
    await rec.restarted(1)
    rec.watcher.watch([])
    await settled(rec.watcher)
    assert rec.watcher._tasks == {}
    assert rec.watcher.folders == {True: set(), False: set()}


def test_resolve_watches_a_file_through_its_parent_and_a_missing_path_through_its_ancestor(
    root: Path,
) -> None:
    (root / "src").mkdir()
    (root / "src" / "a.py").write_text("")
    folders, sensitive = resolve(
        [(str(root / "src" / "a.py"), True), (str(root / "gone" / "deeper" / "x"), False)]
    )
    assert folders == {True: set(), False: {str(root / "src"), str(root)}}
    assert str(root / "gone") in sensitive


def test_resolve_drops_targets_covered_by_a_recursive_ancestor(root: Path) -> None:
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "f").write_text("")
    folders, _ = resolve(
        [
            (str(root / "a"), True),
            (str(root / "a" / "b"), True),
            (str(root / "a" / "b"), False),
            (str(root / "a" / "b" / "f"), False),
            (str(root / "a"), False),
        ]
    )
    assert folders == {True: {str(root / "a")}, False: set()}


def test_guards_watch_the_folders_up_to_the_roots_parent_and_no_higher(root: Path) -> None:
    # A watched folder replaced under its name is seen only from the folder above it.
    deep = root / "proj" / "src" / "data"
    deep.mkdir(parents=True)
    folders, sensitive = guarded(
        {True: frozenset(), False: frozenset({str(deep), "/elsewhere/x"})},
        frozenset({str(deep)}),
        [str(root / "proj")],
    )
    guards = {str(root / "proj" / "src"), str(root / "proj"), str(root)}
    assert folders[False] == {str(deep), "/elsewhere/x", "/elsewhere"} | guards
    assert guards <= sensitive


def test_guards_inside_a_recursive_watch_are_left_to_it(root: Path) -> None:
    (root / "a" / "b").mkdir(parents=True)
    folders, _ = guarded(
        {True: frozenset({str(root / "a")}), False: frozenset({str(root / "a" / "b")})},
        frozenset(),
        [str(root)],
    )
    flat = {str(root / "a" / "b"), str(root), str(root.parent)}  # not a: watched recursively
    assert folders == {True: {str(root / "a")}, False: flat}


async def test_a_fence_passes_only_once_every_change_made_before_it_was_delivered(
    tmp_path: Path,
) -> None:
    flat, deep = tmp_path / "flat", tmp_path / "deep" / "er"
    flat.mkdir()
    deep.mkdir(parents=True)
    rec = Recorder(fences=True)
    rec.watcher.watch([(str(flat), False), (str(tmp_path / "deep"), True)])
    await settled(rec.watcher)
    await rec.restarted(1)
    for i in range(30):
        target = (flat if i % 2 else deep) / f"file{i}.txt"
        target.write_text(str(i))
        assert await rec.watcher.fence()
        assert str(target) in rec.seen, f"change {i} came after the fence"
    # The fences' own files are never reported as changes.
    assert not any("vmd-fence-" in p for p in rec.seen)
    await rec.watcher.close()


async def test_there_is_no_fence_while_nothing_is_watched_or_without_fences(
    tmp_path: Path,
) -> None:
    rec = Recorder(fences=True)
    assert not await rec.watcher.fence()
    plain = Recorder()
    plain.watcher.watch([(str(tmp_path), False)])
    await settled(plain.watcher)
    await plain.restarted(1)
    assert not await plain.watcher.fence()
    await rec.watcher.close()
    await plain.watcher.close()
