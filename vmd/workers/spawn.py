"""Starting a worker process: the command line, environment and process group it gets.

Kept apart from the pool, and cheap to import (no asyncio at import time), because the daemon
starts its first worker before anything else: `python -m vmd serve` calls `start_early()` ahead
of its own imports, so the worker's interpreter start-up overlaps the daemon's instead of
following it, which is most of a cold start's latency (every `vite build` is one).
"""

from __future__ import annotations

import os
import signal
import site
import subprocess
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import asyncio
    from typing import Protocol

    class _Writer(Protocol):
        def write(self, data: bytes) -> None: ...
        def is_closing(self) -> bool: ...

    class WorkerProcess(Protocol):
        """What the pool uses of a worker process (asyncio's Process has it)."""

        @property
        def pid(self) -> int: ...
        @property
        def returncode(self) -> int | None: ...
        @property
        def stdin(self) -> _Writer | None: ...
        @property
        def stdout(self) -> asyncio.StreamReader | None: ...
        @property
        def stderr(self) -> asyncio.StreamReader | None: ...
        async def wait(self) -> int: ...


_VMD_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
_early: tuple[subprocess.Popen[bytes], str] | None = None


def worker_command() -> list[str]:
    # -P (3.11+): do not put the cwd (the project root) first on sys.path, where a
    # project's own `vmd` folder would shadow this package.
    flags = ["-P"] if sys.version_info >= (3, 11) else []
    return [sys.executable, *flags, "-m", "vmd.workers.main"]


def preloader_command(fd: int) -> list[str]:
    """The preloader (`vmd.workers.preloader`), talking to the daemon on socket `fd`."""
    return [*worker_command()[:-1], "vmd.workers.preloader", str(fd)]


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env["VMD_DAEMON_PID"] = str(os.getpid())
    if _VMD_PARENT not in _site_dirs():
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_VMD_PARENT, env.get("PYTHONPATH")) if p)
    return env


def start_early() -> None:
    """Start a worker in the current folder now, for the daemon's pool to adopt later.

    Never fails: without it (no current folder, no processes left) the pool starts one later,
    and says why if that fails too."""
    global _early
    if _early is None:
        try:
            cwd = os.getcwd()
            _early = (_popen(cwd), cwd)
        except OSError:
            pass


async def start_worker(cwd: str | None) -> asyncio.subprocess.Process:
    """Start `python -m vmd.workers.main` in `cwd` (None: ours), in its own session (so a timeout
    can kill the whole group), with the protocol on stdin/stdout and its logs on stderr."""
    import asyncio

    return await asyncio.create_subprocess_exec(
        *worker_command(),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        cwd=cwd,
        env=worker_env(),
    )


def _popen(cwd: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        worker_command(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        cwd=cwd,
        env=worker_env(),
    )


class EarlyProcess:
    """The daemon's first worker process: the one `start_early()` started, or one started now.
    Handed to the first pool that asks for a worker in the same folder; `close` stops it
    otherwise."""

    def __init__(self) -> None:
        import asyncio

        global _early
        early, _early = _early, None
        self._popen: subprocess.Popen[bytes] | None = None
        self._task: asyncio.Task[WorkerProcess] | None = None
        self.cwd = ""
        self._taken = False
        if early is not None:
            self._popen, self.cwd = early
        else:
            try:
                self.cwd = os.getcwd()
            except OSError:  # no current folder: the pool starts a worker in the root later
                return
            self._task = asyncio.ensure_future(start_worker(self.cwd))
            self._task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def take(self, cwd: str | None) -> WorkerProcess | None:
        """The process, if it was started in `cwd` (None: anywhere); None otherwise. Once only."""
        if self._taken or not self.cwd:
            return None
        if cwd is not None and os.path.realpath(self.cwd) != os.path.realpath(cwd):
            return None
        self._taken = True
        if self._popen is not None:
            from vmd.workers.piped import PipedProcess

            popen = self._popen
            assert popen.stdin and popen.stdout and popen.stderr
            adopted = PipedProcess(popen.pid, popen.stdin, popen.stdout, popen.stderr, popen.wait)
            await adopted.connect()
            return adopted
        assert self._task is not None
        return await self._task

    async def close(self) -> None:
        """Stop it unless a pool took it. An asyncio start is awaited, never cancelled:
        asyncio cannot abandon a half-started subprocess without waiting for it to exit."""
        import asyncio

        if self._taken:
            return
        self._taken = True
        if self._popen is not None:
            killpg(self._popen.pid)
            await asyncio.to_thread(self._popen.wait)
            for pipe in (self._popen.stdin, self._popen.stdout, self._popen.stderr):
                if pipe is not None:
                    pipe.close()
            return
        if self._task is None:
            return
        try:
            proc = await self._task
        except Exception:
            return
        killpg(proc.pid)
        await proc.wait()


def killpg(pid: int) -> None:
    """SIGKILL a worker's whole process group (what its loader spawned too), if still there."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _site_dirs() -> list[str]:
    dirs = list(site.getsitepackages()) if hasattr(site, "getsitepackages") else []
    if site.ENABLE_USER_SITE and site.USER_SITE:
        dirs.append(site.USER_SITE)
    return dirs
