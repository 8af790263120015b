"""The daemon's side of preloading: which modules to preload, the preloader processes
(generations) that have them, and forking a worker from the right one.

A generation is one preloader process (`vmd.workers.preloader`) asked to import a list of
modules. The list grows as loaders are seen to import modules from outside the project (a
loader's top-level imports, read before its first run; every module a run imported, reported
by the worker); when it grows, a new generation is built in the background and replaces the
old one once ready. A loader whose imports the ready generation lacks waits for the generation
being built with them, which has been importing them since the loader was seen, so its first
run is no slower than a spawned worker's. Whenever no generation can fork (none ready, one that
died or refused), `fork` returns None and the pool spawns: correctness never depends on this.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable

from vmd.workers import ipc, spawn
from vmd.workers.piped import PipedProcess

logger = logging.getLogger(__name__)

_DEATHS_ALLOWED = 3  # preloaders that may die within _DEATH_WINDOW before preloading stops
_DEATH_WINDOW = 60.0
_MAX_ATTEMPTS = 3


class _Generation:
    """One preloader process and its fork requests."""

    def __init__(
        self, number: int, modules: list[str], on_exit: Callable[[_Generation], None]
    ) -> None:
        self.number = number
        self._on_exit = on_exit
        self.modules = modules
        self.covers = frozenset(modules)
        self.loaded: asyncio.Future[ipc.Loaded] = asyncio.get_running_loop().create_future()
        self.proc: asyncio.subprocess.Process | None = None
        self.sock: socket.socket | None = None
        self._replies: dict[int, asyncio.Future[ipc.Forked]] = {}
        self._seq = 0
        self.dead = False
        self.closing = False  # we close it: its exit is no news
        self.retiring = False
        self._reader: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return len(self._replies)

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

    async def fork(self) -> PipedProcess | str:
        """A forked worker, or why there is none."""
        if self.dead or self.sock is None:
            return "the preloader is gone"
        self._seq += 1
        seq = self._seq
        pipes = [os.pipe() for _ in range(3)]  # stdin, stdout, stderr
        theirs = [pipes[0][0], pipes[1][1], pipes[2][1]]
        reply: asyncio.Future[ipc.Forked] = asyncio.get_running_loop().create_future()
        self._replies[seq] = reply
        try:
            socket.send_fds(self.sock, [ipc.encode(ipc.Fork(seq=seq))], theirs)
        except OSError as exc:  # full (not reading) or closed: spawn instead
            self._replies.pop(seq, None)
            for read, write in pipes:
                os.close(read)
                os.close(write)
            return f"could not ask the preloader: {exc}"
        for fd in theirs:
            os.close(fd)  # in flight now: the kernel holds them until the preloader takes them
        ours = [pipes[0][1], pipes[1][0], pipes[2][0]]
        try:
            forked = await reply
        except BaseException:
            for fd in ours:
                os.close(fd)
            raise
        finally:
            self._replies.pop(seq, None)
        if not forked.pid:
            for fd in ours:
                os.close(fd)
            return forked.refused or "the preloader did not fork"
        pid = forked.pid
        process = PipedProcess(
            pid,
            open(ours[0], "wb", buffering=0),  # noqa: SIM115 - the transports own them
            open(ours[1], "rb", buffering=0),  # noqa: SIM115
            open(ours[2], "rb", buffering=0),  # noqa: SIM115
            lambda: os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]),
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
                else:
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
            if not self.closing:
                self._on_exit(self)

    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.returncode is None else None

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            spawn.killpg(self.proc.pid)

    async def close(self) -> None:
        """Close the socket (the preloader exits), kill what is left, reap."""
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


class Preloader:
    """The generations of preloaders for one pool: `fork(needs)` forks a worker that has
    `needs` (module names) preloaded when a generation can, else returns None."""

    def __init__(self, *, cwd: str | None, roots: list[str]) -> None:
        self._cwd = cwd
        self._roots = list(roots)
        self._wanted: dict[str, None] = {}  # modules to preload, in the order first seen
        self._excluded: set[str] = set()  # failed or started a thread: never asked again
        self._ready: _Generation | None = None
        self._building: list[_Generation] = []  # oldest first
        self._rebuild = False  # the wanted list grew while a build was under way
        self._numbers = 0
        self._deaths: list[float] = []
        self._old: set[_Generation] = set()  # replaced, finishing their forks
        self._tasks: set[asyncio.Task[None]] = set()
        self.enabled = True

    def learn(self, modules: Iterable[str]) -> None:
        """Modules a run imported from outside the project: a later generation has them."""
        if self._want(modules):
            self._schedule()

    def prepare(self, needs: Iterable[str]) -> list[str]:
        """A loader importing `needs` is about to run: have a generation with them built, if
        none is ready or building. Returns the needs that can be preloaded."""
        needs = [n for n in needs if n not in self._excluded]
        self._want(needs)
        ready = self._ready
        if ready is None or not ready.covers.issuperset(needs):
            if not any(g.covers.issuperset(needs) for g in self._building):
                self._schedule(now=True)
        return needs

    def ready_for(self, needs: Iterable[str]) -> bool:
        """Whether a generation with `needs` can fork now."""
        ready = self._ready
        return (
            ready is not None
            and not ready.dead
            and ready.covers.issuperset(n for n in needs if n not in self._excluded)
        )

    async def fork(self, needs: Iterable[str] = ()) -> PipedProcess | None:
        """A worker forked from a generation that has `needs`, else from the ready one (the
        worker imports the rest itself); None when there is none (the pool spawns).

        When the ready generation lacks `needs`, this waits for one being built with them
        (started now if none is): a spawned worker would import them too, later than a
        generation that started importing them when the first loader needing them was seen."""
        needs = self.prepare(needs)
        for _ in range(_MAX_ATTEMPTS):
            if not self.enabled:
                return None
            generation = await self._generation_for(needs)
            if generation is None:
                return None
            try:
                result = await generation.fork()
            except OSError as exc:  # no pipes left, say
                logger.warning("vmd: could not fork a worker: %s", exc)
                return None
            finally:
                if generation.retiring and not generation.pending:
                    self._close_later(generation)
            if isinstance(result, PipedProcess):
                return result
            logger.info("vmd: preloader %d did not fork: %s", generation.number, result)
            self._lost(generation)
        return None

    def pids(self) -> set[int]:
        """The preloader processes alive now."""
        return {pid for g in self._all() if (pid := g.pid()) is not None}

    def kill_all(self) -> None:
        for generation in self._all():
            generation.kill()

    async def close(self) -> None:
        self.enabled = False
        gens = self._all()
        self._ready, self._building = None, []
        await asyncio.gather(*(g.close() for g in gens), return_exceptions=True)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- generations -------------------------------------------------------------------------

    def _all(self) -> set[_Generation]:
        return {g for g in (self._ready, *self._building, *self._old) if g is not None}

    def _want(self, modules: Iterable[str]) -> bool:
        new = [m for m in modules if m not in self._wanted and m not in self._excluded]
        self._wanted.update(dict.fromkeys(new))
        return bool(new)

    async def _generation_for(self, needs: list[str]) -> _Generation | None:
        ready = self._ready
        if ready is not None and not ready.dead and ready.covers.issuperset(needs):
            return ready
        for building in reversed(self._building):  # the newest that has them
            if building.covers.issuperset(needs):
                try:
                    await asyncio.shield(building.loaded)
                except Exception:
                    pass
                break
        ready = self._ready
        return ready if ready is not None and not ready.dead else None

    def _schedule(self, *, now: bool = False) -> None:
        """Build a generation with every wanted module: now, or after the build under way
        (`now`: a loader waits for these modules)."""
        if not self.enabled:
            return
        if self._building and not now:
            self._rebuild = True
            return
        self._numbers += 1
        generation = _Generation(
            self._numbers, [m for m in self._wanted if m not in self._excluded], self._exited
        )
        self._building.append(generation)
        task = asyncio.create_task(self._build(generation))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _build(self, generation: _Generation) -> None:
        loaded: ipc.Loaded | None = None
        try:
            await generation.start(self._cwd, self._roots)
            loaded = await generation.loaded
        except Exception as exc:
            if self.enabled:
                logger.warning("vmd: a preloader failed to start: %s", exc)
                self._died()
        finally:
            if generation in self._building:
                self._building.remove(generation)
        if loaded is not None:
            generation.covers = (generation.covers - set(loaded.failed)) | set(loaded.base)
            self._excluded.update(loaded.failed, loaded.threaded)
            for name in loaded.threaded:
                logger.info("vmd: not preloading %s: importing it starts a thread", name)
        ready = self._ready
        if loaded is None or loaded.unsafe or not self.enabled:
            self._rebuild = self._rebuild or bool(loaded and loaded.unsafe)
            await generation.close()
        elif ready is not None and ready.number > generation.number:
            await generation.close()  # a newer one was ready first
        else:
            self._ready = generation
            if ready is not None:
                self._retire(ready)
        if self._rebuild and not self._building:
            self._rebuild = False
            self._schedule()

    def _exited(self, generation: _Generation) -> None:
        """A preloader exited on its own (killed, crashed, refused): build another."""
        if self._ready is generation or generation in self._building:
            self._died()
        self._lost(generation)

    def _lost(self, generation: _Generation) -> None:
        if self._ready is generation:
            self._ready = None
            self._schedule()
        if generation not in self._building:
            self._retire(generation)

    def _died(self) -> None:
        now = time.monotonic()
        self._deaths = [t for t in self._deaths if now - t < _DEATH_WINDOW] + [now]
        if len(self._deaths) > _DEATHS_ALLOWED and self.enabled:
            self.enabled = False
            logger.warning(
                "vmd: preloaders keep dying (%d in %.0f s); spawning every worker from now on",
                len(self._deaths), _DEATH_WINDOW,
            )

    def _retire(self, generation: _Generation) -> None:
        if generation.retiring:
            return
        generation.retiring = True
        self._old.add(generation)
        if not generation.pending:
            self._close_later(generation)

    def _close_later(self, generation: _Generation) -> None:
        async def close() -> None:
            await generation.close()
            self._old.discard(generation)

        task = asyncio.create_task(close())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
