"""Requests answered when their work ends, and `$/cancelRequest` of them.

A vmd/* request whose answer waits for runs is tracked by its id until answered. Cancelling it
answers RequestCancelled (-32800) at once, and once it has stopped waiting, the runs no other
load waits for are stopped (the caller's `stop`), so a client giving up on a slow module frees
its worker instead of leaving it busy for nobody.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from vmd.protocol import REQUEST_CANCELLED
from vmd.rpc import Reply, Rpc

log = logging.getLogger("vmd.inflight")

_encoder = msgspec.json.Encoder()


class CancelParams(msgspec.Struct):
    """`$/cancelRequest` params: the id of the request to cancel."""

    id: int | str


_cancel_params = msgspec.json.Decoder(CancelParams)


class Inflight:
    """The requests of one connection still waiting for their answer.

    `stop(ids)`: called with a cancelled request's module ids once it no longer waits."""

    def __init__(self, rpc: Rpc, stop: Callable[[list[str]], None]) -> None:
        self._rpc = rpc
        self._stop = stop
        # canonical id -> (the task answering it, the id as it came, the module ids it waits for)
        self._waiting: dict[bytes, tuple[asyncio.Future[None], bytes, list[str]]] = {}

    def answer_later(self, msg_id: bytes, reply: Awaitable[Reply], ids: list[str]) -> None:
        """Answer request `msg_id` with `reply` once it is ready, unless it is cancelled."""
        key = _canonical(msg_id)
        task = asyncio.ensure_future(self._answer(key, msg_id, reply))
        self._waiting[key] = (task, msg_id, ids)

    async def _answer(self, key: bytes, msg_id: bytes, reply: Awaitable[Reply]) -> None:
        try:
            answer = await reply
        finally:
            self._waiting.pop(key, None)
        self._rpc.reply(msg_id, answer)

    def cancel(self, raw: msgspec.Raw) -> bool:
        """`$/cancelRequest` with params `raw`. False: not a request waiting here (another
        handler's, or answered already, which LSP says to ignore)."""
        try:
            params = _cancel_params.decode(raw if raw else b"null")
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            log.warning("$/cancelRequest: invalid params: %s", exc)
            return True
        waiting = self._waiting.pop(_encoder.encode(params.id), None)
        if waiting is None:
            return False
        task, msg_id, ids = waiting
        task.cancel()
        self._rpc.error(msg_id, REQUEST_CANCELLED, "request cancelled")
        # Its loads count as waiting until the task has unwound: stop runs only after that.
        task.add_done_callback(lambda _: self._stop(ids))
        return True


def _canonical(msg_id: bytes) -> bytes:
    """A request id as `$/cancelRequest` params encode it (the raw one may hold spaces)."""
    try:
        value: Any = msgspec.json.decode(msg_id)
    except msgspec.DecodeError:
        return msg_id
    return _encoder.encode(value)
