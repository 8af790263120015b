"""The daemon's protocol face: LSP lifecycle through pygls, vmd/* methods through msgspec.

Every incoming message is decoded once into an envelope. `vmd/*` requests are answered here
(a cached `vmd/load` without leaving this module); everything else goes to pygls, which owns
the LSP lifecycle and editor features. Handlers only translate: the work is in `vmd.service`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import signal
import sys
from typing import Any
from urllib.parse import unquote, urlparse

import msgspec
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.server import LanguageServer

from vmd import __version__
from vmd.diagnostics import DiagnosticSet
from vmd.errors import VmdError
from vmd.options import parse_options
from vmd.protocol import (
    CHANGED,
    INVALIDATE,
    LOAD,
    RELOAD,
    ChangedParams,
    InitializationOptions,
    InvalidateParams,
    InvalidateResult,
    LoadParams,
    ReloadParams,
)
from vmd.service import Service
from vmd.store import Record
from vmd.transport import Connection

log = logging.getLogger("vmd.server")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
SERVER_NOT_INITIALIZED = -32002


class Envelope(msgspec.Struct):
    """Just enough of a JSON-RPC message to route it; params stay undecoded."""

    jsonrpc: str | None = None
    id: msgspec.Raw = msgspec.Raw(b"")
    method: str | None = None
    params: msgspec.Raw = msgspec.Raw(b"")


_envelope = msgspec.json.Decoder(Envelope)
_encoder = msgspec.json.Encoder()
_decoders: dict[str, msgspec.json.Decoder[Any]] = {
    LOAD: msgspec.json.Decoder(LoadParams),
    RELOAD: msgspec.json.Decoder(ReloadParams),
    INVALIDATE: msgspec.json.Decoder(InvalidateParams),
}


class VmdServer(LanguageServer):
    """pygls server plus the vmd/* fast lane and the service behind both."""

    def __init__(self) -> None:
        super().__init__("vmd", __version__)
        self.conn = Connection(self.on_messages, self.on_input_closed, self.on_frame_error)
        self.service: Service | None = None
        self.options = InitializationOptions()
        self.diagnostics = DiagnosticSet()
        self.stopped = asyncio.Event()
        self.exit_code = 0
        self.shutdown_requested = False
        self._tokens = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- input -----------------------------------------------------------------------------

    def on_messages(self, bodies: list[bytes]) -> None:
        for body in bodies:
            try:
                self._route(body)
            except Exception:  # a bug in one message's handling must not stop the daemon
                log.exception("internal error handling a message")

    def _route(self, body: bytes) -> None:
        try:
            env = _envelope.decode(body)
        except msgspec.ValidationError as exc:
            self._error(b"null", INVALID_REQUEST, f"invalid JSON-RPC message: {exc}")
            return
        except msgspec.DecodeError as exc:
            self._error(b"null", PARSE_ERROR, f"message is not valid JSON: {exc}")
            return
        msg_id = bytes(env.id)
        if msg_id and msg_id[:1] not in b'-0123456789"n':
            self._error(b"null", INVALID_REQUEST, "id must be a number, a string or null")
            return
        if env.jsonrpc != "2.0":
            self._error(msg_id or b"null", INVALID_REQUEST, 'jsonrpc must be "2.0"')
            return
        method = env.method
        if method in _decoders and msg_id:
            self._vmd_request(msg_id, method, env.params)
        elif method == "exit":
            self.exit_code = 0 if self.shutdown_requested else 1
            self.stopped.set()
        else:
            self._to_pygls(body, msg_id, method)

    def _to_pygls(self, body: bytes, msg_id: bytes, method: str | None) -> None:
        if method == "shutdown" and msg_id:
            self.shutdown_requested = True
        try:
            message = json.loads(body, object_hook=self.protocol.structure_message)
        except JsonRpcException as exc:
            if msg_id and method:
                err = exc.to_response_error()
                self._error(msg_id, err.code, f"{method}: {err.message}")
            else:
                log.warning("dropped a malformed %s message", method or "response")
            return
        self.protocol.handle_message(message)

    def on_frame_error(self, error: str) -> None:
        log.warning("protocol framing: %s", error)
        self._error(b"null", PARSE_ERROR, error)

    def on_input_closed(self) -> None:
        log.info("client closed stdin; exiting")
        self.exit_code = 0 if self.shutdown_requested else 1
        self.stopped.set()

    # -- vmd/* -----------------------------------------------------------------------------

    def _vmd_request(self, msg_id: bytes, method: str, raw: msgspec.Raw) -> None:
        service = self.service
        if service is None:
            self._error(msg_id, SERVER_NOT_INITIALIZED, f"{method} before initialize")
            return
        if self.shutdown_requested:
            self._error(msg_id, INVALID_REQUEST, f"{method} after shutdown")
            return
        try:
            params = _decoders[method].decode(raw if raw else b"null")
        except msgspec.DecodeError as exc:
            self._error(msg_id, INVALID_PARAMS, f"{method}: invalid params: {exc}")
            return
        if method == LOAD:
            cached = service.cached(params.id)
            if cached is not None:
                self._result(msg_id, cached)
                return
            self._spawn(self._answer(msg_id, params.id, service.load(params.id)))
        elif method == RELOAD:
            self._spawn(self._answer(msg_id, params.id, service.reload(params.id, params.data)))
        else:
            if (params.id is None) == (params.path is None):
                self._error(msg_id, INVALID_PARAMS, f"{method}: give exactly one of id, path")
                return
            ids = service.invalidate(id=params.id, path=params.path)
            self._result(msg_id, _encoder.encode(InvalidateResult(ids=ids)))

    async def _answer(self, msg_id: bytes, id: str, work: Any) -> None:
        task: asyncio.Future[Record] = asyncio.ensure_future(work)
        done, _ = await asyncio.wait({task}, timeout=self.options.progress_delay_ms / 1000)
        if not done:
            await self._progress_while(task, id)
        try:
            rec = task.result()
        except VmdError as exc:
            data = _encoder.encode(exc.to_data())
            self._error(msg_id, exc.code, str(exc), data)
            return
        assert rec.encoded is not None
        self._result(msg_id, rec.encoded)

    async def _progress_while(self, task: asyncio.Future[Any], id: str) -> None:
        caps = self.client_capabilities
        if not (caps and caps.window and caps.window.work_done_progress):
            await asyncio.wait({task})
            return
        token = f"vmd/load/{next(self._tokens)}"
        try:
            await asyncio.wait_for(self.work_done_progress.create_async(token), 2)
        except Exception:  # a client that does not answer must not hold the load back
            await asyncio.wait({task})
            return
        name = os.path.basename(id.partition("?")[0])
        self.work_done_progress.begin(
            token, types.WorkDoneProgressBegin(title="vmd", message=f"running {name}")
        )
        await asyncio.wait({task})
        self.work_done_progress.end(token, types.WorkDoneProgressEnd(message=f"{name} done"))

    # -- output ----------------------------------------------------------------------------

    def _result(self, msg_id: bytes, result: bytes) -> None:
        self.conn.send(b'{"jsonrpc":"2.0","id":%s,"result":%s}' % (msg_id, result))

    def _error(self, msg_id: bytes, code: int, message: str, data: bytes = b"null") -> None:
        err = b'{"code":%d,"message":%s,"data":%s}' % (code, _encoder.encode(message), data)
        self.conn.send(b'{"jsonrpc":"2.0","id":%s,"error":%s}' % (msg_id, err))

    def notify_raw(self, method: str, params: Any) -> None:
        self.conn.send(_encoder.encode({"jsonrpc": "2.0", "method": method, "params": params}))

    # Notifier ------------------------------------------------------------------------------

    def changed(self, params: ChangedParams) -> None:
        self.notify_raw(CHANGED, params)

    def finished(self, rec: Record) -> None:
        for file in self.diagnostics.update(rec.id, rec.loader, rec.error):
            diags = [
                {
                    "range": {
                        "start": {"line": line - 1, "character": 0},
                        "end": {"line": line - 1, "character": 10000},
                    },
                    "severity": 1,
                    "source": "vmd",
                    "message": message,
                }
                for line, message in self.diagnostics.for_file(file)
            ]
            self.notify_raw(
                "textDocument/publishDiagnostics", {"uri": _uri(file), "diagnostics": diags}
            )

    def log(self, text: str) -> None:
        self.notify_raw("window/logMessage", {"type": 4, "message": text})

    # -- lifecycle -------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def initialize(self, params: types.InitializeParams) -> None:
        self.options, warnings = parse_options(params.initialization_options)
        for warning in warnings:
            log.warning("%s", warning)
            self.show_warning(warning)
        roots = _roots(params)
        if not roots:
            self.show_warning("vmd: initialize gave no rootUri or workspaceFolders; "
                              "every module will be refused")
        self.service = Service(roots=roots, options=self.options, notifier=self)
        self._spawn(self.service.start())
        if params.process_id is not None:
            self._spawn(_watch_parent(params.process_id, self))

    def show_warning(self, text: str) -> None:
        self.notify_raw("window/logMessage", {"type": 2, "message": text})


def _roots(params: types.InitializeParams) -> list[str]:
    roots: list[str] = []
    for folder in params.workspace_folders or []:
        roots.append(_path(folder.uri))
    if not roots and params.root_uri:
        roots.append(_path(params.root_uri))
    if not roots and params.root_path:
        roots.append(params.root_path)
    return [r for r in roots if r]


def _path(uri: str) -> str:
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme == "file" else ""


def _uri(path: str) -> str:
    from pathlib import Path

    return Path(path).as_uri()


async def _watch_parent(pid: int, server: VmdServer) -> None:
    """pygls does not watch the client's processId; exit when it is gone."""
    while not server.stopped.is_set():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            log.info("client process %d is gone; exiting", pid)
            server.exit_code = 0 if server.shutdown_requested else 1
            server.stopped.set()
            return
        except PermissionError:
            pass
        await asyncio.sleep(1.0)


def create_server() -> VmdServer:
    """Build the server with its LSP handlers registered."""
    server = VmdServer()

    @server.feature(types.INITIALIZE)
    def on_initialize(ls: VmdServer, params: types.InitializeParams) -> None:
        ls.initialize(params)

    @server.feature(types.SHUTDOWN)
    async def on_shutdown(ls: VmdServer, params: Any) -> None:
        ls.shutdown_requested = True
        if ls.service is not None:
            await ls.service.close()

    return server


async def _serve(in_fd: int, out_fd: int) -> int:
    server = create_server()
    server.protocol.set_writer(server.conn)
    await server.conn.open(in_fd, out_fd)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, server.stopped.set)
    try:
        await server.stopped.wait()
    finally:
        if server.service is not None:
            try:
                await asyncio.wait_for(server.service.close(), 2.0)
            except Exception:
                log.exception("error while stopping workers")
            server.service.kill_workers()
        await server.conn.drain()
    return server.exit_code


def serve(log_level: str = "info") -> int:
    """Run the daemon on stdin/stdout until the client goes away; return the exit code."""
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        stream=sys.stderr,
        format="vmd %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("pygls").setLevel(logging.WARNING)
    # The protocol gets its own copy of fd 1; fd 1 itself now points at stderr so nothing
    # printed by a library (or by mistake) can corrupt the stream.
    out_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    service_holder: list[Service] = []
    try:
        return asyncio.run(_serve(0, out_fd))
    except KeyboardInterrupt:
        return 1
    finally:
        for service in service_holder:
            service.kill_workers()
