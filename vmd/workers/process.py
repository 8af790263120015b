"""One worker process as the daemon sees it: its pipes, its queue of pipelined runs and their
timeouts, its log lines, and how it is stopped and reaped.

Which worker runs which loader, the warm spare and eviction are the pool's business
(`vmd.workers.pool`); this module knows one process and nothing of the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import msgspec

from vmd.workers import ipc, spawn

logger = logging.getLogger("vmd.workers")

_MAX_LINE = 64 * 1024
_PARTIAL_LINE_WAIT = 0.05
_MAX_FAULT_LINES = 200


class Outcome:
    """How a run ended when the worker did not answer it."""

    def __init__(self, name: str) -> None:
        self.name = name


DIED = Outcome("the worker died during the run")
TIMED_OUT = Outcome("the run took longer than the timeout")
REQUEUE = Outcome("the worker went away before the run reached it: run it elsewhere")


class WorkerProcess:
    """One worker process and what the daemon tracks about it.

    `on_log(loader, text)` gets what it writes to stderr, in whole lines (those that came
    together at once, joined by newlines: a loader printing 100,000 lines must not cost 100,000
    messages of the daemon's event loop); `on_reload(id, data)` every
    `ctx.reload()`; `on_idle_death(worker)` is called when it dies with no run in flight."""

    def __init__(
        self,
        proc: spawn.WorkerProcess,
        *,
        timeout_ms: int,
        on_log: Callable[[str, str], None],
        on_reload: Callable[[str, Any], None],
        on_idle_death: Callable[[WorkerProcess], None],
    ) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.loader = ""
        self._timeout_ms = timeout_ms
        self._on_log = on_log
        self._on_reload = on_reload
        self._on_idle_death = on_idle_death
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[int] = loop.create_future()
        # Its cleanups ran after Stop (it said so, or it is gone): it exits, holding nothing.
        self.stopped: asyncio.Future[None] = loop.create_future()
        # Runs sent and not yet answered, oldest first. Runs are pipelined: the worker queues
        # them and answers in order, so one loader's many ids (a build) pay no round trip each.
        self.inflight: dict[int, asyncio.Future[ipc.Done | Outcome]] = {}
        self._ids: dict[int, str] = {}  # seq -> the module id it runs
        self._seq = 0
        # The run the worker is on (the oldest unanswered) and its timeout: a queued run's
        # clock starts when it reaches the front. One timer per run, no waiting task.
        self.front: int | None = None
        self._clock: asyncio.TimerHandle | None = None
        self._stack: asyncio.Future[ipc.Stack] | None = None
        self._parts: list[bytes] = []  # the code of a large module, before its Done
        self.dead = False  # the protocol pipe closed: the process is gone or going
        self.retired = False  # replaced, evicted or killed: takes no new runs
        self.group_gone = False  # never signal the group again (its pid may be reused)
        self.fault: list[str] | None = None  # faulthandler output seen on stderr
        self.tasks = [
            asyncio.create_task(self._read_frames()),
            asyncio.create_task(self._read_stderr()),
        ]

    @property
    def busy(self) -> bool:
        return bool(self.inflight)

    def on(self, id: str) -> bool:
        """Whether the run the worker is on now is `id`'s."""
        return self.front is not None and self._ids.get(self.front) == id

    @property
    def used(self) -> bool:
        """Whether a run was ever sent to it."""
        return self._seq > 0

    @property
    def usable(self) -> bool:
        return not (self.dead or self.retired or self.proc.returncode is not None)

    async def idle(self) -> None:
        """Wait until every run sent so far has been answered (or the worker died)."""
        while self.inflight:
            await asyncio.wait(list(self.inflight.values()))

    def send(self, msg: ipc.ToWorker) -> bool:
        """Send `msg`; False when the worker is known to be gone (nothing was sent)."""
        stdin = self.proc.stdin
        if self.dead or stdin is None or stdin.is_closing():
            return False
        data = ipc.frame(msg)
        try:
            stdin.write(data)
        except (ConnectionError, RuntimeError):
            return False
        return True

    def killpg(self) -> None:
        if not self.group_gone:
            spawn.killpg(self.pid)

    # -- runs ------------------------------------------------------------------------------

    async def run(
        self, id: str, query: dict[str, str], events: list[tuple[str, str]], data: Any
    ) -> ipc.Done | Outcome:
        """Queue a run and wait for its answer, or for how it ended without one."""
        self._seq += 1
        seq = self._seq
        if not self.send(ipc.Run(seq=seq, id=id, query=query, events=events, data=data)):
            return REQUEUE
        future: asyncio.Future[ipc.Done | Outcome] = asyncio.get_running_loop().create_future()
        self.inflight[seq] = future
        self._ids[seq] = id
        self._advance()
        try:
            return await future
        finally:
            del self._ids[seq]
            if self.inflight.pop(seq, None) is not None:
                self._advance()  # cancelled: the runs behind stop waiting for this one

    def requeue(self) -> None:
        """The worker is being given up: every run still queued goes to another one."""
        for future in self.inflight.values():
            if not future.done():
                future.set_result(REQUEUE)
        self.inflight.clear()
        self._advance()

    async def stack(self, wait: float) -> ipc.Stack | None:
        """Where the worker's main thread is now (for a run that timed out), if it says soon."""
        self._stack = asyncio.get_running_loop().create_future()
        self.send(ipc.Dump())
        try:
            return await asyncio.wait_for(self._stack, wait)
        except asyncio.TimeoutError:
            return None
        finally:
            self._stack = None

    def _advance(self) -> None:
        """Start the clock of the run the worker is on now (the oldest unanswered)."""
        front = next(iter(self.inflight), None)
        if front == self.front:
            return
        if self._clock is not None:
            self._clock.cancel()
            self._clock = None
        self.front = front
        if front is not None and self._timeout_ms > 0:
            self._clock = asyncio.get_running_loop().call_later(
                self._timeout_ms / 1000, self._expire, front
            )

    def _expire(self, seq: int) -> None:
        future = self.inflight.get(seq)
        if future is not None and not future.done():
            future.set_result(TIMED_OUT)

    # -- stopping --------------------------------------------------------------------------

    async def stop(self, grace: float) -> None:
        """Ask it to run its cleanups and exit; give up waiting after `grace` seconds."""
        busy = bool(self.inflight)  # a run under way reads Stop only when it ends
        self.send(ipc.Stop())
        try:
            await asyncio.wait_for(asyncio.shield(self.stopped), grace)
        except asyncio.TimeoutError:
            if busy:  # expected when stopping mid-run (Ctrl-C on a slow loader, a shutdown)
                logger.info("vmd: worker %d is still running a loader; killing it", self.pid)
            else:  # an idle worker whose cleanups hang
                logger.warning(
                    "vmd: worker %d ignored Stop for %.1f s; killing it", self.pid, grace
                )

    async def reap(self, timeout: float) -> None:
        """Kill the process group, wait for the process and for its pipes to close."""
        self.killpg()
        try:
            await asyncio.wait_for(asyncio.shield(self.proc.wait()), timeout)
            await asyncio.wait_for(asyncio.gather(*self.tasks, return_exceptions=True), timeout)
        except asyncio.TimeoutError:
            # Something outside the group (a daemonised grandchild) still holds its stderr.
            logger.warning("vmd: worker %d left a process holding its output", self.pid)
            for task in self.tasks:
                task.cancel()
        finally:
            self.group_gone = True

    # -- reading -------------------------------------------------------------------------

    async def _read_frames(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            while True:
                head = await stdout.readexactly(ipc.HEADER.size)
                body = await stdout.readexactly(ipc.HEADER.unpack(head)[0])
                self._dispatch(ipc.from_worker_decoder.decode(body))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except msgspec.DecodeError:
            logger.exception("vmd: bad frame from the worker for %s; killing it", self.loader)
            self.killpg()
        finally:
            self.dead = True
            if not self.stopped.done():
                self.stopped.set_result(None)
            if not self.ready.done():  # whoever started it reaps it
                self.ready.set_exception(RuntimeError("the worker exited during start-up"))
                self.ready.exception()  # retrieved: nobody may be waiting any more
            elif self.inflight:
                # The run it was on crashed it; the runs queued behind go to a fresh worker.
                for seq, future in self.inflight.items():
                    if not future.done():
                        future.set_result(DIED if seq == self.front else REQUEUE)
            elif not self.retired:
                self._on_idle_death(self)

    def _dispatch(self, msg: ipc.FromWorker) -> None:
        if isinstance(msg, ipc.Part):
            self._parts.append(msg.data)
        elif isinstance(msg, ipc.Done):
            if msg.large:
                msg.code_json, self._parts = self._parts, []
            future = self.inflight.pop(msg.seq, None)
            if future is not None and not future.done():
                future.set_result(msg)
            self._advance()
        elif isinstance(msg, ipc.ReloadRequest):
            try:
                self._on_reload(msg.id, msg.data)
            except Exception:
                logger.exception("vmd: on_reload failed for %s", msg.id)
        elif isinstance(msg, ipc.Stack):
            if self._stack is not None and not self._stack.done():
                self._stack.set_result(msg)
        elif isinstance(msg, ipc.Ready):
            if not self.ready.done():
                self.ready.set_result(msg.pid)
        elif isinstance(msg, ipc.Stopped):
            if not self.stopped.done():
                self.stopped.set_result(None)

    async def _read_stderr(self) -> None:
        stderr = self.proc.stderr
        assert stderr is not None
        buffer = b""
        while True:
            if buffer:
                # Output without a trailing newline (a prompt, a progress bar): show it once
                # the worker has been quiet for a moment rather than holding it forever.
                try:
                    chunk = await asyncio.wait_for(stderr.read(65536), _PARTIAL_LINE_WAIT)
                except asyncio.TimeoutError:
                    self._log([buffer.decode("utf-8", "replace").rstrip("\r")])
                    buffer = b""
                    continue
            else:
                chunk = await stderr.read(65536)
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            if len(buffer) > _MAX_LINE:
                lines.append(buffer)
                buffer = b""
            if lines:
                text = b"\n".join(lines).decode("utf-8", "replace")
                split = text.split("\n")
                self._log([line.rstrip("\r") for line in split] if "\r" in text else split)
        if buffer:
            self._log([buffer.decode("utf-8", "replace").rstrip("\r")])

    def _log(self, lines: list[str]) -> None:
        text = "\n".join(lines)
        if self.fault is not None or "Fatal Python error" in text:  # faulthandler's report
            for line in lines:
                if line.startswith("Fatal Python error"):
                    self.fault = []
                if self.fault is not None and len(self.fault) < _MAX_FAULT_LINES:
                    self.fault.append(line)
        try:
            self._on_log(self.loader, text)
        except Exception:
            logger.exception("vmd: on_log failed")
