"""JSON-RPC 2.0 for the daemon's end of its client: envelopes, replies, our own requests, and
the one way a session stops.

Messages arrive as bodies from `transport.ClientConnection`; `envelope` decodes just enough of
one to route it (and answers what is not JSON-RPC at all). Replies are built from bytes, so a
pre-encoded result is sent without decoding it again.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Any

import msgspec

from vmd.chunks import Chunks, Encoded, join
from vmd.protocol import INVALID_PARAMS, INVALID_REQUEST, PARSE_ERROR
from vmd.transport import ClientConnection

log = logging.getLogger("vmd.rpc")

# How a request ended, encoded: (b"result", value) or (b"error", error object).
Reply = tuple[bytes, Encoded]

_encoder = msgspec.json.Encoder()


class Envelope(msgspec.Struct):
    """Just enough of a JSON-RPC message to route it; params stay undecoded."""

    jsonrpc: str | None = None
    id: msgspec.Raw = msgspec.Raw(b"")
    method: str | None = None
    params: msgspec.Raw = msgspec.Raw(b"")


_envelope = msgspec.json.Decoder(Envelope)


def _valid_string(raw: bytes) -> bool:
    try:
        msgspec.json.decode(raw, type=str)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        return False
    return True


class RpcError(Exception):
    """Raised by a handler: the request is answered with this JSON-RPC error."""

    def __init__(self, code: int, message: str, data: bytes = b"null") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def reply(self) -> Reply:
        return b"error", error_object(self.code, self.message, self.data)


def result(value: Encoded) -> Reply:
    """A successful reply whose result is already encoded."""
    return b"result", value


def error_object(code: int, message: str, data: bytes = b"null") -> bytes:
    """An encoded JSON-RPC error object."""
    return b'{"code":%d,"message":%s,"data":%s}' % (code, _encoder.encode(message), data)


def not_utf8(data: msgspec.Raw) -> str | None:
    """Why `data` is not UTF-8, or None: asked of the bytes themselves, because msgspec up to
    0.22 reports invalid UTF-8 as UnicodeDecodeError and 0.23 as a plain DecodeError, which
    looks the same as a wrong type."""
    raw = bytes(memoryview(data))
    if raw.isascii():
        return None
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return str(exc)
    return None


class Method:
    """A method's name, params type and handler `(server, params)`; decodes its params."""

    def __init__(
        self, name: str, params: type[Any], handler: Callable[[Any, Any], Any]
    ) -> None:
        self.name = name
        self.handler = handler
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(params)

    def decode_request(self, raw: msgspec.Raw) -> Any:
        """The request's params, or the error it is answered with (`RpcError`)."""
        try:
            return self._decoder.decode(raw if raw else b"null")
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            if bad := not_utf8(raw):  # not JSON at all, whatever the decoder called it
                raise RpcError(
                    PARSE_ERROR, f"{self.name}: params are not valid UTF-8: {bad}"
                ) from None
            raise RpcError(INVALID_PARAMS, f"{self.name}: invalid params: {exc}") from None

    def decode(self, raw: msgspec.Raw) -> Any:
        """A notification's params, or None (logged) when they are malformed."""
        try:
            return self._decoder.decode(raw if raw else b"null")
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            log.warning("%s: invalid params: %s", self.name, exc)
            return None


