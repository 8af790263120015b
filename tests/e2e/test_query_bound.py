"""`maxQueryIds`: the daemon remembers at most that many ids with a query, forgetting the least
recently loaded; a forgotten id is reported invalidated, its instance cleaned up, and its next
load runs the loader again with a version above the one clients saw."""

from __future__ import annotations

import asyncio
from pathlib import Path

from harness import Daemon, Project, StartDaemon, exported

# Logs each setup, run and cleanup by query, so the test sees what ran.
COUNTED = """\
import json, pathlib
import vmd

LOG = pathlib.Path(__file__).with_name("log.txt")
watch = ["data.txt"]

def note(what):
    with LOG.open("a") as f:
        f.write(what + "\\n")

def setup(ctx):
    n = ctx.query.get("n", "-")
    note(f"setup {n}")
    return lambda: note(f"cleanup {n}")

def load(ctx):
    note(f"run {ctx.query.get('n', '-')}")
    return vmd.json_module(ctx.query.get("n", "-"))
"""


def log(project: Project) -> list[str]:
    path = Path(project.path("src/log.txt"))
    return path.read_text().splitlines() if path.exists() else []


async def bounded(start_daemon: StartDaemon, project: Project, bound: int) -> tuple[Daemon, str]:
    project.write("src/data.txt", "1")
    loader = project.write("src/counted.vmd.py", COUNTED)
    return await start_daemon(options={"maxQueryIds": bound}), loader


async def test_beyond_the_bound_the_least_recently_loaded_query_id_is_forgotten_and_runs_again(
    project: Project, start_daemon: StartDaemon
) -> None:
    daemon, loader = await bounded(start_daemon, project, 3)
    first = {n: await daemon.load(f"{loader}?n={n}") for n in (1, 2, 3)}
    assert (await daemon.load(f"{loader}?n=1"))["version"] == 1  # n=1 is now the most recent
    mark = daemon.mark()
    assert exported(await daemon.load(f"{loader}?n=4")) == "4"
    # n=2 was loaded least recently: clients hear it is invalidated, its cleanup runs.
    gone = await daemon.changed(f"{loader}?n=2", since=mark)
    assert gone["reason"] == "invalidate" and gone["version"] == first[2]["version"]
    await asyncio.sleep(0.2)
    assert "cleanup 2" in log(project)
    assert daemon.changes(f"{loader}?n=1", since=mark) == []
    assert daemon.changes(f"{loader}?n=3", since=mark) == []
    # The remembered ones are served from memory; the forgotten one runs again, set up anew,
    # with a version above the one clients saw before.
    before = log(project)
    assert exported(await daemon.load(f"{loader}?n=1")) == "1"
    assert log(project) == before
    again = await daemon.load(f"{loader}?n=2")
    assert exported(again) == "2" and again["version"] > first[2]["version"]
    ran = [line for line in log(project)[len(before):] if not line.startswith("cleanup")]
    assert ran == ["setup 2", "run 2"]  # (n=3, now the least recent, is forgotten meanwhile)


async def test_a_plain_id_is_never_forgotten(
    project: Project, start_daemon: StartDaemon
) -> None:
    daemon, loader = await bounded(start_daemon, project, 1)
    await daemon.load(loader)
    for n in range(5):
        await daemon.load(f"{loader}?n={n}")
    before = log(project)
    assert exported(await daemon.load(loader)) == "-"
    assert log(project) == before  # served from memory: no run


async def test_a_forgotten_id_is_no_longer_watched(
    project: Project, start_daemon: StartDaemon
) -> None:
    daemon, loader = await bounded(start_daemon, project, 2)
    for n in (1, 2, 3):  # n=1 is forgotten
        await daemon.load(f"{loader}?n={n}")
    mark = daemon.mark()
    Path(project.path("src/data.txt")).write_text("2")
    await daemon.changed(f"{loader}?n=3", since=mark)
    await daemon.changed(f"{loader}?n=2", since=mark)
    await daemon.roundtrip()
    assert [c["reason"] for c in daemon.changes(f"{loader}?n=1", since=mark)] == []


async def test_with_no_bound_every_query_id_is_kept(
    project: Project, start_daemon: StartDaemon
) -> None:
    daemon, loader = await bounded(start_daemon, project, 0)
    for n in range(20):
        await daemon.load(f"{loader}?n={n}")
    before = log(project)
    for n in range(20):
        await daemon.load(f"{loader}?n={n}")
    assert log(project) == before


async def test_a_negative_bound_is_reported_and_the_default_used(
    project: Project, start_daemon: StartDaemon
) -> None:
    daemon, loader = await bounded(start_daemon, project, -1)
    await daemon.roundtrip()
    warnings = [n["message"] for n in daemon.notifications("window/logMessage") if n["type"] == 2]
    assert any("maxQueryIds" in w and "5000" in w for w in warnings), warnings
    for n in range(4):
        await daemon.load(f"{loader}?n={n}")
    before = log(project)
    await daemon.load(f"{loader}?n=0")
    assert log(project) == before
