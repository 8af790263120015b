"""Workers forked from a preloader: a library a loader imports is imported once, by the
preloader, and every worker forked after that has it, yet behaves as a freshly spawned one.

The library is a stand-in: a package in a temporary site-packages (outside the project, on
PYTHONPATH) that sleeps at import, as a heavy library does, and logs each import with the pid
that ran it. A loader tells whether it was forked from a preloader that had the library by
looking at `sys.modules` before its own `import`: a spawned worker never has it there.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from harness import (
    REPO,
    Daemon,
    Project,
    StartDaemon,
    alive,
    children,
    descendants,
    eventually,
    exported,
    initialize_params,
    spawn_daemon,
)

pytestmark = pytest.mark.preload


class Library:
    """The stand-in third-party package `standin` and the log of who imported it."""

    def __init__(self, site: Path) -> None:
        self.site = site
        self.log = site / "imports.log"
        self.log.write_text("")
        self.install(1)

    def install(self, value: int) -> None:
        """Install (or upgrade in place, as pip does: new files renamed over the old)."""
        package = self.site / "standin"
        package.mkdir(exist_ok=True)
        tmp = package / "__init__.py.tmp"
        tmp.write_text(
            "import os, time\n"
            f"with open({str(self.log)!r}, 'a') as f:\n"
            "    f.write(f'{os.getpid()}\\n')\n"
            "time.sleep(0.2)\n"
            f"VALUE = {value}\n"
        )
        os.replace(tmp, package / "__init__.py")

    def importers(self) -> list[int]:
        return [int(line) for line in self.log.read_text().split()]

    @property
    def env(self) -> dict[str, str]:
        return {"PYTHONPATH": os.pathsep.join([str(REPO), str(self.site)])}


@pytest.fixture
def library(tmp_path: Path) -> Library:
    site = tmp_path / "site-packages"
    site.mkdir()
    return Library(site)


def loader_source(
    n: int, *, body: str = "", imports: str = "standin", extra: str = "None"
) -> str:
    """A loader reporting whether `standin` was preloaded, what it holds, and `n` (its edit);
    `body` runs first in load(), `extra` is an expression it reports too."""
    return (
        "import sys\n"
        "PRELOADED = 'standin' in sys.modules\n"
        f"import os, random, vmd, {imports}\n"
        "def load(ctx):\n"
        f"{body}"
        "    return vmd.json_module({'preloaded': PRELOADED, 'value': standin.VALUE,\n"
        f"        'n': {n}, 'pid': os.getpid(), 'random': random.random(), 'extra': {extra}}})\n"
    )


async def edit_until_forked(
    project: Project, daemon: Daemon, rel: str, *, start: int = 0, **source: Any
) -> tuple[int, dict[str, Any]]:
    """Edit the loader until a load runs in a worker forked with `standin` preloaded (the
    preloader imports it in the background after the loader is first seen)."""
    n = start
    loader = project.write(rel, loader_source(n, **source))
    value = exported(await daemon.load(loader))
    while not value["preloaded"]:
        if n - start > 100:
            raise AssertionError("no worker was ever forked with the library preloaded")
        await asyncio.sleep(0.05)
        n += 1
        project.write(rel, loader_source(n, **source))
        value = exported(await daemon.load(loader))
        assert value["n"] == n  # the edit ran, forked or not
    return n, value


async def start(start_daemon: StartDaemon, library: Library, **kw: Any) -> Daemon:
    return await start_daemon(env=library.env, **kw)


async def test_edits_of_a_loader_run_new_code_without_importing_its_library_again(
    project: Project, start_daemon: StartDaemon, library: Library
) -> None:
    daemon = await start(start_daemon, library)
    n, value = await edit_until_forked(project, daemon, "src/a.vmd.py")
    assert value["value"] == 1
    pids = {value["pid"]}
    for _ in range(3):
        n += 1
        project.write("src/a.vmd.py", loader_source(n))
        value = exported(await daemon.load(project.path("src/a.vmd.py")))
        assert (value["n"], value["preloaded"]) == (n, True)
        pids.add(value["pid"])
    assert len(pids) == 4  # a fresh process for each edit
    # None of them imported the library itself (preloaders did: a new generation may have,
    # after learning what else the runs imported).
    assert pids.isdisjoint(library.importers())


@pytest.mark.parametrize("mode", ["serve", "build"])
async def test_a_cold_batch_of_loaders_importing_a_library_imports_it_once_not_per_loader(
    project: Project, start_daemon: StartDaemon, library: Library, mode: str
) -> None:
    """Many loaders asked for at once, none run before: only the ready spare may import the
    library itself; every other loader waits for the preloader importing it and is forked
    from it (serving keeps a spare starting all along, and a start under way must not count
    as one to give away: each loader would get its own interpreter and import)."""
    daemon = await start(start_daemon, library, options={"mode": mode})
    loaders = [project.write(f"src/p{i}.vmd.py", loader_source(i)) for i in range(6)]
    answer = await daemon.call("vmd/loadMany", {"ids": loaders})
    values = [exported(r["result"]) for r in answer["results"]]
    assert [v["n"] for v in values] == list(range(6))
    spawned = [v for v in values if not v["preloaded"]]
    assert len(spawned) <= 1, values
    forked = {v["pid"] for v in values if v["preloaded"]}
    assert forked.isdisjoint(library.importers())  # they had it from the preloader


def forked(pid: int) -> bool:
    """Whether `pid` was forked from a preloader: it keeps the preloader's command line."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"vmd.workers.preloader" in f.read()
    except OSError:
        return False


