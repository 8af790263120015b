"""The end-to-end harness: a throwaway project and a real `python -m vmd serve` to talk to.

The daemon is driven by `Daemon`, a deliberately small framed JSON-RPC peer over the daemon's
real stdin/stdout pipes, instead of `vmd.client`: these tests pin the wire behaviour (error
codes, raw notifications, server-to-client requests, broken framing) that a higher-level client
would hide, and need initialize params (`capabilities`, `progressDelayMs`, `processId`) that
`AsyncClient.start` does not expose.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}

# Generous upper bounds: a test waits this long for something that normally takes milliseconds.
WAIT = 10.0


class RpcError(Exception):
    """A JSON-RPC error response."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.code: int = error["code"]
        self.message: str = error.get("message", "")
        self.data: Any = error.get("data")
        self.error = error  # the whole error object, as it came


class Project:
    """A temporary workspace root (symlink-free, so ids compare equal to what vmd reports)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, rel: str) -> str:
        return str(self.root / rel)

    def write(self, rel: str, text: str, *, dedent: bool = True) -> str:
        """Write a file (dedented) under the root, creating folders; return its absolute path."""
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text) if dedent else text)
        return str(path)

    def write_atomic(self, rel: str, text: str) -> str:
        """Save like an editor does: write a temporary file, then rename it over the target."""
        path = self.root / rel
        tmp = path.with_name(f".{path.name}.tmp{time.monotonic_ns()}")
        tmp.write_text(text)
        os.replace(tmp, path)
        return str(path)


class Daemon:
    """One `python -m vmd serve` process and a framed JSON-RPC peer talking to it."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        # Every server->client notification and request, in arrival order, as parsed JSON.
        self.messages: list[dict[str, Any]] = []
        # Responses that match no request we sent (e.g. errors with id null).
        self.orphans: list[dict[str, Any]] = []
        self._pending: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self._ids = 0
        self._arrived = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())
        self.eof = asyncio.Event()

    # -- transport ---------------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)

    def send(self, message: Any) -> None:
        body = json.dumps(message).encode()
        self.send_raw(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    async def _read(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            while True:
                header = await stdout.readuntil(b"\r\n\r\n")
                length = None
                for line in header.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                assert length is not None, f"daemon sent a header without length: {header!r}"
                body = await stdout.readexactly(length)
                self._dispatch(json.loads(body))
        except asyncio.IncompleteReadError:
            pass
        finally:
            self.eof.set()
            self._wake()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("the daemon closed its output"))

    def _dispatch(self, msg: dict[str, Any]) -> None:
        assert msg.get("jsonrpc") == "2.0", msg
        if "method" not in msg:
            future = self._pending.pop(msg.get("id"), None)
            if future is None:
                self.orphans.append(msg)
                self._wake()
            elif not future.done():
                future.set_result(msg)
            return
        self.messages.append(msg)
        if "id" in msg:  # a request to us: answer like a minimal, cooperative client
            if msg["method"] in ("window/workDoneProgress/create", "client/registerCapability"):
                self.send({"jsonrpc": "2.0", "id": msg["id"], "result": None})
            else:
                self.send({"jsonrpc": "2.0", "id": msg["id"],
                           "error": {"code": -32601, "message": "not handled by the test"}})
        self._wake()

    def _wake(self) -> None:
        self._arrived.set()
        self._arrived = asyncio.Event()

    # -- requests ----------------------------------------------------------------------------

    def start(self, method: str, params: Any = None, *, omit_params: bool = False
              ) -> tuple[int, asyncio.Future[dict[str, Any]]]:
        """Send a request; its id and the future of its whole response message."""
        self._ids += 1
        msg_id = self._ids
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if not omit_params:
            message["params"] = params
        self.send(message)
        return msg_id, future

    async def exchange(self, method: str, params: Any = None, *, timeout: float = WAIT,
                       omit_params: bool = False) -> dict[str, Any]:
        """Send a request and return the whole response message (result or error)."""
        _, future = self.start(method, params, omit_params=omit_params)
        return await asyncio.wait_for(future, timeout)

    async def call(self, method: str, params: Any = None, *, timeout: float = WAIT) -> Any:
        """Send a request; return its result or raise RpcError."""
        response = await self.exchange(method, params, timeout=timeout)
        if "error" in response:
            raise RpcError(response["error"])
        return response["result"]

    async def load(self, id: str, *, timeout: float = WAIT) -> dict[str, Any]:
        return await self.call("vmd/load", {"id": id}, timeout=timeout)  # type: ignore[no-any-return]

    async def load_error(self, id: str, *, timeout: float = WAIT) -> RpcError:
        """Load `id`, expecting a JSON-RPC error; return it."""
        try:
            result = await self.load(id, timeout=timeout)
        except RpcError as exc:
            return exc
        raise AssertionError(f"expected {id} to fail, got {result}")

    async def reload(self, id: str, data: Any = None) -> dict[str, Any]:
        return await self.call("vmd/reload", {"id": id, "data": data})  # type: ignore[no-any-return]

    async def invalidate(self, **params: str) -> list[str]:
        return (await self.call("vmd/invalidate", params))["ids"]  # type: ignore[no-any-return]

    def notify(self, method: str, params: Any = None) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    # -- waiting on what the daemon sends ----------------------------------------------------

    def mark(self) -> int:
        """A cursor: `wait_for(..., since=mark)` only looks at messages that arrive after it."""
        return len(self.messages)

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], *, since: int = 0,
        timeout: float = WAIT,
    ) -> dict[str, Any]:
        """The first message at or after `since` that satisfies `predicate` (waiting for it)."""
        deadline = time.monotonic() + timeout
        index = since
        while True:
            while index < len(self.messages):
                msg = self.messages[index]
                index += 1
                if predicate(msg):
                    return msg
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.eof.is_set():
                seen = [m.get("method") for m in self.messages[since:]]
                raise AssertionError(f"no matching message within {timeout} s; saw {seen}")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    async def changed(self, id: str, *, since: int = 0, timeout: float = WAIT) -> dict[str, Any]:
        """The params of the next `vmd/changed` for `id` at or after `since`."""
        msg = await self.wait_for(
            lambda m: m["method"] == "vmd/changed" and m["params"]["id"] == id,
            since=since, timeout=timeout,
        )
        return msg["params"]  # type: ignore[no-any-return]

    def notifications(self, method: str, *, since: int = 0) -> list[dict[str, Any]]:
        return [m["params"] for m in self.messages[since:] if m["method"] == method]

    def changes(self, id: str, *, since: int = 0) -> list[dict[str, Any]]:
        """The params of every `vmd/changed` for `id` since `since` (a `Fence`'s are its own)."""
        return [p for p in self.notifications("vmd/changed", since=since) if p["id"] == id]

    async def roundtrip(self) -> None:
        """Ask the daemon something and wait for the answer. It handles what it reads in order
        and writes in order, so once this returns, whatever it sent at once on account of
        earlier messages (a hint, a refused request, what goes with a `vmd/changed`) has
        arrived: the positive signal to wait for before asserting that something did NOT
        happen."""
        await self.call("vmd/invalidate", {"id": "vmd-e2e-roundtrip"})

    # -- processes ---------------------------------------------------------------------------

    def worker_pids(self) -> set[int]:
        """The daemon's loader workers now, spare included: its children but preloaders, and
        the preloaders' children (the workers they forked)."""
        preloaders = self.preloader_pids()
        forked = {w for p in preloaders for w in children(p)}
        return {p for p in children(self.proc.pid) if p not in preloaders} | forked

    def preloader_pids(self) -> set[int]:
        """The daemon's preloader processes now (`vmd.workers.preloader`)."""
        return {p for p in children(self.proc.pid) if is_preloader(p)}

    async def wait_exit(self, timeout: float = WAIT) -> int:
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def shutdown(self) -> int:
        """LSP shutdown + exit; return the exit code."""
        await self.call("shutdown")
        self.notify("exit")
        return await self.wait_exit()

    async def close(self) -> None:
        """Stop the daemon however it can be stopped (the fixture's teardown)."""
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.shutdown(), 5)
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._reader, 5)


