"""`$/cancelRequest`: a waiting vmd/* request is answered RequestCancelled (-32800), and the run
only it waited for is stopped; a run another load still waits for goes on."""

from __future__ import annotations

import asyncio
from pathlib import Path

from harness import WAIT, Daemon, Project, alive, eventually

REQUEST_CANCELLED = -32800

# Says it started (with its pid), then holds until the test creates `go`.
HELD = """\
import os, pathlib, time

HERE = pathlib.Path(__file__).parent

def load(ctx):
    (HERE / (pathlib.Path(__file__).name + ".started")).write_text(str(os.getpid()))
    while not (HERE / "go").exists():
        time.sleep(0.02)
    return f"export default {os.getpid()};"
"""


async def started(loader: str) -> int:
    """The pid of the worker once `loader`'s run has started."""
    marker = Path(loader + ".started")
    await eventually(marker.exists)
    await eventually(lambda: marker.read_text() != "")
    return int(marker.read_text())


def cancel(daemon: Daemon, msg_id: object) -> None:
    daemon.notify("$/cancelRequest", {"id": msg_id})


async def test_a_cancelled_load_is_answered_request_cancelled_and_its_run_is_stopped(
    project: Project, daemon: Daemon
) -> None:
    loader = project.write("src/held.vmd.py", HELD)
    msg_id, answer = daemon.start("vmd/load", {"id": loader})
    pid = await started(loader)
    cancel(daemon, msg_id)
    response = await asyncio.wait_for(answer, WAIT)
    assert response["error"]["code"] == REQUEST_CANCELLED
    # Nobody else waited: the loader is stopped mid-run, not left holding its worker.
    await eventually(lambda: not alive(pid))
    # The module was never produced: the next load runs it (in a fresh worker).
    Path(loader + ".started").unlink()
    Path(project.path("src/go")).write_text("")
    result = await daemon.load(loader)
    assert result["code"] != f"export default {pid};"
    assert result["version"] == 1


async def test_cancelling_one_of_two_loads_of_a_module_lets_the_run_finish_for_the_other(
    project: Project, daemon: Daemon
) -> None:
    loader = project.write("src/held.vmd.py", HELD)
    first, cancelled = daemon.start("vmd/load", {"id": loader})
    _, other = daemon.start("vmd/load", {"id": loader})
    pid = await started(loader)
    cancel(daemon, first)
    assert (await asyncio.wait_for(cancelled, WAIT))["error"]["code"] == REQUEST_CANCELLED
    await daemon.roundtrip()
    assert alive(pid)
    Path(project.path("src/go")).write_text("")
    response = await asyncio.wait_for(other, WAIT)
    assert response["result"]["code"] == f"export default {pid};"  # the same run, not a new one


async def test_a_cancelled_load_many_stops_every_run_it_waited_for(
    project: Project, daemon: Daemon
) -> None:
    loaders = [project.write(f"src/held{n}.vmd.py", HELD) for n in range(2)]
    msg_id, answer = daemon.start("vmd/loadMany", {"ids": loaders})
    pids = [await started(loader) for loader in loaders]
    cancel(daemon, msg_id)
    assert (await asyncio.wait_for(answer, WAIT))["error"]["code"] == REQUEST_CANCELLED
    await eventually(lambda: not any(alive(pid) for pid in pids))


async def test_cancelling_an_answered_unknown_or_malformed_request_changes_nothing(
    project: Project, daemon: Daemon
) -> None:
    loader = project.write("src/ok.vmd.py", "def load(ctx):\n    return 'export default 1;'\n")
    msg_id, answer = daemon.start("vmd/load", {"id": loader})
    assert (await asyncio.wait_for(answer, WAIT))["result"]["code"] == "export default 1;"
    cancel(daemon, msg_id)
    cancel(daemon, "never-sent")
    daemon.notify("$/cancelRequest", {"id": [1]})
    daemon.notify("$/cancelRequest")
    await daemon.roundtrip()
    assert daemon.orphans == []  # LSP: a cancel gets no answer of its own
    assert (await daemon.load(loader))["version"] == 1  # still cached, still served