# A loader of the standard library only: whether its worker was forked (a forked worker keeps
# the preloader's command line; a spawned one runs `-m vmd.workers.main`).
STANDARD_LOADER = (
    "import os, vmd\n"
    "FORKED = b'vmd.workers.preloader' in open('/proc/self/cmdline', 'rb').read()\n"
    "def load(ctx):\n"
    "    return vmd.json_module({'forked': FORKED, 'pid': os.getpid()})\n"
)


async def test_a_dev_servers_first_standard_library_loaders_fork_rather_than_spawn_each(
    project: Project, start_daemon: StartDaemon
) -> None:
    """What a dev server asks for at start: many loaders at once, right after `initialize`.
    One may take the warm spare; the others fork from the preloader, not one interpreter
    started per loader (each taking the spare's replacement as it started)."""
    daemon = await start_daemon(options={"maxWorkers": 16})
    loaders = [project.write(f"src/s{i}.vmd.py", STANDARD_LOADER) for i in range(10)]
    answer = await daemon.call("vmd/loadMany", {"ids": loaders})
    values = [exported(r["result"]) for r in answer["results"]]
    assert len({v["pid"] for v in values}) == 10
    assert sum(not v["forked"] for v in values) <= 1, values


async def test_a_build_of_one_standard_library_loader_starts_no_preloader(
    project: Project, start_daemon: StartDaemon
) -> None:
    """Its ids all run in the spare started with the daemon: a preloader would never fork,
    and importing would take CPU from the build."""
    daemon = await start_daemon(options={"mode": "build"})
    loader = project.write("src/s.vmd.py", STANDARD_LOADER)
    answer = await daemon.call("vmd/loadMany", {"ids": [f"{loader}?n={n}" for n in range(20)]})
    (pid,) = {exported(r["result"])["pid"] for r in answer["results"]}
    await daemon.roundtrip()
    await asyncio.sleep(0.5)  # a preloader started would be there, and named, by then
    assert (daemon.worker_pids(), daemon.preloader_pids()) == ({pid}, set())


async def test_loaders_importing_only_what_the_preloader_has_start_no_new_preloader(
    project: Project, start_daemon: StartDaemon
) -> None:
    """A run reports the modules it imported (json, vmd's own); a preloader that has them
    already is kept, not rebuilt: a rebuild costs an interpreter start for nothing."""
    daemon = await start_daemon()

    async def the_preloader() -> int:
        # One process named so; a worker just forked is too, until it takes its name back.
        await eventually(lambda: len(daemon.preloader_pids()) == 1)
        (pid,) = daemon.preloader_pids()
        return pid

    exported(await daemon.load(project.write("src/s0.vmd.py", STANDARD_LOADER)))
    first = await the_preloader()
    for i in range(1, 6):
        exported(await daemon.load(project.write(f"src/s{i}.vmd.py", STANDARD_LOADER)))
    await asyncio.sleep(1.0)  # a new generation would be started and swapped in by then
    assert await the_preloader() == first