class Fence:
    """A loader watching one file of `folder` (relative to the project root): once the daemon
    reports that file changed, its watcher has dealt with whatever happened in that folder
    before (a watch reports a folder's events in order, and one started late re-stats what
    it watches): the positive signal to wait for before asserting the watcher did nothing.

    Put it in a folder the daemon already watches, so that starting it restarts no watch.
    Its own `vmd/changed` notifications name `self.loader`."""

    def __init__(self, daemon: Daemon, project: Project, folder: str) -> None:
        self.daemon = daemon
        self.stamp = project.write(f"{folder}/fence.stamp", "0")
        self.loader = project.write(
            f"{folder}/fence.vmd.py", 'watch = ["fence.stamp"]\n\ndef load(ctx):\n    return ""\n'
        )
        self._count = 0

    async def start(self) -> Fence:
        await self.daemon.load(self.loader)
        return self

    async def passed(self) -> None:
        """Change the fence's file; return once the daemon has reported it, and all before it."""
        mark = self.daemon.mark()
        self._count += 1
        Path(self.stamp).write_text(str(self._count))
        await self.daemon.changed(self.loader, since=mark)
        await self.daemon.roundtrip()
        await self.daemon.load(self.loader)  # fresh again, for the next pass to be reported


def children(pid: int) -> set[int]:
    """Direct children of `pid` (Linux /proc)."""
    out: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return out
    for tid in tasks:
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.update(int(p) for p in f.read().split())
    return out


