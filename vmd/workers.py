"""Loader execution in worker processes: start, run, time out, replace, stop.

Each loader file gets its own worker process (`python -m vmd.loader`, see `vmd.loader`), kept
while its code is unchanged so a data change does not re-pay the loader's imports, and replaced
when the code changes: a fresh process is the only way to unload Python code and keep memory
flat. A warm spare is always waiting so a code change does not wait for interpreter start-up.
Workers live in their own process group so a timeout kills whatever a loader spawned, too.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import re
import signal
from collections.abc import Callable
from typing import Any

import msgspec

from vmd import ipc, spawn
from vmd.capture import Locality
from vmd.errors import LoaderCrashed, LoaderTimeout

logger = logging.getLogger(__name__)

_FAULT_FRAME = re.compile(r'\s*File "(.+)", line (\d+)')
_STACK_WAIT = 0.15  # how long a timed-out run may take to say where it is stuck
_READY_TIMEOUT = 10.0
_STOP_GRACE = 1.0  # cleanups get this long after Stop before the group is SIGKILLed
_REAP_TIMEOUT = 2.0
_MAX_LINE = 64 * 1024
_PARTIAL_LINE_WAIT = 0.05
_MAX_FAULT_LINES = 200


class _Outcome:
    """How a run ended when the worker did not answer it."""

    def __init__(self, name: str) -> None:
        self.name = name


_DIED = _Outcome("the worker died during the run")
_TIMED_OUT = _Outcome("the run took longer than the timeout")
_REQUEUE = _Outcome("the worker went away before the run reached it: run it elsewhere")


class _Worker:
    """One worker process and what the daemon tracks about it."""

    def __init__(self, proc: spawn.WorkerProcess) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.loader = ""
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[int] = loop.create_future()
        # Runs sent and not yet answered, oldest first. Runs are pipelined: the worker queues
        # them and answers in order, so one loader's many ids (a build) pay no round trip each.
        self.inflight: dict[int, asyncio.Future[ipc.Done | _Outcome]] = {}
        # The run the worker is on (the oldest unanswered) and its timeout: a queued run's
        # clock starts when it reaches the front. One timer per run, no waiting task.
        self.front: int | None = None
        self.clock: asyncio.TimerHandle | None = None
        self.stack: asyncio.Future[ipc.Stack] | None = None
        self.dead = False  # the protocol pipe closed: the process is gone or going
        self.retired = False  # replaced, evicted or killed: takes no new runs
        self.group_gone = False  # never signal the group again (its pid may be reused)
        self.fault: list[str] | None = None  # faulthandler output seen on stderr
        self.tasks: list[asyncio.Task[None]] = []

    @property
    def busy(self) -> bool:
        return bool(self.inflight)

    async def idle(self) -> None:
        """Wait until every run sent so far has been answered (or the worker died)."""
        while self.inflight:
            await asyncio.wait(list(self.inflight.values()))

    @property
    def usable(self) -> bool:
        return not (self.dead or self.retired or self.proc.returncode is not None)

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
        if self.group_gone:
            return
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class WorkerPool:
    """Runs loaders in worker processes, one per loader file, at most `max_workers` at once
    (plus the warm spare). `timeout_ms <= 0` means no timeout.

    Example:
        >>> pool = WorkerPool(roots=["/proj"], mode="serve", timeout_ms=30_000, max_workers=8,
        ...                   on_log=print, on_reload=lambda id, data: None)
        >>> await pool.start()
        >>> done = await pool.run("/proj/users.vmd.py", "/proj/users.vmd.py", {}, [], None)
        >>> done.ok, done.code
    """

    def __init__(
        self,
        *,
        roots: list[str],
        mode: str,
        timeout_ms: int,
        max_workers: int,
        on_log: Callable[[str, str], None],
        on_reload: Callable[[str, Any], None],
    ) -> None:
        self._roots = list(roots)
        self._cwd = roots[0] if roots else os.getcwd()
        self._locality = Locality(roots)
        self._mode: Any = mode
        self._timeout_ms = timeout_ms
        self._max_workers = max(1, max_workers)
        self._on_log = on_log
        self._on_reload = on_reload
        # loader path -> its worker, least recently used first (eviction order).
        self._workers: collections.OrderedDict[str, _Worker] = collections.OrderedDict()
        # Every process not yet reaped (assigned, spare, retiring), for kill_all().
        self._live: dict[int, _Worker] = {}
        self._spare: asyncio.Task[_Worker] | None = None
        self._assign_lock = asyncio.Lock()
        self._assigning: dict[str, asyncio.Future[_Worker]] = {}
        # Background retirements, kept so close() can finish them and nothing is collected early.
        self._background: set[asyncio.Task[None]] = set()
        self._seq = 0
        self._closed = False

    # -- public API ----------------------------------------------------------------------------

    async def start(self, early: spawn.EarlyWorker | None = None) -> None:
        """Start the warm spare worker (adopting `early` if it was started in our folder) and
        wait until it is ready."""
        if self._spare is None:
            self._spare = self._new_spare(early)
        await asyncio.shield(self._spare)

    async def run(
        self,
        loader: str,
        id: str,
        query: dict[str, str],
        events: list[tuple[str, str]],
        data: Any,
    ) -> ipc.Done:
        """Run module `id` of `loader` and return its Done, failed or not.

        Raises:
            LoaderTimeout: the run took longer than `timeout_ms`; its worker was killed.
            LoaderCrashed: the worker process died during the run (or could not start).
        """
        while True:
            worker = await self._worker_for(loader, id)
            if not worker.usable:
                continue  # replaced or died while this run waited for it
            done = await self._run_on(worker, loader, id, query, events, data)
            if done is not None:
                return done
            # Found dead before the run reached it: not this run's fault, try a fresh one.
            if not worker.retired:
                self._forget(worker)
                self._in_background(self._reap(worker))

    async def replace(self, loader: str) -> None:
        """The loader's code changed: retire its worker; the next run gets a fresh one.

        An idle worker is stopped before this returns (its cleanups run first, within a short
        grace), so a new instance's setup does not race the old one's cleanup. A run in flight
        finishes normally and the worker is stopped after it, in the background.
        """
        worker = self._workers.pop(loader, None)
        if worker is None:
            return
        worker.retired = True
        if worker.busy:
            self._in_background(self._retire(worker))
        else:
            await self._retire(worker)

    async def discard(self, loader: str, id: str) -> None:
        """Drop module `id`'s instance (its cleanup runs); the worker stays for other ids."""
        worker = self._workers.get(loader)
        if worker is not None and not worker.retired:
            worker.send(ipc.Discard(id=id))

    async def close(self) -> None:
        """Stop every worker (cleanups get a short grace), then kill what is left and reap."""
        self._closed = True
        spare, self._spare = self._spare, None
        if spare is not None:
            spare.cancel()
            await asyncio.gather(spare, return_exceptions=True)
        self._workers.clear()
        workers = list(self._live.values())
        for worker in workers:
            worker.retired = True
        await asyncio.gather(
            *(self._retire(w, after_run=False) for w in workers), return_exceptions=True
        )
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    def kill_all(self) -> None:
        """SIGKILL every worker's process group now (for `finally` blocks and atexit)."""
        for worker in list(self._live.values()):
            worker.killpg()

    # -- workers ---------------------------------------------------------------------------

    async def _worker_for(self, loader: str, id: str) -> _Worker:
        if self._closed:
            raise LoaderCrashed("vmd is shutting down", id=id, file=loader, line=1)
        worker = self._workers.get(loader)
        if worker is not None and worker.usable:
            self._workers.move_to_end(loader)
            return worker
        # Every run of a loader that has no worker yet waits for the same assignment (a build's
        # hundreds of first runs wake together, not one after another behind a lock).
        assigning = self._assigning.get(loader)
        if assigning is None:
            assigning = self._assigning[loader] = asyncio.ensure_future(self._assign(loader))
            assigning.add_done_callback(lambda f: self._assigned(loader, f))
        try:
            return await asyncio.shield(assigning)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise LoaderCrashed(
                f"could not start a worker process: {exc}", id=id, file=loader, line=1
            ) from exc

    async def _assign(self, loader: str) -> _Worker:
        async with self._assign_lock:  # one spare taken at a time
            worker = self._workers.get(loader)
            if worker is not None and worker.usable:
                return worker
            if worker is not None:
                del self._workers[loader]
            worker = await self._take_spare()
            worker.loader = loader
            worker.send(ipc.Assign(roots=self._roots, loader=loader, mode=self._mode))
            self._workers[loader] = worker
            self._evict()
            return worker

    def _assigned(self, loader: str, future: asyncio.Future[_Worker]) -> None:
        if self._assigning.get(loader) is future:
            del self._assigning[loader]
        if not future.cancelled():
            future.exception()  # retrieved: the waiters that are left report it

    async def _take_spare(self) -> _Worker:
        """Take the warm spare, or start a worker; one retry if it failed.

        Serving, the spare is replaced at once, so a code change never waits for an
        interpreter. A build changes no code and asks for all its loaders at once: a new
        spare would only compete for the CPU with the build, so none is kept."""
        error: BaseException | None = None
        for _ in range(2):
            spare = self._spare
            if spare is None and not self._closed:
                spare = self._new_spare()
            self._spare = self._new_spare() if self._mode == "serve" and not self._closed else None
            if spare is None:
                continue
            try:
                worker = await asyncio.shield(spare)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = exc
                logger.warning("vmd: a worker failed to start: %s", exc)
                continue
            if not worker.dead:
                return worker
        raise RuntimeError(f"no worker process could start: {error}")

    def _new_spare(self, early: spawn.EarlyWorker | None = None) -> asyncio.Task[_Worker]:
        task = asyncio.create_task(self._spawn(early))
        # A spare nobody takes (closing) must not log "exception was never retrieved".
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return task

    def _evict(self) -> None:
        """Over the bound: stop the least recently used idle workers (their cleanups run)."""
        excess = len(self._workers) - self._max_workers
        for loader, worker in list(self._workers.items())[:-1]:
            if excess <= 0:
                break
            if worker.busy:
                continue
            del self._workers[loader]
            worker.retired = True
            self._in_background(self._retire(worker))
            excess -= 1

    async def _spawn(self, early: spawn.EarlyWorker | None = None) -> _Worker:
        proc = await early.take(self._cwd) if early is not None else None
        if early is not None and proc is None:
            self._in_background(early.close())  # started in another folder
        if proc is None:
            proc = await spawn.start_worker(self._cwd)
        worker = _Worker(proc)
        self._live[worker.pid] = worker
        worker.tasks = [
            asyncio.create_task(self._read_frames(worker)),
            asyncio.create_task(self._read_stderr(worker)),
        ]
        try:
            await asyncio.wait_for(asyncio.shield(worker.ready), _READY_TIMEOUT)
        except BaseException:
            worker.retired = True
            await asyncio.shield(self._reap(worker))
            raise
        return worker

    async def _read_frames(self, worker: _Worker) -> None:
        stdout = worker.proc.stdout
        assert stdout is not None
        try:
            while True:
                head = await stdout.readexactly(ipc.HEADER.size)
                body = await stdout.readexactly(ipc.HEADER.unpack(head)[0])
                self._dispatch(worker, ipc.from_worker_decoder.decode(body))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except msgspec.DecodeError:
            logger.exception("vmd: bad frame from the worker for %s; killing it", worker.loader)
            worker.killpg()
        finally:
            worker.dead = True
            if not worker.ready.done():  # _spawn reaps it
                worker.ready.set_exception(RuntimeError("the worker exited during start-up"))
                worker.ready.exception()  # retrieved: nobody may be waiting any more
            elif worker.inflight:
                # The run it was on crashed it; the runs queued behind go to a fresh worker.
                for seq, future in worker.inflight.items():
                    if not future.done():
                        future.set_result(_DIED if seq == worker.front else _REQUEUE)
            elif not worker.retired:
                # Died while idle (a setup thread crashed it, or it was killed): forget it.
                if self._workers.get(worker.loader) is worker:
                    del self._workers[worker.loader]
                worker.retired = True
                self._in_background(self._reap(worker))

    def _dispatch(self, worker: _Worker, msg: ipc.FromWorker) -> None:
        if isinstance(msg, ipc.Done):
            future = worker.inflight.pop(msg.seq, None)
            if future is not None and not future.done():
                future.set_result(msg)
            self._advance(worker)
        elif isinstance(msg, ipc.ReloadRequest):
            try:
                self._on_reload(msg.id, msg.data)
            except Exception:
                logger.exception("vmd: on_reload failed for %s", msg.id)
        elif isinstance(msg, ipc.Stack):
            if worker.stack is not None and not worker.stack.done():
                worker.stack.set_result(msg)
        elif isinstance(msg, ipc.Ready):
            if not worker.ready.done():
                worker.ready.set_result(msg.pid)

    async def _read_stderr(self, worker: _Worker) -> None:
        stderr = worker.proc.stderr
        assert stderr is not None
        buffer = b""
        while True:
            if buffer:
                # Output without a trailing newline (a prompt, a progress bar): show it once
                # the worker has been quiet for a moment rather than holding it forever.
                try:
                    chunk = await asyncio.wait_for(stderr.read(65536), _PARTIAL_LINE_WAIT)
                except asyncio.TimeoutError:
                    self._log(worker, buffer.decode("utf-8", "replace").rstrip("\r"))
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
            for line in lines:
                self._log(worker, line.decode("utf-8", "replace").rstrip("\r"))
        if buffer:
            self._log(worker, buffer.decode("utf-8", "replace").rstrip("\r"))

    def _log(self, worker: _Worker, line: str) -> None:
        if line.startswith("Fatal Python error"):
            worker.fault = []
        if worker.fault is not None and len(worker.fault) < _MAX_FAULT_LINES:
            worker.fault.append(line)
        try:
            self._on_log(worker.loader, line)
        except Exception:
            logger.exception("vmd: on_log failed")

    # -- running ---------------------------------------------------------------------------

    async def _run_on(
        self,
        worker: _Worker,
        loader: str,
        id: str,
        query: dict[str, str],
        events: list[tuple[str, str]],
        data: Any,
    ) -> ipc.Done | None:
        self._seq += 1
        seq = self._seq
        run = ipc.Run(seq=seq, id=id, query=query, events=events, data=data)
        if not worker.send(run):
            return None
        # Runs are pipelined: the worker queues them and answers in order.
        future: asyncio.Future[ipc.Done | _Outcome] = asyncio.get_running_loop().create_future()
        worker.inflight[seq] = future
        self._advance(worker)
        try:
            result = await future
        finally:
            if worker.inflight.pop(seq, None) is not None:
                self._advance(worker)  # cancelled: the runs behind stop waiting for this one
        if result is _REQUEUE:
            return None
        if isinstance(result, _Outcome):
            # Everything queued behind goes to a fresh worker, not to this one's fate.
            self._requeue(worker)
            if result is _TIMED_OUT:
                raise await self._timed_out(worker, loader, id)
            raise await self._crashed(worker, loader, id)
        return result

    def _advance(self, worker: _Worker) -> None:
        """Start the clock of the run the worker is on now (the oldest unanswered)."""
        front = next(iter(worker.inflight), None)
        if front == worker.front:
            return
        if worker.clock is not None:
            worker.clock.cancel()
            worker.clock = None
        worker.front = front
        if front is not None and self._timeout_ms > 0:
            worker.clock = asyncio.get_running_loop().call_later(
                self._timeout_ms / 1000, self._expire, worker, front
            )

    def _expire(self, worker: _Worker, seq: int) -> None:
        future = worker.inflight.get(seq)
        if future is not None and not future.done():
            future.set_result(_TIMED_OUT)

    def _requeue(self, worker: _Worker) -> None:
        for future in worker.inflight.values():
            if not future.done():
                future.set_result(_REQUEUE)
        worker.inflight.clear()
        self._advance(worker)

    async def _timed_out(self, worker: _Worker, loader: str, id: str) -> LoaderTimeout:
        self._forget(worker)
        worker.stack = asyncio.get_running_loop().create_future()
        worker.send(ipc.Dump())
        try:
            stack: ipc.Stack | None = await asyncio.wait_for(worker.stack, _STACK_WAIT)
        except asyncio.TimeoutError:
            stack = None
        worker.stack = None
        await self._reap(worker)
        return LoaderTimeout(
            f"{id} timed out after {self._timeout_ms} ms",
            id=id,
            file=stack.file if stack else loader,
            line=stack.line if stack else 1,
            traceback=stack.traceback if stack else "",
        )

    async def _crashed(self, worker: _Worker, loader: str, id: str) -> LoaderCrashed:
        self._forget(worker)
        await self._reap(worker)  # also drains stderr, so faulthandler's report is complete
        code = worker.proc.returncode
        if code is None:
            how = "closed its pipe"
        elif code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        file, line = loader, 1
        for text in worker.fault or ():
            match = _FAULT_FRAME.match(text)
            if match and self._locality.is_local(match[1]):
                file, line = match[1], int(match[2])
                break
        return LoaderCrashed(
            f"the worker process running {id} {how}",
            id=id,
            file=file,
            line=line,
            traceback="\n".join(worker.fault or ()),
        )

    def _forget(self, worker: _Worker) -> None:
        worker.retired = True
        if self._workers.get(worker.loader) is worker:
            del self._workers[worker.loader]

    # -- stopping --------------------------------------------------------------------------

    async def _retire(self, worker: _Worker, *, after_run: bool = True) -> None:
        """Stop (after the run in flight unless closing) so cleanups run; SIGKILL the group
        after a short grace; reap."""
        try:
            if after_run:
                await worker.idle()
                await self._stop(worker)
            else:
                await self._stop(worker)
        finally:
            await self._reap(worker)

    async def _stop(self, worker: _Worker) -> None:
        worker.send(ipc.Stop())
        try:
            await asyncio.wait_for(asyncio.shield(worker.tasks[0]), _STOP_GRACE)
        except asyncio.TimeoutError:
            logger.warning(
                "vmd: worker %d ignored Stop for %.1f s; killing it", worker.pid, _STOP_GRACE
            )

    async def _reap(self, worker: _Worker) -> None:
        """Kill the process group, wait for the process and its pipes; forget the worker."""
        worker.killpg()
        try:
            await asyncio.wait_for(asyncio.shield(worker.proc.wait()), _REAP_TIMEOUT)
            await asyncio.wait_for(
                asyncio.gather(*worker.tasks, return_exceptions=True), _REAP_TIMEOUT
            )
        except asyncio.TimeoutError:
            # Something outside the group (a daemonised grandchild) still holds its stderr.
            logger.warning("vmd: worker %d left a process holding its output", worker.pid)
            for task in worker.tasks:
                task.cancel()
        finally:
            worker.group_gone = True
            self._live.pop(worker.pid, None)

    def _in_background(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
