"""A loader that reads SQLite (`sqlite3.connect`, seen through the audit event) depends on the
database and its write-ahead log: another process's commits make it run again, its own reads
and writes never do."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path

from harness import Daemon, Project, StartDaemon, exported

# Counts its runs in runs.txt; `?visit` also writes to the database it reads.
READER = """\
import pathlib, sqlite3
from contextlib import closing
import vmd

RUNS = pathlib.Path(__file__).with_name("runs.txt")

def load(ctx):
    with RUNS.open("a") as f:
        f.write("run\\n")
    with closing(sqlite3.connect("content/app.db")) as db:
        if "visit" in ctx.query:
            with db:
                db.execute("insert into visits default values")
        titles = [t for (t,) in db.execute("select title from posts order by id")]
    return vmd.json_module(titles)
"""


def runs(project: Project) -> int:
    path = Path(project.path("src/runs.txt"))
    return len(path.read_text().splitlines()) if path.exists() else 0


def database(project: Project, *, wal: bool) -> sqlite3.Connection:
    """The content database, with one post; the connection stays open (a CMS holding it)."""
    Path(project.path("content")).mkdir(exist_ok=True)
    db = sqlite3.connect(project.path("content/app.db"), isolation_level=None)
    if wal:
        db.execute("pragma journal_mode=wal")
    db.execute("create table posts (id integer primary key, title text)")
    db.execute("create table visits (id integer primary key)")
    db.execute("insert into posts (title) values ('first')")
    return db


async def quiet(daemon: Daemon, project: Project, id: str, seconds: float = 1.5) -> None:
    """No run and no `vmd/changed` of `id` for `seconds` (what a loop of its own would break)."""
    before, mark = runs(project), daemon.mark()
    await asyncio.sleep(seconds)
    await daemon.roundtrip()
    assert daemon.changes(id, since=mark) == []
    assert runs(project) == before


async def test_another_process_s_commits_reach_a_wal_reader_and_its_own_reads_do_not_loop(
    project: Project, start_daemon: StartDaemon
) -> None:
    loader = project.write("src/posts.vmd.py", READER)
    with closing(database(project, wal=True)) as cms:
        daemon = await start_daemon()
        assert exported(await daemon.load(loader)) == ["first"]
        await quiet(daemon, project, loader)
        mark = daemon.mark()
        cms.execute("insert into posts (title) values ('second')")  # committed into the -wal
        await daemon.changed(loader, since=mark)
        assert exported(await daemon.load(loader)) == ["first", "second"]
        await quiet(daemon, project, loader)
    # The writer closing checkpoints its log into the database: the output stays right, and
    # the loader settles again.
    await asyncio.sleep(0.5)
    assert exported(await daemon.load(loader)) == ["first", "second"]
    await quiet(daemon, project, loader)


async def test_a_rollback_journal_database_is_a_dependency_too(
    project: Project, start_daemon: StartDaemon
) -> None:
    loader = project.write("src/posts.vmd.py", READER)
    with closing(database(project, wal=False)) as cms:
        daemon = await start_daemon()
        assert exported(await daemon.load(loader)) == ["first"]
        mark = daemon.mark()
        cms.execute("insert into posts (title) values ('second')")
        await daemon.changed(loader, since=mark)
        assert exported(await daemon.load(loader)) == ["first", "second"]
        await quiet(daemon, project, loader)


async def test_a_loader_writing_to_the_database_it_reads_does_not_run_itself_again(
    project: Project, start_daemon: StartDaemon
) -> None:
    loader = project.write("src/posts.vmd.py", READER)
    with closing(database(project, wal=True)) as cms:
        daemon = await start_daemon()
        id = f"{loader}?visit"
        assert exported(await daemon.load(id)) == ["first"]
        await quiet(daemon, project, id)
        (visits,) = cms.execute("select count(*) from visits").fetchone()
        assert visits == 1


async def test_watching_the_database_files_by_glob_does_not_loop_either(
    project: Project, start_daemon: StartDaemon
) -> None:
    loader = project.write(
        "src/posts.vmd.py", 'watch = ["../content/app.db*"]\n' + READER
    )
    with closing(database(project, wal=True)) as cms:
        daemon = await start_daemon()
        assert exported(await daemon.load(loader)) == ["first"]
        await quiet(daemon, project, loader)
        mark = daemon.mark()
        cms.execute("insert into posts (title) values ('second')")
        await daemon.changed(loader, since=mark)
        assert exported(await daemon.load(loader)) == ["first", "second"]
        await quiet(daemon, project, loader)
