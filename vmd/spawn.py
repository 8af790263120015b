"""Starting a worker process: the command line, environment and process group it gets.

Kept apart from the pool (and light to import) so the daemon can start its first worker the
moment it starts itself, before `initialize` arrives: the worker's interpreter start-up then
overlaps the daemon's own instead of following it on every cold start.
"""

from __future__ import annotations

import asyncio
import os
import signal
import site
import sys

_VMD_PARENT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))


async def start_worker(cwd: str) -> asyncio.subprocess.Process:
    """Start `python -m vmd.loader` in `cwd`, in its own session (so a timeout can kill the
    whole group), with the protocol on stdin/stdout and its logs on stderr."""
    env = dict(os.environ)
    env["VMD_DAEMON_PID"] = str(os.getpid())
    if _VMD_PARENT not in _site_dirs():
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_VMD_PARENT, env.get("PYTHONPATH")) if p)
    # -P (3.11+): do not put the cwd (the project root) first on sys.path, where a
    # project's own `vmd` folder would shadow this package.
    flags = ["-P"] if sys.version_info >= (3, 11) else []
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *flags,
        "-m",
        "vmd.loader",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        cwd=cwd,
        env=env,
    )


class EarlyWorker:
    """A worker process started before the pool exists, handed to the first pool that asks
    for one in the same folder, and stopped by `close` otherwise."""

    def __init__(self, cwd: str) -> None:
        self.cwd = cwd
        self._task: asyncio.Task[asyncio.subprocess.Process] | None = asyncio.ensure_future(
            start_worker(cwd)
        )
        self._task.add_done_callback(lambda t: t.cancelled() or t.exception())
        self._taken = False

    def take(self, cwd: str) -> asyncio.Task[asyncio.subprocess.Process] | None:
        """The process being started, if it was started in `cwd`; None otherwise. Once only."""
        if self._taken or os.path.realpath(self.cwd) != os.path.realpath(cwd):
            return None
        self._taken = True
        return self._task

    async def close(self) -> None:
        """Stop it unless a pool took it. Its start is awaited, never cancelled: asyncio
        cannot abandon a half-started subprocess without waiting for it to exit."""
        task, self._task = self._task, None
        if task is None or self._taken:
            return
        try:
            proc = await asyncio.shield(task)
        except Exception:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        await proc.wait()


def _site_dirs() -> list[str]:
    dirs = list(site.getsitepackages()) if hasattr(site, "getsitepackages") else []
    if site.ENABLE_USER_SITE and site.USER_SITE:
        dirs.append(site.USER_SITE)
    return dirs
