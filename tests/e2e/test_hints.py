"""A client's watcher telling the daemon of changes (LSP `workspace/didChangeWatchedFiles`),
over a real daemon.

A write through a shared memory map changes a file's contents and mtime without any inotify
event, so the daemon's own watcher never reports it: what follows such a write is the hint's
doing alone.
"""

from __future__ import annotations

import mmap
import time
from pathlib import Path
from typing import Any

from harness import Daemon, Fence, Project, StartDaemon, exported

LOADER = """
import vmd

watch = ["data/*.txt"]

def load(ctx):
    return vmd.json_module((ctx.path.parent / "data" / "a.txt").read_text())
"""


async def start_loader(project: Project, daemon: Daemon) -> tuple[str, str, dict[str, Any]]:
    """The data file, the loader watching it, and the loader's first result."""
    data = project.write("src/data/a.txt", "one")
    loader = project.write("src/a.vmd.py", LOADER)
    return data, loader, await daemon.load(loader)


def write_unseen(path: str, text: str) -> None:
    """Rewrite `path` with `text` of the same length, unseen by inotify."""
    before = Path(path).stat().st_mtime_ns
    data = text.encode()
    for _ in range(100):  # the mtime clock is coarse: wait until it has moved on
        with open(path, "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
            assert len(m) == len(data), "write_unseen keeps the file's length"
            m[:] = data
        if Path(path).stat().st_mtime_ns != before:
            return
        time.sleep(0.005)
    raise AssertionError(f"{path}: mtime did not change")


def hint(daemon: Daemon, *paths: str) -> None:
    changes = [{"uri": Path(p).as_uri(), "type": 2} for p in paths]
    daemon.notify("workspace/didChangeWatchedFiles", {"changes": changes})


async def notifications_after_hint(
    daemon: Daemon, fence: Fence, loader: str, path: str, *, since: int
) -> int:
    """Hint `path` (just written, so the daemon's watcher reports it too); once the watcher
    has dealt with that write too, how many `vmd/changed` for `loader` arrived since `since`."""
    hint(daemon, path)
    await daemon.changed(loader, since=since)
    await fence.passed()  # the daemon's watcher has reported the same write by now
    return len(daemon.changes(loader, since=since))


async def test_a_hint_reports_a_change_the_daemons_own_watcher_cannot_see(
    project: Project, daemon: Daemon
) -> None:
    data, loader, first = await start_loader(project, daemon)
    fence = await Fence(daemon, project, "src/data").start()
    # The watcher is live: it re-stats what it watches when it starts, and would see the write.
    await fence.passed()
    mark = daemon.mark()
    write_unseen(data, "two")
    await fence.passed()
    assert daemon.changes(loader, since=mark) == []  # the watcher saw nothing
    hint(daemon, data)
    change = await daemon.changed(loader, since=mark)
    assert change["reason"] == "watch"
    assert change["events"] == [{"type": "change", "path": data}]
    result = await daemon.load(loader)
    assert exported(result) == "two" and result["version"] == first["version"] + 1


async def test_a_change_both_hinted_and_watched_runs_and_notifies_once(
    project: Project, daemon: Daemon
) -> None:
    data, loader, first = await start_loader(project, daemon)
    fence = await Fence(daemon, project, "src/data").start()
    mark = daemon.mark()
    project.write("src/data/a.txt", "two")
    assert await notifications_after_hint(daemon, fence, loader, data, since=mark) == 1
    result = await daemon.load(loader)
    assert exported(result) == "two" and result["version"] == first["version"] + 1


async def test_a_loader_edit_both_hinted_and_watched_replaces_its_worker_once(
    project: Project, daemon: Daemon
) -> None:
    source = "import os, vmd\n\ndef load(ctx):\n    return vmd.json_module([{rev}, os.getpid()])\n"
    loader = project.write("src/a.vmd.py", source.format(rev=1))
    first = exported(await daemon.load(loader))
    fence = await Fence(daemon, project, "src").start()
    mark = daemon.mark()
    project.write("src/a.vmd.py", source.format(rev=2))
    assert await notifications_after_hint(daemon, fence, loader, loader, since=mark) == 1
    result = await daemon.load(loader)
    rev, pid = exported(result)
    assert rev == 2 and pid != first[1]
    # One run with the new code: the watcher's report of the same edit, arriving while that
    # run was under way, neither re-ran it nor replaced its fresh worker again.
    assert result["version"] == 2


async def test_a_hint_for_an_unchanged_or_unknown_file_changes_nothing(
    project: Project, daemon: Daemon
) -> None:
    data, loader, first = await start_loader(project, daemon)
    mark = daemon.mark()
    hint(daemon, data, project.path("elsewhere.txt"), project.path("src"))
    await daemon.roundtrip()  # hints are acted on as they are read
    assert daemon.notifications("vmd/changed", since=mark) == []
    assert (await daemon.load(loader))["version"] == first["version"]


async def test_a_malformed_hint_is_ignored_and_the_daemon_keeps_serving(
    project: Project, daemon: Daemon
) -> None:
    _, loader, _ = await start_loader(project, daemon)
    mark = daemon.mark()
    daemon.notify("workspace/didChangeWatchedFiles", {"changes": "not a list"})
    daemon.notify("workspace/didChangeWatchedFiles", {"changes": [{"uri": "http://x/a.txt"}]})
    daemon.notify("workspace/didChangeWatchedFiles", None)
    assert exported(await daemon.load(loader)) == "one"  # answered after the hints were read
    assert daemon.orphans == [] and daemon.notifications("vmd/changed", since=mark) == []


async def test_build_mode_ignores_hints(project: Project, start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(options={"mode": "build"})
    data, loader, _ = await start_loader(project, daemon)
    mark = daemon.mark()
    write_unseen(data, "two")
    hint(daemon, data)
    await daemon.roundtrip()  # hints are acted on (here: ignored) as they are read
    assert daemon.notifications("vmd/changed", since=mark) == []
    assert exported(await daemon.load(loader)) == "two"  # the load's own stat re-check
