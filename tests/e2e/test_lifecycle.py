"""LSP lifecycle: the daemon starts, refuses early requests, and always exits without leaving a
process behind, however its client goes away."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from harness import (
    ENV,
    WAIT,
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

from vmd import __version__
from vmd.protocol import PROTOCOL_VERSION

# Spawns a grandchild in the worker's process group and reports the worker's and its pids.
SPAWNING = """
import os, subprocess, vmd

def load(ctx):
    child = subprocess.Popen(["sleep", "60"])
    return vmd.json_module([os.getpid(), child.pid])
"""


async def loaded_workers(project: Project, daemon: Daemon) -> set[int]:
    """Load two loaders and return every worker pid: two assigned workers and the spare (the
    warm spare, or with a preloader the worker forked ahead, which may still be forking)."""
    for name in ("a", "b"):
        loader = project.write(f"src/{name}.vmd.py", "def load(ctx):\n    return ''\n")
        await daemon.load(loader)
    await eventually(lambda: len(daemon.worker_pids()) >= 3)
    return daemon.worker_pids()


async def test_shutdown_then_exit_exits_0_and_stops_every_worker(
    project: Project, daemon: Daemon
) -> None:
    pids = await loaded_workers(project, daemon)
    assert await daemon.shutdown() == 0
    await eventually(lambda: not any(alive(p) for p in pids))


async def test_processes_a_loader_spawned_are_stopped_with_it(
    project: Project, daemon: Daemon
) -> None:
    loader = project.write("src/spawn.vmd.py", SPAWNING)
    result = await daemon.load(loader)
    worker, grandchild = exported(result)
    assert alive(worker) and alive(grandchild)
    assert await daemon.shutdown() == 0
    await eventually(lambda: not alive(worker) and not alive(grandchild))


async def test_exit_without_shutdown_exits_1(daemon: Daemon) -> None:
    daemon.notify("exit")
    assert await daemon.wait_exit() == 1


async def test_requests_after_shutdown_are_invalid(project: Project, daemon: Daemon) -> None:
    loader = project.write("a.vmd.py", "def load(ctx):\n    return ''\n")
    await daemon.call("shutdown")
    response = await daemon.exchange("vmd/load", {"id": loader})
    assert response["error"]["code"] == -32600
    daemon.notify("exit")
    assert await daemon.wait_exit() == 0


async def test_stdin_eof_exits_and_stops_every_worker(project: Project, daemon: Daemon) -> None:
    pids = await loaded_workers(project, daemon)
    assert daemon.proc.stdin is not None
    daemon.proc.stdin.close()
    assert await daemon.wait_exit() == 1  # gone without shutdown: LSP's exit code 1
    await eventually(lambda: not any(alive(p) for p in pids))


async def test_sigterm_exits_and_stops_every_worker(project: Project, daemon: Daemon) -> None:
    pids = await loaded_workers(project, daemon)
    daemon.proc.terminate()
    await daemon.wait_exit()
    await eventually(lambda: not any(alive(p) for p in pids))


async def test_daemon_exits_when_the_client_process_dies(project: Project) -> None:
    # The client is an intermediate process whose child is the daemon. The daemon's pipes are
    # inherited from this test, which keeps them open: only the processId watch can notice.
    daemon = await spawn_daemon(argv=[
        sys.executable, "-c",
        "import subprocess, sys; subprocess.run([sys.executable, '-m', 'vmd', 'serve'])",
    ])
    launcher = daemon.proc
    try:
        await daemon.call("initialize", initialize_params(project.root, process_id=launcher.pid))
        daemon.notify("initialized", {})
        await eventually(lambda: len(children(launcher.pid)) == 1)
        (daemon_pid,) = children(launcher.pid)
        loader = project.write("a.vmd.py", "def load(ctx):\n    return ''\n")
        await daemon.load(loader)
        workers = descendants(daemon_pid)
        assert workers
        launcher.kill()
        await launcher.wait()
        # processId is checked every second; stdin stays open, so nothing else can tell it.
        await eventually(lambda: not alive(daemon_pid))
        await asyncio.wait_for(daemon.eof.wait(), WAIT)
        await eventually(lambda: not any(alive(p) for p in workers))
    finally:
        for pid in children(launcher.pid):
            os.kill(pid, signal.SIGKILL)
        await daemon.close()


async def test_workers_die_when_the_daemon_is_killed(project: Project, daemon: Daemon) -> None:
    pids = await loaded_workers(project, daemon)
    daemon.proc.kill()
    await daemon.wait_exit()
    await eventually(lambda: not any(alive(p) for p in pids))


WHERE = "import os, vmd\ndef load(ctx):\n    return vmd.json_module([os.getpid(), os.getcwd()])\n"


async def first_worker(daemon: Daemon) -> int:
    """The pid of the worker a daemon starts with itself, before any handshake."""
    await eventually(lambda: len(daemon.worker_pids()) == 1)
    (pid,) = daemon.worker_pids()
    return pid


async def where_it_runs(project: Project, daemon: Daemon) -> tuple[int, str]:
    """Initialize on the project, load a loader; the pid and cwd it ran with."""
    await daemon.call("initialize", initialize_params(project.root))
    daemon.notify("initialized", {})
    pid, cwd = exported(await daemon.load(project.write("a.vmd.py", WHERE)))
    return pid, cwd


async def test_the_first_worker_starts_before_initialize_and_runs_the_first_loader(
    project: Project, start_daemon: StartDaemon
) -> None:
    daemon = await start_daemon(initialize=False, cwd=project.root)
    # Its interpreter starts with the daemon's, not after the handshake.
    early = await first_worker(daemon)
    assert await where_it_runs(project, daemon) == (early, str(project.root))


async def test_a_first_worker_killed_before_initialize_is_replaced(
    project: Project, start_daemon: StartDaemon
) -> None:
    daemon = await start_daemon(initialize=False, cwd=project.root)
    early = await first_worker(daemon)
    os.kill(early, signal.SIGKILL)
    pid, cwd = await where_it_runs(project, daemon)
    assert pid != early and cwd == str(project.root)


async def test_a_daemon_started_outside_the_root_runs_loaders_in_the_root(
    project: Project, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    daemon = await start_daemon(initialize=False, cwd=elsewhere)
    early = await first_worker(daemon)
    pid, cwd = await where_it_runs(project, daemon)
    assert cwd == str(project.root) and pid != early
    await eventually(lambda: not alive(early))  # started in the wrong folder: stopped


async def test_a_daemon_never_initialized_leaves_no_worker_behind(
    project: Project, start_daemon: StartDaemon
) -> None:
    daemon = await start_daemon(initialize=False, cwd=project.root)
    early = await first_worker(daemon)
    assert daemon.proc.stdin is not None
    daemon.proc.stdin.close()
    await daemon.wait_exit()
    await eventually(lambda: not alive(early))


async def test_a_daemon_started_in_a_folder_that_is_gone_still_serves_loaders(
    project: Project, tmp_path: Path
) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    daemon = await spawn_daemon(argv=[
        "sh", "-c", f'cd "{gone}" && rmdir "{gone}" && exec "{sys.executable}" -m vmd serve',
    ])
    try:
        _, cwd = await where_it_runs(project, daemon)
        assert cwd == str(project.root)
    finally:
        await daemon.close()


async def test_a_build_keeps_one_worker_per_loader_and_no_spare(
    project: Project, start_daemon: StartDaemon
) -> None:
    build = await start_daemon(options={"mode": "build"})
    serve = await start_daemon(options={"preload": False})  # no worker forked ahead
    for name in ("a", "b"):
        project.write(f"{name}.vmd.py", WHERE)
    pids = set()
    for name in ("a", "b"):
        pid, _ = exported(await build.load(str(project.root / f"{name}.vmd.py")))
        pids.add(pid)
        await serve.load(str(project.root / f"{name}.vmd.py"))
    # A replacement spare would be started as the loader's worker is assigned, before the
    # load's answer: the answers, and one more round trip, are past the point it would exist.
    # (Eventually: a preloader just started is a plain interpreter until it names itself.)
    await build.roundtrip()
    await eventually(lambda: build.worker_pids() == pids)
    # Serving keeps a warm spare next to the loaders' workers, for the next code change.
    await eventually(lambda: len(serve.worker_pids()) == 3)


async def test_vmd_requests_before_initialize_are_refused_with_32002(
    project: Project, start_daemon: StartDaemon
) -> None:
    daemon = await start_daemon(initialize=False)
    loader = project.write("a.vmd.py", "def load(ctx):\n    return ''\n")
    for method, params in (
        ("vmd/load", {"id": loader}),
        ("vmd/reload", {"id": loader}),
        ("vmd/invalidate", {"id": loader}),
        ("textDocument/hover", {}),
    ):
        response = await daemon.exchange(method, params)
        assert response["error"]["code"] == -32002, (method, response)
    # ...and the daemon still initializes normally afterwards.
    await daemon.call("initialize", initialize_params(project.root))
    daemon.notify("initialized", {})
    assert (await daemon.load(loader))["version"] == 1


async def test_initialize_reports_the_protocol_revision_and_the_vmd_methods(
    start_daemon: StartDaemon,
) -> None:
    daemon = await start_daemon(initialize=False)
    result = await daemon.call("initialize", initialize_params(Path("/")))
    assert result["serverInfo"] == {"name": "vmd", "version": __version__}
    assert result["capabilities"]["experimental"]["vmd"]["protocolVersion"] == PROTOCOL_VERSION
    assert set(result["capabilities"]["experimental"]["vmd"]["methods"]) >= {
        "vmd/load", "vmd/loadMany", "vmd/reload", "vmd/invalidate",
    }


def test_a_daemon_scripted_from_a_file_writes_its_answers_to_a_file(
    project: Project, tmp_path: Path
) -> None:
    """`vmd serve < script > answers`: neither end is a pipe the event loop can poll."""

    def framed(message: dict[str, object]) -> bytes:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)

    script = tmp_path / "script"
    script.write_bytes(
        framed({"id": 1, "method": "initialize", "params": initialize_params(project.root)})
        + framed({"id": 2, "method": "shutdown"})
        + framed({"method": "exit"})
    )
    answers = tmp_path / "answers"
    with script.open("rb") as stdin, answers.open("wb") as stdout:
        done = subprocess.run(
            [sys.executable, "-m", "vmd", "serve"], stdin=stdin, stdout=stdout, env=ENV,
            cwd=project.root, timeout=30,
        )
    assert done.returncode == 0  # shutdown, then exit: an orderly exit, though read in one go
    text = answers.read_bytes().decode()
    assert '"id":1,"result":{"capabilities"' in text
    assert '"id":2,"result":null' in text


async def test_a_second_initialize_is_refused(project: Project, daemon: Daemon) -> None:
    response = await daemon.exchange("initialize", initialize_params(project.root))
    assert response["error"]["code"] == -32600


SLEEPER = """
import time

