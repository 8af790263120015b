"""The asyncio Python client for the vmd daemon (`AsyncClient`); `vmd.client` has the blocking
one and is where both are imported from.

It spawns `python -m vmd serve` and speaks the same protocol as every other client (LSP base
protocol over stdio, JSON-RPC 2.0), so scripts, tests and the CLI exercise exactly what the Vite
adapter and editors do. Transport is kept apart from spawning (`DaemonConnection` only needs a pair
of streams); when the daemon dies, every pending request fails with the reason and later calls
fail fast (esbuild's `afterClose`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import msgspec

from vmd.errors import VmdError
from vmd.jsonrpc import ConnectionClosed, DaemonConnection, ProtocolError, ResponseError, error_from
from vmd.protocol import (
    CHANGED,
    INTERNAL_ERROR,
    INVALIDATE,
    LOAD,
    LOAD_MANY,
    METHOD_NOT_FOUND,
    RELOAD,
    ChangedParams,
    InvalidateParams,
    InvalidateResult,
    LoadManyParams,
    LoadManyResult,
    LoadParams,
    LoadResult,
    ReloadParams,
)

__all__ = ["AsyncChangeStream", "AsyncClient", "ConnectionClosed", "ProtocolError"]

logger = logging.getLogger("vmd.client")

_any_decoder = msgspec.json.Decoder()
_load_result_decoder = msgspec.json.Decoder(LoadResult)
_invalidate_result_decoder = msgspec.json.Decoder(InvalidateResult)
_load_many_result_decoder = msgspec.json.Decoder(LoadManyResult)
_changed_decoder = msgspec.json.Decoder(ChangedParams)

T = TypeVar("T")

# How long close() lets the daemon answer `shutdown` and exit before killing it.
_GRACE_S = 5.0

LogCallback = Callable[[dict[str, Any]], None]
DiagnosticsCallback = Callable[[dict[str, Any]], None]
NotificationCallback = Callable[[str, Any], None]


class AsyncChangeStream:
    """Async iterator over `vmd/changed` notifications (see `AsyncClient.changes`).

    Subscribed when created, not on first iteration, so nothing sent in between is missed;
    ends when the client closes or the daemon exits.
    """

    def __init__(self, owner: AsyncClient) -> None:
        self._owner = owner
        self._queue: asyncio.Queue[ChangedParams | None] = asyncio.Queue()
        owner._subscribers.add(self._queue)
        if owner._conn.closed is not None:
            self._queue.put_nowait(None)

    def __aiter__(self) -> AsyncChangeStream:
        return self

    async def __anext__(self) -> ChangedParams:
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)  # stay exhausted
            raise StopAsyncIteration
        return item

    async def next_within(self, timeout: float | None) -> ChangedParams:
        """The next notification, waiting at most `timeout` seconds (TimeoutError after);
        one that arrives as the time runs out is returned, never dropped."""
        getter = asyncio.ensure_future(self.__anext__())
        await asyncio.wait({getter}, timeout=timeout)
        if not getter.done():
            getter.cancel()
            try:
                return await getter  # it may have got one while being cancelled
            except asyncio.CancelledError:
                raise TimeoutError(f"no change within {timeout} s") from None
        return getter.result()

    async def aclose(self) -> None:
        """Stop receiving notifications."""
        self._owner._subscribers.discard(self._queue)
        self._queue.put_nowait(None)


class AsyncClient:
    """A connection to one vmd daemon that this client started and owns.

    Example:
        >>> async with await AsyncClient.start("/proj") as client:  # doctest: +SKIP
        ...     result = await client.load("/proj/src/users.vmd.py?type=admin")
        ...     print(result.version, result.code)

    Attributes:
        on_log: called with each `window/logMessage` params (`{"type", "message"}`).
        on_diagnostics: called with each `textDocument/publishDiagnostics` params
            (`{"uri", "diagnostics"}`).
        on_notification: called with `(method, params)` for any other notification.
    """

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        *,
        on_log: LogCallback | None = None,
        on_diagnostics: DiagnosticsCallback | None = None,
    ) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self.on_log = on_log
        self.on_diagnostics = on_diagnostics
        self.on_notification: NotificationCallback | None = None
        self.initialize_result: Any = None
        self._subscribers: set[asyncio.Queue[ChangedParams | None]] = set()
        self._conn = DaemonConnection(
            process.stdout, process.stdin, self._notified, self._requested
        )
        self._closing = False
        self._reader = asyncio.get_running_loop().create_task(self._read(), name="vmd.client")

    @classmethod
    async def start(
        cls,
        root: str | os.PathLike[str],
        *,
        mode: str = "serve",
        include: list[str] | None = None,
        timeout_ms: int | None = None,
        python: str = sys.executable,
        env: dict[str, str] | None = None,
        log_level: str | None = "warning",
        on_log: LogCallback | None = None,
        on_diagnostics: DiagnosticsCallback | None = None,
    ) -> AsyncClient:
        """Spawn `python -m vmd serve` for workspace `root` and complete the LSP handshake.

        Args:
            root: the workspace root; loaders outside it are refused.
            mode: "serve" (watch and re-run) or "build" (no watchers).
            include: globs of the loaders the daemon may run (daemon default `**/*.vmd.py`).
            timeout_ms: how long a loader run may take (daemon default 30000).
            python: the interpreter to run the daemon with.
            env: the daemon's whole environment (default: this process's).
            log_level: the daemon's `--log-level` for its stderr, which is this process's
                (default: warnings and errors only; None: the daemon's own default, info).

        Raises:
            ConnectionClosed: the daemon exited before answering `initialize`.
            ProtocolError: the daemon refused `initialize`.
        """
        root_path = Path(root).resolve()
        command = [python, "-m", "vmd", "serve"]
        if log_level is not None:
            command += ["--log-level", log_level]
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
            limit=1 << 20,
            # Keep the terminal's Ctrl-C away from the daemon: its owner shuts it down (and
            # the daemon exits by itself when this process dies).
            start_new_session=True,
        )
        client = cls(process, on_log=on_log, on_diagnostics=on_diagnostics)
        options: dict[str, Any] = {"mode": mode}
        if include is not None:
            options["include"] = include
        if timeout_ms is not None:
            options["timeoutMs"] = timeout_ms
        try:
            client.initialize_result = await client.request(
                "initialize",
                {
                    "processId": os.getpid(),
                    "clientInfo": {"name": "vmd.client"},
                    "rootUri": root_path.as_uri(),
                    "rootPath": str(root_path),
                    "workspaceFolders": [{"uri": root_path.as_uri(), "name": root_path.name}],
                    "capabilities": {},
                    "initializationOptions": options,
                },
            )
            client._conn.notify("initialized", {})
        except BaseException:
            await client._kill()
            raise
        return client

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def load(self, id: str) -> LoadResult:
        """Load module `id` (served from memory when nothing it depends on changed).

        Raises:
            vmd.errors.VmdError: the loader failed (`LoaderError`, `LoaderTimeout`,
                `LoaderCrashed`) or may not run (`Refused`); carries id, file, line, traceback.
        """
        raw = await self._request(LOAD, LoadParams(id=id))
        return _load_result_decoder.decode(raw)

    async def load_many(self, ids: list[str]) -> list[LoadResult | VmdError | ProtocolError]:
        """Load many modules in one request (`vmd/loadMany`), as a build does: one entry per
        id, in order, each the result or the error its own `load` would raise (`VmdError` about
        the module, `ProtocolError` otherwise).

        Example:
            >>> pages = [f"{page}?n={n}" for n in range(9)]
            >>> for out in await client.load_many(pages):  # doctest: +SKIP
            ...     print(out.code if isinstance(out, LoadResult) else f"FAIL {out}")
        """
        raw = await self._request(LOAD_MANY, LoadManyParams(ids=list(ids)))
        outcomes: list[LoadResult | VmdError | ProtocolError] = []
        for at, outcome in enumerate(_load_many_result_decoder.decode(raw).results):
            if outcome.result is not None:
                outcomes.append(outcome.result)
            elif outcome.error is not None:
                err = outcome.error
                outcomes.append(error_from(ResponseError(err.code, err.message, err.data)))
            else:
                outcomes.append(ProtocolError(INTERNAL_ERROR, f"no outcome for {ids[at]}"))
        return outcomes

    async def reload(self, id: str, data: Any = None) -> LoadResult:
        """Re-run module `id` now with `ctx.data = data`."""
        raw = await self._request(RELOAD, ReloadParams(id=id, data=data))
        return _load_result_decoder.decode(raw)

    async def invalidate(self, *, id: str | None = None, path: str | None = None) -> list[str]:
        """Drop cached output of module `id`, or of every module depending on file `path`;
        returns the ids dropped."""
        if (id is None) == (path is None):
            raise TypeError("invalidate() takes exactly one of id= or path=")
        raw = await self._request(INVALIDATE, InvalidateParams(id=id, path=path))
        return _invalidate_result_decoder.decode(raw).ids

    def changes(self) -> AsyncChangeStream:
        """Every `vmd/changed` notification from now on, until the client closes.

        Example:
            >>> async for change in client.changes():  # doctest: +SKIP
            ...     print(change.id, change.version, change.reason)
        """
        return AsyncChangeStream(self)

    async def request(self, method: str, params: Any) -> Any:
        """Send any request; returns the result as plain JSON values."""
        return _any_decoder.decode(await self._request(method, params))

    async def _request(self, method: str, params: Any) -> msgspec.Raw:
        if self._closing:  # not sent after our shutdown, which the daemon would refuse
            raise ConnectionClosed("the vmd client was closed")
        return await self._conn.request(method, params)

    def notify(self, method: str, params: Any = None) -> None:
        """Send any notification."""
        self._conn.notify(method, params)

    @property
    def closed(self) -> bool:
        """Whether the connection is gone (closed, or the daemon exited)."""
        return self._conn.closed is not None

    async def close(self) -> None:
        """Shut the daemon down (`shutdown` + `exit`), wait for it, kill it after a grace period."""
        if self._closing:
            await asyncio.shield(self._reader)
            return
        self._closing = True
        if self._conn.closed is None:
            # Requests still waiting are the caller's, cut short by the close: their answers
            # would blame the loader ("killed", "shutting down").
            self._conn.fail_pending(ConnectionClosed("the vmd client was closed"))
            try:
                await asyncio.wait_for(self._conn.request("shutdown", None), _GRACE_S)
                self._conn.notify("exit")
            except (ConnectionClosed, ProtocolError, asyncio.TimeoutError) as exc:
                logger.debug("vmd.client: shutdown failed: %s", exc)
            self._conn.fail_all(ConnectionClosed("the vmd client was closed"))
        stdin = self.process.stdin
        if stdin is not None:
            stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), _GRACE_S)
        except asyncio.TimeoutError:
            logger.warning("vmd.client: daemon did not exit in %.0f s; killing it", _GRACE_S)
            await self._kill()
        await self._reader

    async def _kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        await self.process.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._reader, _GRACE_S)

    async def _read(self) -> None:
        try:
            await self._conn.read_loop()
        except Exception:
            logger.exception("vmd.client: reading from the daemon failed")
        finally:
            # stdout EOF: the daemon is exiting; its exit code is the reason worth reporting.
            code: int | None
            try:
                code = await asyncio.wait_for(self.process.wait(), _GRACE_S)
            except asyncio.TimeoutError:
                code = None
            if self._closing:
                reason = ConnectionClosed("the vmd client was closed", code)
            elif code is None:
                reason = ConnectionClosed("the vmd daemon closed its output but is still running")
            elif code < 0:
                name = signal.Signals(-code).name if -code in signal.valid_signals() else -code
                reason = ConnectionClosed(f"the vmd daemon was killed by signal {name}", code)
            else:
                reason = ConnectionClosed(f"the vmd daemon exited with code {code}", code)
            self._conn.fail_all(reason)
            for queue in list(self._subscribers):
                queue.put_nowait(None)
            self._subscribers.clear()

    def _notified(self, method: str, params: msgspec.Raw) -> None:
        if method == CHANGED:
            change = _changed_decoder.decode(params)
            for queue in list(self._subscribers):
                queue.put_nowait(change)
        elif method == "window/logMessage":
            if self.on_log is not None:
                self.on_log(_any_decoder.decode(params))
        elif method == "textDocument/publishDiagnostics":
            if self.on_diagnostics is not None:
                self.on_diagnostics(_any_decoder.decode(params))
        elif self.on_notification is not None:
            self.on_notification(method, _any_decoder.decode(params))

    def _requested(self, method: str, params: msgspec.Raw) -> tuple[Any, ResponseError | None]:
        if method in ("window/workDoneProgress/create", "client/registerCapability"):
            return None, None
        if method == "workspace/configuration":
            items = _any_decoder.decode(params)
            count = len(items.get("items", [])) if isinstance(items, dict) else 0
            return [None] * count, None
        return None, ResponseError(METHOD_NOT_FOUND, f"vmd.client does not handle {method}")
