"""`vmd serve`: process setup, the event loop, and watching the client process.

`python -m vmd serve` starts the first worker (`vmd.workers.spawn.start_early`) before it
imports this; everything here is cheap to import, so the daemon answers `initialize` soon.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from typing import Any

from vmd.rpc import Rpc
from vmd.server import VmdServer
from vmd.workers import reaper
from vmd.workers.spawn import EarlyProcess

log = logging.getLogger("vmd.bootstrap")


def serve(log_level: str = "info") -> int:
    """Run the daemon on stdin/stdout until the client goes away; return the exit code."""
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        stream=sys.stderr,
        format="vmd %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("pygls").setLevel(logging.WARNING)
    # The protocol gets its own copy of fd 1; fd 1 itself now points at stderr so nothing
    # printed by a library (or by mistake) can corrupt the stream.
    out_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        return _run(_serve(0, out_fd))
    except KeyboardInterrupt:
        return 1


async def _serve(in_fd: int, out_fd: int) -> int:
    # Forked workers become our children (vmd.workers.preload); the pool reaps their leftovers.
    reaper.become_subreaper()
    server = VmdServer(watch_parent=watch_parent)
    rpc = server.rpc
    # Its interpreter starts while we read `initialize` and import the rest of the daemon.
    server.early = early = EarlyProcess()
    await rpc.conn.open(in_fd, out_fd)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, rpc.stop, "", 1)

    try:
        await rpc.stopped.wait()
    finally:
        if server.service is not None:
            try:
                await asyncio.wait_for(server.service.close(), 2.0)
            except Exception:
                log.exception("error while stopping workers")
            server.service.kill_workers()
        try:
            await asyncio.wait_for(early.close(), 2.0)
        except Exception:
            log.exception("error while stopping the first worker")
        await rpc.conn.drain()
    return rpc.exit_code


async def watch_parent(pid: int, rpc: Rpc) -> None:
    """Exit when the client process is gone, even if it could not close our stdin."""
    while not rpc.stopped.is_set():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            rpc.stop(f"client process {pid} is gone; exiting")
            return
        except PermissionError:
            pass
        await asyncio.sleep(1.0)


def _run(main: Coroutine[Any, Any, int]) -> int:
    """Run `main` on uvloop where it is installed (not on Windows): each turn of its event loop
    costs less, and a change passes through several on its way to the page. Else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