async def test_the_worker_for_the_next_edit_is_forked_before_the_edit(
    project: Project, start_daemon: StartDaemon, library: Library
) -> None:
    daemon = await start(start_daemon, library)
    first, value = await edit_until_forked(project, daemon, "src/a.vmd.py")
    # Serving keeps a worker forked ahead from the ready preloader, so a code change waits for
    # no fork: an edit runs in a process that was there before it, with the library preloaded
    # (the warm spare, spawned, has not). A few tries: a newer preloader generation coming
    # ready replaces the worker forked ahead from the old one.
    for n in range(first + 1, first + 21):
        # A worker forked ahead: forked, and not the one the loader runs in now.
        await eventually(
            lambda now=value["pid"]: any(p != now and forked(p) for p in daemon.worker_pids())
        )
        before = daemon.worker_pids()
        project.write("src/a.vmd.py", loader_source(n))
        value = exported(await daemon.load(project.path("src/a.vmd.py")))
        assert value["n"] == n
        if value["preloaded"] and value["pid"] in before:
            break
    else:
        raise AssertionError("no edit ran in a worker forked before it")
    assert value["pid"] not in library.importers()


async def test_a_helper_edit_runs_the_new_helper_in_a_forked_worker(
    project: Project, start_daemon: StartDaemon, library: Library
) -> None:
    daemon = await start(start_daemon, library)
    project.write("src/helper.py", "WORD = 'old'\n")
    body = "    import helper\n    assert helper.WORD == ctx.query.get('want', helper.WORD)\n"
    await edit_until_forked(project, daemon, "src/a.vmd.py", body=body)
    project.write("src/helper.py", "WORD = 'new'\n")
    value = exported(await daemon.load(project.path("src/a.vmd.py") + "?want=new"))
    assert value["preloaded"]


async def test_a_library_upgraded_in_place_is_imported_anew(
    project: Project, start_daemon: StartDaemon, library: Library
) -> None:
    daemon = await start(start_daemon, library)
    n, value = await edit_until_forked(project, daemon, "src/a.vmd.py")
    assert value["value"] == 1
    library.install(2)  # pip install -U
    project.write("src/a.vmd.py", loader_source(n + 1))
    value = exported(await daemon.load(project.path("src/a.vmd.py")))
    assert (value["n"], value["value"]) == (n + 1, 2)
    # A new preloader has the new version: later workers are forked with it again.
    _, value = await edit_until_forked(project, daemon, "src/a.vmd.py", start=n + 2)
    assert value["value"] == 2


async def test_a_module_that_starts_a_thread_at_import_is_not_preloaded_and_still_works(
    project: Project, start_daemon: StartDaemon, library: Library
) -> None:
    (library.site / "threaded.py").write_text(
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(600,), daemon=True).start()\n"
    )
    daemon = await start(start_daemon, library)
    body = "    import threading\n    assert threading.active_count() > 1, 'not imported here'\n"
    # The preloader that tried `threaded` refused to fork; the next one has `standin` only.
    _, value = await edit_until_forked(
        project, daemon, "src/a.vmd.py", imports="threaded, standin", body=body
    )
    assert value["value"] == 1
    for pid in daemon.preloader_pids():
        with open(f"/proc/{pid}/status") as f:
            assert "Threads:\t1\n" in f.read()  # still safe to fork from


async def test_a_project_module_named_like_a_preloaded_library_is_the_projects_own(
    project: Project, start_daemon: StartDaemon, library: Library
) -> None:
    daemon = await start(start_daemon, library)
    await edit_until_forked(project, daemon, "lib/a.vmd.py")
    project.write("app/standin.py", "VALUE = 'local'\n")
    value = exported(await daemon.load(project.write("app/b.vmd.py", loader_source(0))))
    assert value["value"] == "local"


