"""The worker's main program (`python -m vmd.workers.main`): one loader file, fresh code.

A worker hosts one loader file, with one instance (Context, setup, cleanup) per module id, and
is thrown away when that code changes: Python cannot unload modules, so a fresh process is the
only way to get fresh code and flat memory. While the loader imports, sets up, watches and loads,
the worker records what it depended on: project-local modules (a `sys.meta_path` finder, which
also compiles them from source so a stale `.pyc` never runs) and files it read (an `open` audit
hook), so the daemon knows what to watch even when the run failed.

Talks to the daemon with `ipc` frames over a duplicate of the original stdout; fd 1 itself
points at stderr before any user code runs, so nothing a loader prints reaches the protocol.
Imports only the stdlib, msgspec and light vmd modules: start-up time is a code change's latency.
"""

from __future__ import annotations

import _thread
import faulthandler
import importlib.machinery
import importlib.util
import os
import posixpath
import queue
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec

from vmd import filestate, globs
from vmd.context import Context, Event
from vmd.workers import ipc, locate, memory, modules
from vmd.workers.capture import Capture, FromSource
from vmd.workers.lifeline import die_with_daemon
from vmd.workers.locate import ContractError

_RESULT_HINT = 'expected a str or a dict with "code" (str) and optional "map" (dict | str | None)'


class _Instance:
    """One module id hosted here: its Context, cleanup and what setup read (a plain class:
    dataclasses costs ~13 ms of every worker's start-up)."""

    __slots__ = ("ctx", "cleanup", "setup_deps")

    def __init__(self, ctx: Context, setup_deps: dict[str, filestate.Sig]) -> None:
        self.ctx = ctx
        self.cleanup: Callable[[], Any] | None = None
        self.setup_deps = setup_deps


