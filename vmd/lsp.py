"""A lazily started pygls server for the editor-facing LSP methods.

pygls and lsprotocol take ~0.5 s to import here, longer than the whole start-up budget, and a
build tool never needs them. `vmd.server` answers the lifecycle and every vmd/* method itself;
anything else is handed to pygls, imported on first need (or early, in the background, when the
client looks like an editor). When pygls arrives it is shown the client's `initialize` so its
workspace and capabilities are set; its answer to that replay is dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vmd.protocol import INVALID_PARAMS, METHOD_NOT_FOUND

if TYPE_CHECKING:
    from vmd.editor import EditorFeatures, EditorHost
    from vmd.protocol import ChangedParams
    from vmd.store import Outcome

log = logging.getLogger("vmd.lsp")

_REPLAY_ID = "vmd:replayed-initialize"


class _ReplayFilter:
    """pygls' writer: everything goes to the client except the answer to the replay."""

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self._write = write
        self.swallow = True

    def write(self, data: bytes) -> None:
        if self.swallow and _REPLAY_ID.encode() in data:
            self.swallow = False
            return
        self._write(data)

    def close(self) -> None:
        pass


class PyglsBridge:
    """Queues messages until pygls is imported, then feeds them to it in order.

    `owner` is the daemon (`vmd.server.VmdServer`, seen as an `editor.EditorHost`): the editor
    features registered on the pygls server use its service, and hear about changes through
    `changed` and `finished`.
    """

    def __init__(self, write: Callable[[bytes], None], owner: EditorHost | None = None) -> None:
        self._write = write
        self._owner = owner
        self._initialize: dict[str, Any] | None = None
        self._queue: list[bytes] = []
        self._server: Any = None
        self._editor: EditorFeatures | None = None
        self._loading = False

    @property
    def active(self) -> bool:
        """Whether pygls is started or on its way (it may have requests to cancel)."""
        return self._loading or self._server is not None

    def changed(self, params: ChangedParams) -> None:
        """A module went stale (after `vmd/changed` was sent): refresh its preview."""
        if self._editor is not None:
            self._editor.changed(params)

    def finished(self, outcome: Outcome) -> None:
        """A module's run ended."""
        if self._editor is not None:
            self._editor.finished(outcome)

    def remember_initialize(self, params: dict[str, Any]) -> None:
        self._initialize = params

    def preload(self) -> None:
        """Start importing pygls in the background (the client is probably an editor)."""
        if self._loading:
            return
        self._loading = True
        loop = asyncio.get_running_loop()

        def load() -> None:
            try:
                server, editor = _build(self._owner)
            except Exception:
                log.exception("could not start the LSP features")
                server, editor = None, None
            loop.call_soon_threadsafe(self._ready, server, editor)

        threading.Thread(target=load, name="vmd-pygls-import", daemon=True).start()

    def handle(self, body: bytes) -> None:
        """Give one message to pygls (queued until it is ready)."""
        if self._server is None:
            self._queue.append(body)
            self.preload()
            return
        self._feed(body)

    def _ready(self, server: Any, editor: EditorFeatures | None = None) -> None:
        self._editor = editor
        if server is None:
            for body in self._queue:
                _answer_unavailable(body, self._write)
            self._queue.clear()
            return
        server.protocol.set_writer(_ReplayFilter(self._write))
        self._server = server
        if self._initialize is not None:
            replay = {"jsonrpc": "2.0", "id": _REPLAY_ID, "method": "initialize",
                      "params": self._initialize}
            self._feed(json.dumps(replay).encode())
            self._feed(b'{"jsonrpc":"2.0","method":"initialized","params":{}}')
        queued, self._queue = self._queue, []
        for body in queued:
            self._feed(body)

    def _feed(self, body: bytes) -> None:
        protocol = self._server.protocol
        try:
            message = json.loads(body, object_hook=protocol.structure_message)
        except Exception as exc:  # pygls raises its JsonRpcException subclasses here
            _answer_unavailable(body, self._write, f"invalid params: {exc}", INVALID_PARAMS)
            return
        protocol.handle_message(message)


def _build(owner: EditorHost | None) -> tuple[Any, EditorFeatures | None]:
    from pygls.lsp.server import LanguageServer

    from vmd import __version__

    server = LanguageServer("vmd", __version__)
    if owner is None:
        return server, None
    from vmd.editor import register

    return server, register(server, owner)


def _answer_unavailable(
    body: bytes, write: Callable[[bytes], None], why: str = "LSP features unavailable",
    code: int = METHOD_NOT_FOUND,
) -> None:
    from vmd.transport import frame

    try:
        msg = json.loads(body)
    except ValueError:
        return
    if isinstance(msg, dict) and "id" in msg and "method" in msg:
        err = {"code": code, "message": f"{msg['method']}: {why}"}
        write(frame(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "error": err}).encode()))