async def test_numpy_computes_right_in_a_forked_worker(
    project: Project, start_daemon: StartDaemon, library: Library
) -> None:
    import numpy

    body = "    a = numpy.arange(250_000, dtype=float).reshape(500, 500) / 1e5\n"
    daemon = await start(start_daemon, library)
    _, value = await edit_until_forked(
        project, daemon, "a.vmd.py", imports="numpy, standin", body=body,
        extra="float(numpy.trace(a @ a))",
    )
    a = numpy.arange(250_000, dtype=float).reshape(500, 500) / 1e5
    assert value["extra"] == pytest.approx(float(numpy.trace(a @ a)))


async def test_two_forked_workers_draw_different_random_numbers(
    project: Project, start_daemon: StartDaemon, library: Library
) -> None:
    daemon = await start(start_daemon, library)
    _, a = await edit_until_forked(project, daemon, "a.vmd.py")
    _, b = await edit_until_forked(project, daemon, "b.vmd.py")
    assert a["pid"] != b["pid"]
    assert a["random"] != b["random"]


def counting_source(n: int) -> str:
    """A loader whose worker counts its runs (module state: it lives as long as the worker)."""
    return (
        "import sys\n"
        "PRELOADED = 'standin' in sys.modules\n"
        "import os, vmd, standin\n"
        "RUNS = []\n"
        "def load(ctx):\n"
        "    RUNS.append(1)\n"
        f"    return vmd.json_module({{'preloaded': PRELOADED, 'n': {n}, 'pid': os.getpid(),\n"
        "        'runs': len(RUNS)})\n"
    )


async def test_a_worker_outlives_the_replacement_of_the_preloader_it_was_forked_from(
    project: Project, start_daemon: StartDaemon, library: Library
) -> None:
    # A preloader is its workers' parent (they die with it): a newer generation replacing it
    # must leave it running while a worker it forked hosts a loader, and stop it after that.
    daemon = await start(start_daemon, library)
    loader = project.path("a.vmd.py")
    for n in range(100):
        project.write("a.vmd.py", counting_source(n))
        first = exported(await daemon.load(loader))
        if first["preloaded"]:
            break
        await asyncio.sleep(0.05)
    assert first["preloaded"]
    old = daemon.preloader_pids()
    # A library no preloader has: a generation importing it replaces the ready one.
    (library.site / "standin2.py").write_text("import time\ntime.sleep(0.2)\n")
    other = "import sys\nPRE = 'standin2' in sys.modules\nimport os, vmd, standin2\n" + (
        "def load(ctx):\n    return vmd.json_module({'pre': PRE, 'n': %d})\n"
    )
    for n in range(100):
        project.write("b.vmd.py", other % n)
        if exported(await daemon.load(project.path("b.vmd.py")))["pre"]:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("no generation with standin2 was ever ready")
    await asyncio.sleep(1.5)  # longer than a closed preloader is given before it is killed
    again = exported(await daemon.load(loader + "?again=1"))  # another instance, same worker
    assert (again["pid"], again["runs"]) == (first["pid"], 2)
    project.write("a.vmd.py", counting_source(first["n"] + 1))  # its worker is replaced
    assert exported(await daemon.load(loader))["n"] == first["n"] + 1
    await eventually(lambda: not any(alive(p) for p in old))


async def test_killing_the_preloader_loses_no_request_and_a_new_one_takes_over(
    project: Project, start_daemon: StartDaemon, library: Library
) -> None:
    daemon = await start(start_daemon, library)
    n, _ = await edit_until_forked(project, daemon, "a.vmd.py")
    killed = daemon.preloader_pids()
    assert killed
    loads = []
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    for i in range(1, 4):  # edits right after: forked from nothing, they are spawned
        project.write("a.vmd.py", loader_source(n + i))
        loads.append(exported(await daemon.load(project.path("a.vmd.py"))))
    assert [v["n"] for v in loads] == [n + 1, n + 2, n + 3]
    await edit_until_forked(project, daemon, "a.vmd.py", start=n + 4)
    assert daemon.preloader_pids().isdisjoint(killed)


async def test_a_forked_worker_that_times_out_is_reported_at_its_loop(
    project: Project, start_daemon: StartDaemon, library: Library
) -> None:
    daemon = await start(start_daemon, library, options={"timeoutMs": 1000})
    body = "    while ctx.query.get('hang'):\n        pass\n"
    await edit_until_forked(project, daemon, "a.vmd.py", body=body)
    error = await daemon.load_error(project.path("a.vmd.py") + "?hang=1")
    assert error.message.endswith("timed out after 1000 ms")
    assert (error.data["file"], error.data["line"]) == (project.path("a.vmd.py"), 5)