class _Host:
    """What this process hosts: the assigned loader file, its instances and the dependencies
    captured for them."""

    def __init__(self, proto_in: int, proto_out: int) -> None:
        self._in = proto_in
        self._out = proto_out
        self._write_lock = threading.Lock()
        self._queue: queue.SimpleQueue[ipc.ToWorker] = queue.SimpleQueue()
        self._main_ident = threading.get_ident()
        self._loop: Any = None  # asyncio loop, created on first async use
        self._loop_ident: int | None = None
        self.loader = ""
        self.folder = ""
        self.mode: Any = "serve"
        self.memory_limit_mb = 0
        self._module: ModuleType | None = None
        self._imports = 0
        self._instances: dict[str, _Instance] = {}
        # What the code running here depends on (imports, files read and written).
        self.capture = Capture()
        self._import_deps: dict[str, filestate.Sig] = {}
        self._seen = set(sys.modules)  # reported to the daemon already (or the worker's own)

    # -- transport ------------------------------------------------------------------------

    def send(self, msg: ipc.FromWorker) -> None:
        self._write(ipc.frame(msg))

    def _write(self, data: bytes) -> None:
        with self._write_lock:
            view = memoryview(data)
            while view:
                view = view[os.write(self._out, view) :]

    def read_commands(self) -> None:
        """Reader thread: answers Dump at once (the main thread may be stuck), queues the rest;
        the daemon going away (EOF) ends the process."""
        code = 0
        try:
            while True:
                head = ipc.read_exact(self._in, ipc.HEADER.size)
                size = None if head is None else ipc.HEADER.unpack(head)[0]
                body = None if size is None else ipc.read_exact(self._in, size)
                if body is None:
                    break
                msg = ipc.to_worker_decoder.decode(body)
                if isinstance(msg, ipc.Dump):
                    self.send(self._stack())
                else:
                    self._queue.put(msg)
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 70
        flush()
        os._exit(code)

    def serve(self) -> None:
        """Main thread: handle commands one at a time, forever."""
        while True:
            msg = self._queue.get()
            if isinstance(msg, ipc.Run):
                done = self._run(msg)
                for payload in ipc.answer(done, self.loader, lambda: self._line_of("load")):
                    self._write(payload)
            elif isinstance(msg, ipc.Assign):
                try:
                    self._assign(msg)
                except Exception:  # e.g. a root that vanished: runs will report the rest
                    import traceback

                    traceback.print_exc()
            elif isinstance(msg, ipc.Forget):
                for id in msg.ids:
                    self._discard(id)
            elif isinstance(msg, ipc.Stop):
                for id in list(self._instances):
                    self._discard(id)
                flush()
                self.send(ipc.Stopped())  # its room is free before the process is torn down
                os._exit(0)

    # -- assignment, locality, capture ----------------------------------------------------

    def _assign(self, msg: ipc.Assign) -> None:
        self.loader = os.path.abspath(msg.loader)
        self.folder = os.path.dirname(self.loader)
        self.mode = msg.mode
        self.memory_limit_mb = msg.memory_limit_mb
        memory.apply(msg.memory_limit_mb)
        self.capture.configure(msg.roots)
        front = list(dict.fromkeys([self.folder, *(os.path.abspath(r) for r in msg.roots)]))
        sys.path[:] = front + [p for p in sys.path if p not in front]
        if msg.roots:
            os.chdir(msg.roots[0])
        modules.unshadow(front)
        self.capture.install()

    # -- running ----------------------------------------------------------------------------

    def _run(self, msg: ipc.Run) -> ipc.Done:
        self.capture.begin_run()
        run_deps: dict[str, filestate.Sig] = {}
        setup_deps: dict[str, filestate.Sig] = {}
        done = ipc.Done(seq=msg.seq, ok=False)
        try:
            module = self._import()
            instance = self._instances.get(msg.id)
            if instance is None:
                instance = self._setup(module, msg, setup_deps)
            setup_deps = instance.setup_deps
            ctx = instance.ctx
            ctx.query = dict(msg.query)
            ctx.events = [Event(type, path) for type, path in msg.events]  # type: ignore[arg-type]
            ctx.data = msg.data
            self.capture.target = run_deps
            self._watch(module, ctx, done)
            load = getattr(module, "load", None)
            if not callable(load):
                raise ContractError(f"{self.loader} defines no load(ctx) function", 1)
            done.code, done.map = self._check_result(self._call(load, ctx))
            done.ok = True
        except BaseException as exc:
            self.capture.target = None
            if isinstance(exc, MemoryError) and self.memory_limit_mb > 0:
                done.out_of_memory = True  # the daemon replaces this process after the run
                done.error = memory.error_info(exc, self._error_info, self.loader,
                                               self.memory_limit_mb)
            else:
                done.error = self._error_info(exc)
        finally:
            self.capture.target = None
            done.watched = self.capture.own_effects(done.watched, done.globs)
            flush()
        done.code_deps = dict(self.capture.code_deps)
        if len(sys.modules) != len(self._seen):
            done.modules = modules.new_modules(self._seen, self.capture.is_local)
        written = self.capture.written

        def inputs(deps: dict[str, filestate.Sig]) -> dict[str, filestate.Sig]:
            return {
                p: s
                for p, s in deps.items()
                if p not in self.capture.code_deps and p not in done.watched and p not in written
            }

        # Read at import or in setup: module state may be built from them, so a change needs a
        # fresh process, like a code change. Read by watch/load: a re-run is enough.
        done.instance_deps = inputs({**self._import_deps, **setup_deps})
        done.data_deps = {p: s for p, s in inputs(run_deps).items() if p not in done.instance_deps}
        return done

    def _import(self) -> ModuleType:
        if self._module is not None:
            return self._module
        importlib.invalidate_caches()
        self._imports += 1
        name = f"__vmd_loader_{self._imports}__"
        loader = FromSource(name, self.loader)
        spec = importlib.util.spec_from_file_location(name, self.loader, loader=loader)
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        self.capture.code_deps[self.loader] = filestate.signature(self.loader)
        self._import_deps = {}
        sys.modules[name] = module
        self.capture.target = self._import_deps
        try:
            loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        finally:
            self.capture.target = None
        self._module = module
        return module

    def _setup(self, module: ModuleType, msg: ipc.Run, deps: dict[str, filestate.Sig]) -> _Instance:
        id = msg.id
        ctx = Context(
            id=id,
            path=Path(self.loader),
            query=dict(msg.query),
            mode=self.mode,
            _reload=lambda data: self._reload(id, data),
        )
        instance = _Instance(ctx=ctx, setup_deps=deps)
        setup = getattr(module, "setup", None)
        if setup is not None:
            if not callable(setup):
                raise ContractError("setup must be a function of ctx", self._line_of("setup"))
            self.capture.target = deps
            try:
                cleanup = self._call(setup, ctx)
            finally:
                self.capture.target = None
            instance.cleanup = cleanup if callable(cleanup) else None
        self._instances[id] = instance
        return instance

    def _watch(self, module: ModuleType, ctx: Context, done: ipc.Done) -> None:
        watch = getattr(module, "watch", None)
        if watch is None:
            patterns: Any = []
        elif callable(watch):
            patterns = self._call(watch, ctx)
        else:
            patterns = watch
        if not isinstance(patterns, (list, tuple)) or not all(isinstance(p, str) for p in patterns):
            got = type(patterns).__name__
            raise ContractError(
                f"watch must be a list of glob strings or a function of ctx returning one,"
                f" got {got}",
                self._line_of("watch"),
            )
        done.globs = [globs.absolute(p, self.folder) for p in patterns]
        files, walked = filestate.expand(done.globs)
        done.watched = {f: filestate.signature(f) for f in files}
        done.watched.update(walked)
        done.watched_files = files
        ctx.watched_files = relative(files, self.folder)

    def _check_result(self, value: Any) -> tuple[str, Any]:
        # str.__str__ turns a str subclass (markupsafe.Markup, say) into a plain str.
        if isinstance(value, str):
            return str.__str__(value), None
        if isinstance(value, dict) and isinstance(value.get("code"), str):
            map = value.get("map")
            if isinstance(map, str):
                map = str.__str__(map)
            if map is None or isinstance(map, (dict, str)):
                return str.__str__(value["code"]), map
            got = f'a dict whose "map" is {type(map).__name__}'
        elif isinstance(value, dict):
            got = f'a dict whose "code" is {type(value.get("code")).__name__}'
        else:
            got = type(value).__name__
        raise ContractError(f"load() returned {got}; {_RESULT_HINT}", self._line_of("load"))

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        value = fn(*args)
        if isinstance(value, Awaitable):
            value = self._await(value)
        return value

    def _await(self, awaitable: Awaitable[Any]) -> Any:
        # One persistent loop in a background thread, so tasks that setup starts keep running
        # between runs.
        import asyncio

        if self._loop is None:
            loop = asyncio.new_event_loop()
            started = threading.Event()

            def run() -> None:
                self._loop_ident = threading.get_ident()
                started.set()
                loop.run_forever()

            threading.Thread(target=run, name="vmd-asyncio", daemon=True).start()
            started.wait()
            self._loop = loop

        async def wait() -> Any:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(wait(), self._loop).result()

    def _reload(self, id: str, data: Any) -> None:
        try:
            payload = ipc.frame(ipc.ReloadRequest(id=id, data=data))
        except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
            raise TypeError(
                f"ctx.reload(data): data must be JSON-like (dict, list, str, number, bool,"
                f" None): {exc}"
            ) from exc
        self._write(payload)

    def _discard(self, id: str) -> None:
        instance = self._instances.pop(id, None)
        if instance is None or instance.cleanup is None:
            return
        try:
            self._call(instance.cleanup)
        except BaseException:
            import traceback

            print(f"vmd: cleanup of {id} raised:", file=sys.stderr)
            traceback.print_exc()
        flush()

    # -- locating errors ---------------------------------------------------------------------

    def _line_of(self, name: str) -> int:
        return locate.line_of(self._module, self.loader, name)

    def _is_local_file(self, filename: str) -> bool:
        return not filename.startswith("<") and self.capture.is_local(os.path.abspath(filename))

    def _error_info(self, exc: BaseException) -> ipc.ErrorInfo:
        return locate.error_info(exc, self.loader, self._is_local_file)

    def _stack(self) -> ipc.Stack:
        """Where the loader is now, for a timeout's error (see `locate.stack`)."""
        return locate.stack(self.loader, self._is_local_file, [self._main_ident, self._loop_ident])