def load(ctx):
    print("asleep", flush=True)
    time.sleep(60)
    return ""
"""


async def asleep(daemon: Daemon) -> None:
    """Wait until SLEEPER says it is asleep in its worker."""
    await daemon.wait_for(
        lambda m: m["method"] == "window/logMessage" and "asleep" in m["params"]["message"]
    )


async def test_stdin_eof_during_a_long_run_exits_promptly_and_kills_the_run(
    project: Project, daemon: Daemon
) -> None:
    loader = project.write("src/slow.vmd.py", SLEEPER)
    pending = asyncio.ensure_future(daemon.exchange("vmd/load", {"id": loader}, timeout=30))
    await asleep(daemon)
    await eventually(lambda: len(daemon.worker_pids()) >= 2)  # the run's worker + the spare
    pids = daemon.worker_pids()
    assert daemon.proc.stdin is not None
    daemon.proc.stdin.close()
    await daemon.wait_exit(timeout=10)  # promptly: the run would take 60 s
    await eventually(lambda: not any(alive(p) for p in pids))
    pending.cancel()


async def test_shutdown_during_a_long_run_answers_both_and_exits_0(
    project: Project, daemon: Daemon
) -> None:
    loader = project.write("src/slow.vmd.py", SLEEPER)
    pending = asyncio.ensure_future(daemon.exchange("vmd/load", {"id": loader}, timeout=30))
    await asleep(daemon)
    await eventually(lambda: len(daemon.worker_pids()) >= 2)
    pids = daemon.worker_pids()
    mark = daemon.mark()
    assert await asyncio.wait_for(daemon.call("shutdown"), 10) is None  # the run would take 60 s
    response = await asyncio.wait_for(pending, 10)
    assert "error" in response  # the run was stopped, and said so
    # ...to the request, not as a problem in the loader's file for an editor to underline.
    assert daemon.notifications("textDocument/publishDiagnostics", since=mark) == []
    daemon.notify("exit")
    assert await daemon.wait_exit() == 0
    await eventually(lambda: not any(alive(p) for p in pids))