async def test_a_forked_worker_that_crashes_is_reported_with_its_signal(
    project: Project, start_daemon: StartDaemon, library: Library
) -> None:
    daemon = await start(start_daemon, library)
    body = "    if ctx.query.get('crash'):\n        os.kill(os.getpid(), 9)\n"
    await edit_until_forked(project, daemon, "a.vmd.py", body=body)
    error = await daemon.load_error(project.path("a.vmd.py") + "?crash=1")
    assert "was killed by SIGKILL" in error.message
    value = exported(await daemon.load(project.path("a.vmd.py")))  # a fresh worker after it
    assert value["value"] == 1


async def test_no_preloader_or_forked_worker_outlives_a_killed_daemon(
    project: Project, start_daemon: StartDaemon, library: Library
) -> None:
    daemon = await start(start_daemon, library)
    await edit_until_forked(project, daemon, "a.vmd.py")
    pids = descendants(daemon.proc.pid)
    assert daemon.preloader_pids() and daemon.worker_pids()
    daemon.proc.kill()
    await daemon.wait_exit()
    await eventually(lambda: not any(alive(p) for p in pids))


async def test_no_preloader_or_forked_worker_outlives_a_killed_client(
    project: Project, library: Library
) -> None:
    # The client is an intermediate process whose child is the daemon; SIGKILL it.
    daemon = await spawn_daemon(env=library.env, argv=[
        sys.executable, "-c",
        "import subprocess, sys; subprocess.run([sys.executable, '-m', 'vmd', 'serve'])",
    ])
    launcher = daemon.proc
    try:
        await daemon.call("initialize", initialize_params(project.root, process_id=launcher.pid))
        daemon.notify("initialized", {})
        await eventually(lambda: len(children(launcher.pid)) == 1)
        (daemon_pid,) = children(launcher.pid)
        await edit_until_forked(project, daemon, "a.vmd.py")
        pids = descendants(daemon_pid)
        assert len(pids) >= 2
        launcher.kill()
        await launcher.wait()
        await eventually(lambda: not alive(daemon_pid))
        await eventually(lambda: not any(alive(p) for p in pids))
    finally:
        for pid in children(launcher.pid):
            os.kill(pid, signal.SIGKILL)
        await daemon.close()


@pytest.mark.parametrize(
    "how", [{"env": {"VMD_PRELOAD": "0"}}, {"options": {"preload": False}}],
    ids=["VMD_PRELOAD=0", "preload-false"],
)
async def test_preloading_turned_off_spawns_every_worker(
    project: Project, start_daemon: StartDaemon, library: Library, how: dict[str, Any]
) -> None:
    env = {**library.env, **how.get("env", {})}
    daemon = await start_daemon(env=env, options=how.get("options"))
    loader = project.write("a.vmd.py", loader_source(0))
    for n in range(1, 6):
        project.write("a.vmd.py", loader_source(n))
        value = exported(await daemon.load(loader))
        assert (value["n"], value["preloaded"]) == (n, False)
    await daemon.roundtrip()
    assert not daemon.preloader_pids()
    assert len(library.importers()) >= 5  # every worker imported the library itself


async def test_what_a_replaced_workers_loader_left_running_is_reaped_not_left_a_zombie(
    project: Project, start_daemon: StartDaemon, library: Library
) -> None:
    # The daemon is a child subreaper: a loader's own children become the daemon's when their
    # worker dies, and must not stay zombies.
    daemon = await start(start_daemon, library)
    body = "    import subprocess\n    child = subprocess.Popen(['sleep', '60'])\n"
    n, value = await edit_until_forked(project, daemon, "a.vmd.py", body=body, extra="child.pid")
    leftover = value["extra"]
    project.write("a.vmd.py", loader_source(n + 1))  # replaces the worker: its group is killed
    assert exported(await daemon.load(project.path("a.vmd.py")))["n"] == n + 1
    await eventually(lambda: not os.path.exists(f"/proc/{leftover}"))