def flush() -> None:
    """Flush every standard stream (before os._exit, which skips it)."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass


def relative(files: list[str], folder: str) -> list[str]:
    """`files` (absolute, sorted) relative to `folder`, sorted: for `ctx.watched_files`. When
    all are inside it (the usual case), without posixpath.relpath (~3 µs a file)."""
    prefix = folder.rstrip("/") + "/"
    if all(f.startswith(prefix) for f in files):
        return [f[len(prefix) :] for f in files]
    return sorted(posixpath.relpath(f, folder) for f in files)


def main(parent: int | None = None) -> None:
    """Entry point of a worker process (`parent`: the preloader that forked it, if one did)."""
    proto_out = os.dup(1)  # dup'd fds are non-inheritable: children never hold the protocol
    proto_in = os.dup(0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)  # a loader reading stdin must not eat protocol frames
    os.close(null)
    os.dup2(2, 1)
    sys.stdout = open(  # noqa: SIM115 - lives as long as the process
        1, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False
    )
    faulthandler.enable()
    die_with_daemon(parent)
    if sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]
    sys.dont_write_bytecode = True
    host = _Host(proto_in, proto_out)
    host.send(ipc.Ready(pid=os.getpid()))
    # A bare thread: threading.Thread's start-up handshake cost a forked worker ~0.3 ms.
    _thread.start_new_thread(host.read_commands, ())
    host.serve()


if __name__ == "__main__":
    main()