class Rpc:
    """One client connection's JSON-RPC: reading, replying, requesting, stopping.

    `on_message` gets every body; `on_stop` runs once, as the session stops (whatever stops it).
    """

    def __init__(
        self, on_message: Callable[[bytes], None], on_stop: Callable[[], None]
    ) -> None:
        self.conn = ClientConnection(self._on_messages, self._on_input_closed, self._on_frame_error)
        self._on_message = on_message
        self._on_stop = on_stop
        self.stopped = asyncio.Event()
        self.exit_code = 1
        self.shutdown_requested = False  # `shutdown` received: an `exit` now is orderly
        self._ids = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[Any]] = {}  # our requests to the client

    # -- input -----------------------------------------------------------------------------

    def _on_messages(self, bodies: list[bytes]) -> None:
        for body in bodies:
            try:
                self._on_message(body)
            except Exception:  # a bug in one message's handling must not stop the daemon
                log.exception("internal error handling a message")

    def _on_frame_error(self, error: str) -> None:
        log.warning("protocol framing: %s", error)
        self.error(b"null", PARSE_ERROR, error)

    def _on_input_closed(self) -> None:
        self.stop("client closed stdin; exiting")

    def envelope(self, body: bytes) -> Envelope | None:
        """The message's envelope, or None when it is not a JSON-RPC 2.0 message (answered)."""
        try:
            env = _envelope.decode(body)
        except msgspec.ValidationError as exc:
            self.error(b"null", INVALID_REQUEST, f"invalid JSON-RPC message: {exc}")
            return None
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            # Older msgspec raises UnicodeDecodeError for invalid UTF-8 in a string, newer a
            # DecodeError: both mean the message is not JSON.
            self.error(b"null", PARSE_ERROR, f"message is not valid JSON: {exc}")
            return None
        except RecursionError:  # its id cannot be read either
            self.error(b"null", PARSE_ERROR, "message nests too deep to read")
            return None
        msg_id = bytes(env.id)
        if msg_id[:1] == b'"' and not _valid_string(msg_id):  # never echo bytes that are not JSON
            self.error(b"null", PARSE_ERROR, "id is not a valid JSON string (UTF-8)")
            return None
        if msg_id and msg_id[:1] not in b'-0123456789"n':
            self.error(b"null", INVALID_REQUEST, "id must be a number, a string or null")
            return None
        if env.jsonrpc != "2.0":
            self.error(msg_id or b"null", INVALID_REQUEST, 'jsonrpc must be "2.0"')
            return None
        if env.method is None and not msg_id:  # neither a request, a notification nor a response
            self.error(b"null", INVALID_REQUEST, "message has neither a method nor an id")
            return None
        return env

    def response(self, msg_id: bytes, body: bytes) -> bool:
        """A client's answer: resolve our request it answers. False: not ours (pygls')."""
        try:
            key = msgspec.json.decode(msg_id) if msg_id else None
        except msgspec.DecodeError:
            key = None
        future = self._waiting.pop(key, None) if isinstance(key, str) else None
        if future is None:
            return False
        if not future.done():
            future.set_result(body)
        return True

    # -- output ----------------------------------------------------------------------------

    def reply(self, msg_id: bytes, reply: Reply) -> None:
        kind, value = reply
        if isinstance(value, Chunks):  # a large module: sent in its pieces, never joined
            self.conn.send(join((b'{"jsonrpc":"2.0","id":%s,"%s":' % (msg_id, kind), value, b"}")))
        else:
            self.conn.send(b'{"jsonrpc":"2.0","id":%s,"%s":%s}' % (msg_id, kind, value))

    def result(self, msg_id: bytes, value: bytes) -> None:
        self.reply(msg_id, (b"result", value))

    def error(self, msg_id: bytes, code: int, message: str, data: bytes = b"null") -> None:
        self.reply(msg_id, (b"error", error_object(code, message, data)))

    def notify(self, method: str, params: Any) -> None:
        self.conn.send(_encoder.encode({"jsonrpc": "2.0", "method": method, "params": params}))

    def request(self, method: str, params: Any) -> asyncio.Future[Any]:
        """Send a request to the client; the future resolves with the raw answer."""
        key = f"vmd:{next(self._ids)}"
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[key] = future
        # Forgotten however it ends: answered, or given up on by the caller (a client that
        # never answers a refresh must not grow this map for as long as the daemon runs).
        future.add_done_callback(lambda _: self._waiting.pop(key, None))
        msg = {"jsonrpc": "2.0", "id": key, "method": method, "params": params}
        self.conn.send(_encoder.encode(msg))
        return future

    @property
    def unanswered(self) -> int:
        """How many of our requests to the client are still waiting for an answer."""
        return len(self._waiting)

    # -- stopping --------------------------------------------------------------------------

    def stop(self, why: str, exit_code: int | None = None) -> None:
        """End the session: `exit`, stdin closed, the client process gone, a signal.

        The exit code is 0 after `shutdown`, else 1, unless given. `why` is logged, if any."""
        if self.stopped.is_set():
            return
        if why:
            log.info("%s", why)
        self.exit_code = exit_code if exit_code is not None else int(not self.shutdown_requested)
        self._on_stop()
        self.stopped.set()
