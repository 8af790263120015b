"""A worker process the daemon did not start through asyncio (one started before the event
loop, one forked by the preloader), seen through asyncio streams like asyncio's own Process.

The exit of one forked by the preloader is what the preloader, its parent, reports. That of the
daemon's own child is seen through a pidfd (Linux 5.3+), as asyncio's PidfdChildWatcher does,
else by a thread waiting for it, as the threaded watcher does. (A thread per worker cost ~2 ms
of the daemon's time to start, and every scan of the daemon's tasks grew with them.)
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from typing import IO


class PipedProcess:
    """`pid`, its three pipes (ours to close) and either `wait_exit`, a blocking wait for our
    child that returns its exit code (negative: killed by that signal), or `exit_code`, that
    code once another process reported it."""

    def __init__(
        self,
        pid: int,
        stdin: IO[bytes],
        stdout: IO[bytes],
        stderr: IO[bytes],
        wait_exit: Callable[[], int] | None = None,
        *,
        exit_code: asyncio.Future[int] | None = None,
    ) -> None:
        self.pid = pid
        self._pipes = (stdin, stdout, stderr)
        self._wait_exit = wait_exit
        self._exit_code = exit_code
        self.returncode: int | None = None
        self.stdin: PipeWriter | None = None
        self.stdout: asyncio.StreamReader | None = None
        self.stderr: asyncio.StreamReader | None = None
        self._exited: asyncio.Future[int] | None = None

    async def connect(self) -> None:
        """Attach the pipes to the running loop and start waiting for the exit."""
        loop = asyncio.get_running_loop()
        stdin, stdout_pipe, stderr_pipe = self._pipes
        self.stdout = stdout = asyncio.StreamReader(loop=loop)
        self.stderr = stderr = asyncio.StreamReader(loop=loop)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdout), stdout_pipe)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stderr), stderr_pipe)
        transport, _ = await loop.connect_write_pipe(asyncio.BaseProtocol, stdin)
        self.stdin = PipeWriter(transport)
        exited: asyncio.Future[int] = loop.create_future()
        self._exited = exited

        def exit_with(code: int) -> None:
            self.returncode = code
            transport.close()
            if not exited.done():
                exited.set_result(code)

        if self._exit_code is not None:

            def reported(future: asyncio.Future[int]) -> None:
                if not future.cancelled():
                    exit_with(future.result())

            self._exit_code.add_done_callback(reported)
            return
        wait_exit = self._wait_exit
        assert wait_exit is not None
        if self._watch_pidfd(loop, exit_with, wait_exit):
            return

        def wait() -> None:
            code = wait_exit()
            try:
                loop.call_soon_threadsafe(exit_with, code)
            except RuntimeError:  # the daemon's loop is already closed: nobody is waiting
                pass

        threading.Thread(target=wait, name=f"vmd-wait-{self.pid}", daemon=True).start()

    def _watch_pidfd(
        self,
        loop: asyncio.AbstractEventLoop,
        exit_with: Callable[[int], None],
        wait_exit: Callable[[], int],
    ) -> bool:
        """Call `exit_with(code)` from the loop once the process has exited; False where
        pidfds are not to be had (then a thread waits)."""
        try:
            pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # not Linux, an old kernel, or no fds left
            return False

        def exited() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            exit_with(wait_exit())  # readable: it has exited, so this does not block

        try:
            loop.add_reader(pidfd, exited)
        except (OSError, NotImplementedError):
            os.close(pidfd)
            return False
        return True

    async def wait(self) -> int:
        assert self._exited is not None
        return await asyncio.shield(self._exited)


class PipeWriter:
    """The stdin side of a PipedProcess: what the pool uses of a StreamWriter."""

    def __init__(self, transport: asyncio.WriteTransport) -> None:
        self._transport = transport

    def write(self, data: bytes) -> None:
        self._transport.write(data)

    def is_closing(self) -> bool:
        return self._transport.is_closing()