def descendants(pid: int) -> set[int]:
    """Children of `pid`, theirs, and so on (a preloader's workers are its children)."""
    out, todo = set(), [pid]
    while todo:
        for child in children(todo.pop()):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def is_preloader(pid: int) -> bool:
    """Whether `pid` is a preloader: it names itself so (forked workers take their name back)."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip() == "vmd-preloader"
    except OSError:
        return False


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie whose reaper never comes counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


async def eventually(predicate: Callable[[], Any], timeout: float = WAIT) -> None:
    """Poll `predicate` until it is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")
        await asyncio.sleep(0.02)


def initialize_params(
    root: Path | None,
    *,
    options: dict[str, Any] | None = None,
    capabilities: dict[str, Any] | None = None,
    process_id: int | None = None,
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "processId": os.getpid() if process_id is None else process_id,
        "clientInfo": {"name": "vmd-e2e"},
        "capabilities": capabilities or {},
        "initializationOptions": options or {},
    }
    if root is not None:
        params["rootUri"] = root.as_uri()
        params["workspaceFolders"] = [{"uri": root.as_uri(), "name": root.name}]
    return params


async def spawn_daemon(
    cwd: Path | None = None, argv: list[str] | None = None, env: dict[str, str] | None = None
) -> Daemon:
    """`python -m vmd serve` (or `argv`, a launcher that ends up running it) on framed pipes;
    `env` is added to the daemon's environment."""
    proc = await asyncio.create_subprocess_exec(
        *(argv or [sys.executable, "-m", "vmd", "serve"]),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**ENV, **(env or {})},
        cwd=cwd,
        limit=1 << 24,
        start_new_session=True,
    )
    return Daemon(proc)


StartDaemon = Callable[..., Awaitable[Daemon]]


def exported(result: dict[str, Any]) -> Any:
    """The value a `vmd.json_module(...)` result exports."""
    code = result["code"]
    prefix, suffix = "export default JSON.parse(", ");\n"
    assert code.startswith(prefix) and code.endswith(suffix), code
    return json.loads(json.loads(code[len(prefix) : -len(suffix)]))
