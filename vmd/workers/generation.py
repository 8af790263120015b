"""One preloader process (a generation) as the daemon sees it: started with the list of
modules to import, asked to fork workers or to check that its modules' files are unchanged,
and reporting the exits of the workers it forked (it is their parent). Which generations to
build and when is `vmd.workers.preload`'s business.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable

from vmd.workers import ipc, spawn
from vmd.workers.piped import PipedProcess

logger = logging.getLogger(__name__)


_ORPHAN_MISSING = 0.5  # s: a worker of a dead preloader not ours by then was waited for by it


class Generation:
    """One preloader process, its fork requests and the workers it forked and runs.
    `on_exit`: the preloader exited on its own; `on_idle`: its last request or worker is done
    (a retired generation closes then, not before: its workers die with it)."""

    def __init__(
        self,
        number: int,
        modules: list[str],
        on_exit: Callable[[Generation], None],
        on_idle: Callable[[Generation], None],
    ) -> None:
        self.number = number
        self._on_exit = on_exit
        self._on_idle = on_idle
        self.modules = modules
        self.covers = frozenset(modules)
        self.loaded: asyncio.Future[ipc.Loaded] = asyncio.get_running_loop().create_future()
        self.proc: asyncio.subprocess.Process | None = None
        self.sock: socket.socket | None = None
        self._replies: dict[int, asyncio.Future[ipc.Forked]] = {}
        self._children: dict[int, asyncio.Future[int]] = {}  # forked: pid -> exit code
        self._unclaimed: dict[int, asyncio.Future[int]] = {}  # the same, for fork() to take
        self._orphans: dict[int, asyncio.Task[None]] = {}  # waited for here: pid -> task
        self._seq = 0
        self.dead = False
        self.closing = False  # we close it: its exit is no news
        self.retiring = False
        self._reader: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Fork requests unanswered and forked workers still running."""
        return len(self._replies) + len(self._children)

    async def start(self, cwd: str | None, roots: list[str]) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *spawn.preloader_command(theirs.fileno()),
                stdin=asyncio.subprocess.PIPE,
                stdout=sys.stderr.fileno(),  # what imports print is the daemon's log
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
                cwd=cwd,
                env=spawn.worker_env(),
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self.sock = ours
        assert self.proc.stdin is not None
        self.proc.stdin.write(ipc.encode(ipc.Preload(roots=roots, modules=self.modules)))
        self.proc.stdin.close()
        self._reader = asyncio.create_task(self._read())

    async def check(self) -> str:
        """Why a worker forked from here earlier is not as good as one forked now ("" if it
        is): the preloader stats its modules' files again, as before every fork."""
        forked = await self._ask(check=True, fds=[])
        return forked if isinstance(forked, str) else forked.refused

    async def _ask(self, *, check: bool, fds: list[int]) -> ipc.Forked | str:
        """Send a Fork request with `fds` (closed here once sent); its answer, or why none."""
        if self.dead or self.sock is None:
            for fd in fds:
                os.close(fd)
            return "the preloader is gone"
        self._seq += 1
        seq = self._seq
        reply: asyncio.Future[ipc.Forked] = asyncio.get_running_loop().create_future()
        self._replies[seq] = reply
        try:
            socket.send_fds(self.sock, [ipc.encode(ipc.Fork(seq=seq, check=check))], fds)
        except OSError as exc:  # full (not reading) or closed: spawn instead
            self._replies.pop(seq, None)
            return f"could not ask the preloader: {exc}"
        finally:
            for fd in fds:
                os.close(fd)  # in flight now: the kernel holds them until the preloader takes them
        try:
            return await reply
        finally:
            self._replies.pop(seq, None)
            self._idle()

    async def fork(self) -> PipedProcess | str:
        """A forked worker, or why there is none."""
        pipes = [os.pipe() for _ in range(3)]  # stdin, stdout, stderr
        ours = [pipes[0][1], pipes[1][0], pipes[2][0]]
        try:
            forked = await self._ask(check=False, fds=[pipes[0][0], pipes[1][1], pipes[2][1]])
        except BaseException:
            for fd in ours:
                os.close(fd)
            raise
        if isinstance(forked, str) or not forked.pid:
            for fd in ours:
                os.close(fd)
            if isinstance(forked, str):
                return forked
            return forked.refused or "the preloader did not fork"
        pid = forked.pid
        process = PipedProcess(
            pid,
            open(ours[0], "wb", buffering=0),  # noqa: SIM115 - the transports own them
            open(ours[1], "rb", buffering=0),  # noqa: SIM115
            open(ours[2], "rb", buffering=0),  # noqa: SIM115
            exit_code=self._unclaimed.pop(pid),
        )
        await process.connect()
        return process

    async def _read(self) -> None:
        assert self.sock is not None
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await loop.sock_recv(self.sock, 1 << 17)
                if not data:
                    break
                msg = ipc.from_preloader_decoder.decode(data)
                if isinstance(msg, ipc.Loaded):
                    if not self.loaded.done():
                        self.loaded.set_result(msg)
                elif isinstance(msg, ipc.Exited):
                    self._exited(msg.pid, msg.code)
                else:
                    if msg.pid:  # before its exit can be reported
                        exit_code: asyncio.Future[int] = loop.create_future()
                        self._children[msg.pid] = self._unclaimed[msg.pid] = exit_code
                    reply = self._replies.get(msg.seq)
                    if reply is not None and not reply.done():
                        reply.set_result(msg)
        except (OSError, ValueError) as exc:  # ValueError: a frame we cannot decode
            if not self.closing:
                logger.warning("vmd: lost the preloader: %s", exc)
        finally:
            self.dead = True
            gone = ipc.Forked(seq=0, refused="the preloader exited")
            for reply in self._replies.values():
                if not reply.done():
                    reply.set_result(gone)
            if not self.loaded.done():
                self.loaded.set_exception(RuntimeError("the preloader exited while importing"))
                self.loaded.exception()
            if not self.closing:  # close() waits for them once the preloader is reaped
                self._orphaned()
                self._on_exit(self)

    def _exited(self, pid: int, code: int) -> None:
        future = self._children.pop(pid, None)
        if future is not None and not future.done():
            future.set_result(code)
        self._idle()

    def _idle(self) -> None:
        if not self.pending:
            self._on_idle(self)

    def _orphaned(self) -> None:
        """The preloader is gone: its workers still running die with it (their death signal)
        and become the daemon's, a child subreaper; wait for each here."""
        for pid in self._children:
            if pid not in self._orphans:
                task = asyncio.ensure_future(self._wait_orphan(pid))
                self._orphans[pid] = task
                task.add_done_callback(functools.partial(self._forget_orphan, pid))

    def _forget_orphan(self, pid: int, _: object) -> None:
        self._orphans.pop(pid, None)

    async def _wait_orphan(self, pid: int) -> None:
        loop = asyncio.get_running_loop()
        missing_since: float | None = None
        delay = 0.002
        while pid in self._children:
            try:
                got, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # not re-parented yet, or waited for by the preloader
                now = loop.time()
                missing_since = missing_since or now
                if now - missing_since > _ORPHAN_MISSING:
                    self._exited(pid, -signal.SIGKILL)
                    return
            else:
                if got:
                    self._exited(pid, os.waitstatus_to_exitcode(status))
                    return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.returncode is None else None

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            spawn.killpg(self.proc.pid)

    async def close(self) -> None:
        """Close the socket (the preloader exits once its workers have: close when none is
        left), kill what is left, reap."""
        self.dead = self.closing = True
        if self._reader is not None:
            self._reader.cancel()  # before the socket it reads goes
            await asyncio.gather(self._reader, return_exceptions=True)
        if self.sock is not None:
            self.sock.close()
        if self.proc is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self.proc.wait()), 1.0)
        except asyncio.TimeoutError:
            pass
        self.kill()
        await self.proc.wait()
        self._orphaned()  # its reports are no longer read
