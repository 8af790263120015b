"""Python client for the vmd daemon, async (`AsyncClient`) and blocking (`Client`).

It spawns `python -m vmd serve` and speaks the same protocol as every other client, so scripts,
tests and the CLI exercise exactly what the Vite adapter and editors do. `AsyncClient` is
`vmd.async_client`'s; `Client` here drives one from an event loop in a background thread.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from vmd.async_client import (
    AsyncChangeStream,
    AsyncClient,
    DiagnosticsCallback,
    LogCallback,
)
from vmd.errors import VmdError
from vmd.jsonrpc import ConnectionClosed, ProtocolError
from vmd.protocol import ChangedParams, LoadResult

__all__ = [
    "AsyncChangeStream",
    "AsyncClient",
    "ChangeStream",
    "Client",
    "ConnectionClosed",
    "ProtocolError",
]

T = TypeVar("T")


class ChangeStream:
    """Blocking iterator over `vmd/changed` notifications (see `Client.changes`)."""

    def __init__(self, client: Client, changes: AsyncChangeStream) -> None:
        self._client = client
        self._changes = changes

    def __iter__(self) -> Iterator[ChangedParams]:
        return self

    def __next__(self) -> ChangedParams:
        try:
            return self._client._call(self._changes.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    def get(self, timeout: float | None = None) -> ChangedParams:
        """The next notification; raises TimeoutError after `timeout` seconds, StopIteration
        when the stream was closed or the daemon exited, ConnectionClosed once the client was
        closed."""
        try:
            # The timeout is kept on the loop's side: giving up from this thread could drop a
            # notification the loop had just taken for us.
            return self._client._call(self._changes.next_within(timeout))
        except StopAsyncIteration:
            raise StopIteration from None

    def close(self) -> None:
        """Stop receiving notifications."""
        self._client._call(self._changes.aclose())

    def __enter__(self) -> ChangeStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Client:
    """Blocking client: an `AsyncClient` driven by an event loop in a background thread.

    Callbacks (`on_log`, `on_diagnostics`) run on that background thread.

    Example:
        >>> with Client("/proj") as client:  # doctest: +SKIP
        ...     print(client.load("/proj/src/users.vmd.py").code)
    """

    def __init__(
        self,
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
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="vmd.client", daemon=True
        )
        self._thread.start()
        try:
            self._async: AsyncClient = self._call(
                AsyncClient.start(
                    root,
                    mode=mode,
                    include=include,
                    timeout_ms=timeout_ms,
                    python=python,
                    env=env,
                    log_level=log_level,
                    on_log=on_log,
                    on_diagnostics=on_diagnostics,
                )
            )
        except BaseException:
            self._stop_loop()
            raise

    @classmethod
    def start(cls, root: str | os.PathLike[str], **options: Any) -> Client:
        """Same as `Client(root, **options)`, mirroring `AsyncClient.start`."""
        return cls(root, **options)

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop.is_closed():
            coro.close()
            raise ConnectionClosed("the vmd client was closed")
        if threading.current_thread() is self._thread:
            coro.close()  # waiting here would block the very loop that must answer
            raise RuntimeError(
                "vmd: a Client method was called from one of its callbacks (on_log, "
                "on_diagnostics), which run on its event loop; hand the work to another thread"
            )
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    @property
    def on_log(self) -> LogCallback | None:
        return self._async.on_log

    @on_log.setter
    def on_log(self, callback: LogCallback | None) -> None:
        self._async.on_log = callback

    @property
    def on_diagnostics(self) -> DiagnosticsCallback | None:
        return self._async.on_diagnostics

    @on_diagnostics.setter
    def on_diagnostics(self, callback: DiagnosticsCallback | None) -> None:
        self._async.on_diagnostics = callback

    @property
    def closed(self) -> bool:
        """Whether the connection is gone (closed, or the daemon exited)."""
        return self._async.closed

    def load(self, id: str) -> LoadResult:
        """See `AsyncClient.load`."""
        return self._call(self._async.load(id))

    def load_many(self, ids: list[str]) -> list[LoadResult | VmdError | ProtocolError]:
        """See `AsyncClient.load_many`."""
        return self._call(self._async.load_many(ids))

    def reload(self, id: str, data: Any = None) -> LoadResult:
        """See `AsyncClient.reload`."""
        return self._call(self._async.reload(id, data))

    def invalidate(self, *, id: str | None = None, path: str | None = None) -> list[str]:
        """See `AsyncClient.invalidate`."""
        return self._call(self._async.invalidate(id=id, path=path))

    def changes(self) -> ChangeStream:
        """Every `vmd/changed` notification from now on, as a blocking iterator."""

        async def _subscribe() -> AsyncChangeStream:
            return self._async.changes()

        return ChangeStream(self, self._call(_subscribe()))

    def request(self, method: str, params: Any) -> Any:
        """See `AsyncClient.request`."""
        return self._call(self._async.request(method, params))

    def close(self) -> None:
        """Shut the daemon down and stop the background loop."""
        if self._loop.is_closed():
            return
        try:
            self._call(self._async.close())
        finally:
            self._stop_loop()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
