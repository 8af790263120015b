"""JSON-RPC 2.0 over LSP-framed streams, the client side: requests, responses, notifications.

Kept apart from spawning (`vmd.client`) so the transport only needs a pair of streams; framing
is `vmd.transport`'s, the same the daemon parses with. When the stream ends every pending
request fails with the reason and later calls fail fast (esbuild's `afterClose`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Any

import msgspec

from vmd import errors
from vmd.protocol import LoaderErrorData
from vmd.transport import Framer, frame

logger = logging.getLogger("vmd.client")


class ProtocolError(Exception):
    """A JSON-RPC error response that is not about one module (bad params, unknown method...)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} (JSON-RPC error {code})")
        self.code = code
        self.message = message
        self.data = data


class ConnectionClosed(Exception):
    """The daemon is gone (it exited, or the client was closed); `reason` says which."""

    def __init__(self, reason: str, returncode: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.returncode = returncode


class ResponseError(msgspec.Struct):
    """A JSON-RPC error object, as sent and as received."""

    code: int
    message: str
    data: Any = None


class _Envelope(msgspec.Struct, omit_defaults=True):
    """Any JSON-RPC message; `params` / `result` stay raw until we know their type."""

    jsonrpc: str = "2.0"
    id: int | str | None = None
    method: str | None = None
    params: msgspec.Raw = msgspec.Raw(b"null")
    result: msgspec.Raw = msgspec.Raw(b"null")
    error: ResponseError | None = None


_encoder = msgspec.json.Encoder()
_envelope_decoder = msgspec.json.Decoder(_Envelope)


class DaemonConnection:
    """A client's end of a daemon: JSON-RPC over one pair of LSP-framed streams. (The daemon's
    end of its client is `transport.ClientConnection`.)"""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_notification: Callable[[str, msgspec.Raw], None],
        on_request: Callable[[str, msgspec.Raw], tuple[Any, ResponseError | None]],
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._on_notification = on_notification
        self._on_request = on_request
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[msgspec.Raw]] = {}
        self._abandoned: set[int] = set()  # requests given up on (cancelled): answers expected
        self.closed: ConnectionClosed | None = None

    async def read_loop(self) -> None:
        """Dispatch incoming messages until the stream ends; returns on EOF."""
        framer = Framer()
        while True:
            data = await self._reader.read(1 << 16)
            if not data:
                return
            bodies, problems = framer.feed(data)
            for problem in problems:
                logger.error("vmd.client: bad framing from the daemon: %s", problem)
            for body in bodies:
                try:
                    self._dispatch(_envelope_decoder.decode(body))
                except msgspec.DecodeError:
                    logger.error("vmd.client: undecodable message from the daemon: %r", body[:200])

    def _dispatch(self, msg: _Envelope) -> None:
        if msg.method is None:
            future = self._pending.pop(msg.id, None) if isinstance(msg.id, int) else None
            if future is None and isinstance(msg.id, int) and msg.id in self._abandoned:
                self._abandoned.discard(msg.id)
            elif future is None:
                logger.warning("vmd.client: response to an unknown request id %r", msg.id)
            elif not future.done():
                if msg.error is not None:
                    future.set_exception(error_from(msg.error))
                else:
                    future.set_result(msg.result)
        elif msg.id is None:
            try:
                self._on_notification(msg.method, msg.params)
            except Exception:
                logger.exception("vmd.client: handling %s failed", msg.method)
        else:
            result, error = self._on_request(msg.method, msg.params)
            reply: dict[str, Any] = {"jsonrpc": "2.0", "id": msg.id}
            if error is None:
                reply["result"] = result
            else:
                reply["error"] = msgspec.structs.asdict(error)
            self._write(reply)

    async def request(self, method: str, params: Any) -> msgspec.Raw:
        if self.closed is not None:
            raise self.closed
        id = next(self._ids)
        future: asyncio.Future[msgspec.Raw] = asyncio.get_running_loop().create_future()
        self._pending[id] = future
        try:
            message: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
            if params is not None:
                message["params"] = params
            self._write(message)
            return await future
        finally:
            if self._pending.pop(id, None) is not None:  # no answer came: cancelled
                self._abandoned.add(id)  # its answer may still come; it is not unexpected
                if self.closed is None:  # the daemon stops the run nobody else waits for
                    self._write({"jsonrpc": "2.0", "method": "$/cancelRequest",
                                 "params": {"id": id}})

    def notify(self, method: str, params: Any = None) -> None:
        if self.closed is not None:
            raise self.closed
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self._write(message)

    def _write(self, message: dict[str, Any]) -> None:
        # The transport buffers; a dead daemon shows up as EOF on the read side, which is
        # where the reason (its exit code) is known, so write errors are not raised here.
        try:
            self._writer.write(frame(_encoder.encode(message)))
        except (ConnectionError, RuntimeError) as exc:
            logger.debug("vmd.client: write failed: %s", exc)

    def fail_all(self, reason: ConnectionClosed) -> None:
        """Fail every pending request with `reason`; later calls fail fast with it."""
        if self.closed is None:
            self.closed = reason
        self.fail_pending(reason)

    def fail_pending(self, reason: ConnectionClosed) -> None:
        """Fail the requests waiting now with `reason`; their answers, if they come, are
        dropped. The connection stays open."""
        pending, self._pending = self._pending, {}
        for id, future in pending.items():
            self._abandoned.add(id)
            if not future.done():
                future.set_exception(reason)


def error_from(err: ResponseError) -> errors.VmdError | ProtocolError:
    """The exception an error answer stands for: typed when it is about one module."""
    if err.data is not None:
        try:
            data = msgspec.convert(err.data, LoaderErrorData)
        except msgspec.ValidationError:
            pass
        else:
            return errors.from_data(data)
    return ProtocolError(err.code, err.message, err.data)
