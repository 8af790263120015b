"""The daemon's protocol face: LSP lifecycle and vmd/* methods, decoded with msgspec.

Every incoming message is decoded once into an envelope and routed: the lifecycle and vmd/*
are answered here (a cached `vmd/load` without leaving this module), other LSP methods go to
pygls through `vmd.lsp`, loaded lazily because importing it costs more than start-up may.
Handlers only translate; the work is in `vmd.service`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import msgspec

from vmd import __version__
from vmd.diagnostics import DiagnosticSet
from vmd.errors import VmdError
from vmd.lsp import PyglsBridge
from vmd.options import parse_options
from vmd.protocol import (
    BUSY,
    CHANGED,
    INVALIDATE,
    LOAD,
    LOAD_MANY,
    PREVIEW_COMMAND,
    PREVIEW_SCHEME,
    PROTOCOL_VERSION,
    RELOAD,
    RELOAD_COMMAND,
    BusyParams,
    ChangedParams,
    InitializationOptions,
    InvalidateParams,
    InvalidateResult,
    LoadManyParams,
    LoadParams,
    ReloadParams,
)
from vmd.transport import ClientConnection
from vmd.workers.ipc import unsendable
from vmd.workers.spawn import EarlyProcess

if TYPE_CHECKING:
    from vmd.service import Service
    from vmd.store import Outcome

log = logging.getLogger("vmd.server")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
SERVER_NOT_INITIALIZED = -32002
INTERNAL_ERROR = -32603


class Envelope(msgspec.Struct):
    """Just enough of a JSON-RPC message to route it; params stay undecoded."""

    jsonrpc: str | None = None
    id: msgspec.Raw = msgspec.Raw(b"")
    method: str | None = None
    params: msgspec.Raw = msgspec.Raw(b"")


class ClientInfo(msgspec.Struct, rename="camel"):
    """The parts of `initialize` params the daemon itself uses."""

    process_id: int | None = None
    root_uri: str | None = None
    root_path: str | None = None
    workspace_folders: list[dict[str, Any]] | None = None
    capabilities: dict[str, Any] = {}
    initialization_options: Any = None


class FileChange(msgspec.Struct):
    """One entry of LSP `workspace/didChangeWatchedFiles`; the daemon stats the file itself,
    so the change's `type` is not needed."""

    uri: str


class WatchedFilesParams(msgspec.Struct):
    changes: list[FileChange]


DID_CHANGE_WATCHED_FILES = "workspace/didChangeWatchedFiles"
_PUBLISH_DELAY = 0.02  # seconds: diagnostics changes gathered into one publish per file
_BUSY_EVERY = 1.0  # seconds between `$/vmd/busy` notifications while loads are unanswered
_watched_files = msgspec.json.Decoder(WatchedFilesParams)
_envelope = msgspec.json.Decoder(Envelope)
_encoder = msgspec.json.Encoder()
_decoders: dict[str, msgspec.json.Decoder[Any]] = {
    LOAD: msgspec.json.Decoder(LoadParams),
    LOAD_MANY: msgspec.json.Decoder(LoadManyParams),
    RELOAD: msgspec.json.Decoder(ReloadParams),
    INVALIDATE: msgspec.json.Decoder(InvalidateParams),
}


def _not_utf8(data: msgspec.Raw) -> str | None:
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


class VmdServer:
    """One client connection: routing, lifecycle, and the `Notifier` the service talks to."""

    def __init__(self) -> None:
        self.conn = ClientConnection(self.on_messages, self.on_input_closed, self.on_frame_error)
        self.lsp = PyglsBridge(self.conn.write, self)
        self.service: Service | None = None
        self.early: EarlyProcess | None = None
        self.options = InitializationOptions()
        self.client = ClientInfo()
        self.diagnostics = DiagnosticSet()
        self._unpublished: set[str] = set()  # files whose diagnostics changed, not yet sent
        self._publish_at: asyncio.TimerHandle | None = None
        self._unanswered = 0  # requests that run loaders, not answered yet
        self._busy_at: asyncio.TimerHandle | None = None
        self.stopped = asyncio.Event()
        self.exit_code = 1
        self.shutdown_requested = False
        self._ids = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[Any]] = {}  # our requests to the client
        self._tasks: set[asyncio.Task[Any]] = set()
        self._spellings: list[tuple[str, str]] = []  # (real root, root as the client gave it)

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
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            # Older msgspec raises UnicodeDecodeError for invalid UTF-8 in a string, newer a
            # DecodeError: both mean the message is not JSON.
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
        if method is None and not msg_id:  # neither a request, a notification nor a response
            self._error(b"null", INVALID_REQUEST, "message has neither a method nor an id")
        elif method is None:
            self._response(msg_id, body)
        elif method in _decoders and msg_id:
            self._vmd_request(msg_id, method, env.params)
        elif method == "initialize" and msg_id:
            self._on_initialize(msg_id, env.params)
        elif method == "shutdown" and msg_id:
            self._on_shutdown(msg_id)
        elif method == "exit":
            self.exit_code = 0 if self.shutdown_requested else 1
            self._flush_diagnostics()
            self.stopped.set()
        elif method in ("initialized", "$/cancelRequest", "$/setTrace"):
            pass
        elif self.service is None and msg_id:
            self._error(msg_id, SERVER_NOT_INITIALIZED, f"{method} before initialize")
        elif self.shutdown_requested and msg_id:
            self._error(msg_id, INVALID_REQUEST, f"{method} after shutdown")
        elif method.startswith("vmd/") and msg_id:
            self._error(msg_id, METHOD_NOT_FOUND, f"unknown method {method}")
        elif method.startswith("vmd/") or self.service is None:
            log.warning("ignored notification %s", method)
        elif method == DID_CHANGE_WATCHED_FILES and not msg_id:
            self._on_watched_files(env.params)
        else:
            self.lsp.handle(body)

    def _response(self, msg_id: bytes, body: bytes) -> None:
        """A client's answer to one of our requests (or to pygls')."""
        try:
            key = msgspec.json.decode(msg_id) if msg_id else None
        except msgspec.DecodeError:
            key = None
        future = self._waiting.pop(key, None) if isinstance(key, str) else None
        if future is not None:
            if not future.done():
                future.set_result(body)
        else:
            self.lsp.handle(body)

    def on_frame_error(self, error: str) -> None:
        log.warning("protocol framing: %s", error)
        self._error(b"null", PARSE_ERROR, error)

    def on_input_closed(self) -> None:
        log.info("client closed stdin; exiting")
        self.exit_code = 0 if self.shutdown_requested else 1
        self._flush_diagnostics()
        self.stopped.set()

    # -- lifecycle -------------------------------------------------------------------------

    def _on_initialize(self, msg_id: bytes, raw: msgspec.Raw) -> None:
        if self.service is not None:
            self._error(msg_id, INVALID_REQUEST, "initialize was already received")
            return
        try:
            params = msgspec.json.decode(raw if raw else b"{}")
            self.client = msgspec.convert(params, ClientInfo)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            self._error(msg_id, INVALID_PARAMS, f"initialize: invalid params: {exc}")
            return
        self.options, warnings = parse_options(self.client.initialization_options)
        roots = _roots(self.client)
        # A root the client names through a symlink: it shows files by that spelling, while
        # what runs (and fails) is known by its real path.
        self._spellings = [(os.path.realpath(r), r) for r in roots if os.path.realpath(r) != r]
        if not roots:
            warnings.append("initialize gave no rootUri or workspaceFolders; "
                            "every module will be refused")
        result = {
            "capabilities": _capabilities(self.client.capabilities),
            "serverInfo": {"name": "vmd", "version": __version__},
        }
        self._result(msg_id, _encoder.encode(result))
        # Answer first, then import the machinery: the client's start-up waits on the answer,
        # and no other message is read before this callback returns.
        self.conn.flush()
        from vmd.service import Service

        self.service = Service(roots=roots, options=self.options, notifier=self)
        for warning in warnings:
            log.warning("%s", warning)
            self.notify("window/logMessage", {"type": 2, "message": f"vmd: {warning}"})
        self._spawn(self.service.start(self.early))
        self.lsp.remember_initialize(params)
        if "textDocument" in self.client.capabilities:  # an editor: it will want LSP features
            self.lsp.preload()
        if self.client.process_id is not None:
            self._spawn(_watch_parent(self.client.process_id, self))

    def _on_shutdown(self, msg_id: bytes) -> None:
        self._flush_diagnostics()  # runs that ended before the shutdown are the user's problems
        # Set now, not when the workers are stopped: an `exit` read in the same burst is then
        # the orderly exit it is.
        self.shutdown_requested = True
        self._spawn(self._shut_down(msg_id))

    async def _shut_down(self, msg_id: bytes) -> None:
        if self.service is not None:
            await self.service.close()
        self._result(msg_id, b"null")

    def _on_watched_files(self, raw: msgspec.Raw) -> None:
        """A client's watcher saw files change: a hint that may come sooner than ours."""
        try:
            params = _watched_files.decode(raw if raw else b"null")
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            log.warning("%s: invalid params: %s", DID_CHANGE_WATCHED_FILES, exc)
            return
        paths = {p for change in params.changes if (p := _path(change.uri))}
        if paths and self.service is not None:
            self.service.on_hint(paths)

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
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            if bad := _not_utf8(raw):  # not JSON at all, whatever the decoder called it
                self._error(msg_id, PARSE_ERROR, f"{method}: params are not valid UTF-8: {bad}")
            else:
                self._error(msg_id, INVALID_PARAMS, f"{method}: invalid params: {exc}")
            return
        if method == LOAD:
            cached = service.cached(params.id)
            if cached is not None:
                self._result(msg_id, cached)
                return
            self._spawn(self._answer(msg_id, params.id, service.load(params.id)))
        elif method == LOAD_MANY:
            self._spawn(self._answer_many(msg_id, service, params.ids))
        elif method == RELOAD:
            if why := unsendable(params.data):  # a loader could never be given it
                why = f"{method}: data cannot be given to a loader: {why}"
                self._error(msg_id, INVALID_PARAMS, why)
                return
            self._spawn(self._answer(msg_id, params.id, service.reload(params.id, params.data)))
        else:
            if (params.id is None) == (params.path is None):
                self._error(msg_id, INVALID_PARAMS, f"{method}: give exactly one of id, path")
                return
            ids = service.invalidate(id=params.id, path=params.path)
            self._result(msg_id, _encoder.encode(InvalidateResult(ids=ids)))

    async def _answer(self, msg_id: bytes, id: str, work: Awaitable[Outcome]) -> None:
        with self._busy():
            key, value = await self._outcome(id, work)
        self.conn.send(b'{"jsonrpc":"2.0","id":%s,"%s":%s}' % (msg_id, key, value))

    @contextlib.contextmanager
    def _busy(self) -> Iterator[None]:
        """While a request that runs loaders is unanswered, say so every `_BUSY_EVERY`: a
        `vmd/loadMany` of slow loaders is answered only once all have run, and a client
        waiting that long must not take the silence for a stuck daemon."""
        self._unanswered += 1
        if self._busy_at is None:
            self._busy_at = asyncio.get_running_loop().call_later(_BUSY_EVERY, self._still_busy)
        try:
            yield
        finally:
            self._unanswered -= 1

    def _still_busy(self) -> None:
        if self._unanswered == 0 or self.stopped.is_set():
            self._busy_at = None
            return
        self.notify(BUSY, BusyParams(requests=self._unanswered))
        self._busy_at = asyncio.get_running_loop().call_later(_BUSY_EVERY, self._still_busy)

    async def _answer_many(self, msg_id: bytes, service: Service, ids: list[str]) -> None:
        """One answer for many loads; each id ends as its own `vmd/load` would have.

        The answer waits for the slowest id, so an id reported stale meanwhile (its own
        `vmd/load` would have been answered before that `vmd/changed`) is loaded again.
        """
        with self._busy():
            outcomes = await self._load_all(service, ids)
            while stale := [at for at, (_, version) in enumerate(outcomes)
                            if not service.settled(ids[at], version)]:
                again = await self._load_all(service, [ids[at] for at in stale])
                for at, outcome in zip(stale, again, strict=True):
                    outcomes[at] = outcome
        parts = [b'{"%s":%s}' % outcome for outcome, _ in outcomes]
        self._result(msg_id, b'{"results":[%s]}' % b",".join(parts))

    async def _load_all(
        self, service: Service, ids: list[str]
    ) -> list[tuple[tuple[bytes, bytes], int]]:
        """Each id's outcome (see `_outcome`) and the version of the output it is."""
        confined: dict[str, str] = {}  # the ids are checked together: each loader path once

        async def one(id: str) -> tuple[tuple[bytes, bytes], int]:
            cached = service.cached(id)
            if cached is not None:
                return (b"result", cached), service.version(id)
            outcome = await self._outcome(id, service.load(id, confined))
            return outcome, service.version(id)

        return await asyncio.gather(*(one(id) for id in ids))

    async def _outcome(self, id: str, work: Awaitable[Outcome]) -> tuple[bytes, bytes]:
        """How loading `id` ended: `(b"result", LoadResult)` or `(b"error", error object)`,
        both encoded, whatever happened (a bug must still answer, not leave it hanging)."""
        window = self.client.capabilities.get("window") or {}
        try:
            # Only a client that shows progress pays for watching the clock (a build does not).
            done = await (self._with_progress(work, id) if window.get("workDoneProgress") else work)
        except VmdError as exc:
            return b"error", _error_object(exc.code, str(exc), _encoder.encode(exc.to_data()))
        except Exception as exc:
            log.exception("internal error answering %s", id)
            return b"error", _error_object(INTERNAL_ERROR, f"internal error: {exc}")
        assert done.encoded is not None
        return b"result", done.encoded

    async def _with_progress(self, work: Awaitable[Outcome], id: str) -> Outcome:
        """`work`'s result; a run slower than `progressDelayMs` shows as LSP work-done progress."""
        task: asyncio.Future[Outcome] = asyncio.ensure_future(work)
        done, _ = await asyncio.wait({task}, timeout=self.options.progress_delay_ms / 1000)
        if not done:
            await self._progress_while(task, id)
        return task.result()

    async def _progress_while(self, task: asyncio.Future[Any], id: str) -> None:
        token = f"vmd/load/{next(self._ids)}"
        try:
            await asyncio.wait_for(self.request("window/workDoneProgress/create",
                                                {"token": token}), 2)
        except Exception:  # a client that does not answer must not hold the load back
            await asyncio.wait({task})
            return
        name = os.path.basename(id.partition("?")[0])
        begin = {"kind": "begin", "title": "vmd", "message": f"running {name}"}
        self.notify("$/progress", {"token": token, "value": begin})
        await asyncio.wait({task})
        self.notify("$/progress", {"token": token, "value": {"kind": "end"}})

    # -- output ----------------------------------------------------------------------------

    def _result(self, msg_id: bytes, result: bytes) -> None:
        self.conn.send(b'{"jsonrpc":"2.0","id":%s,"result":%s}' % (msg_id, result))

    def _error(self, msg_id: bytes, code: int, message: str, data: bytes = b"null") -> None:
        err = _error_object(code, message, data)
        self.conn.send(b'{"jsonrpc":"2.0","id":%s,"error":%s}' % (msg_id, err))

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

    # Notifier ------------------------------------------------------------------------------

    def changed(self, params: ChangedParams) -> None:
        self.notify(CHANGED, params)
        self.lsp.changed(params)  # refresh vmd: preview documents

    def finished(self, outcome: Outcome) -> None:
        self.lsp.finished(outcome)
        if self.shutdown_requested or self.stopped.is_set():
            return  # runs cut short by the shutdown: no problem in the user's files to show
        files = self.diagnostics.update(outcome.id, outcome.loader, outcome.error)
        if files and self._publish_at is None:
            loop = asyncio.get_running_loop()
            self._publish_at = loop.call_later(_PUBLISH_DELAY, self._publish_diagnostics)
        self._unpublished.update(files)

    def _flush_diagnostics(self) -> None:
        """Publish what is pending now: the session is ending, and the client may be gone
        before `_PUBLISH_DELAY` is up."""
        if self._publish_at is not None:
            self._publish_at.cancel()
            self._publish_diagnostics()

    def _publish_diagnostics(self) -> None:
        """Each file's diagnostics once for the runs that ended within `_PUBLISH_DELAY`: a
        build's hundreds of failing queries of one loader would otherwise re-send the file's
        growing list once per query, quadratic in their number."""
        self._publish_at = None
        files, self._unpublished = sorted(self._unpublished), set()
        for file in files:
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
            uri = Path(self._as_client_sees(file)).as_uri()
            self.notify("textDocument/publishDiagnostics", {"uri": uri, "diagnostics": diags})

    def _as_client_sees(self, path: str) -> str:
        """`path` under the root spelling the client gave, if it gave one through a symlink."""
        for real, given in self._spellings:
            if path == real or path.startswith(real.rstrip("/") + "/"):
                return given.rstrip("/") + path[len(real.rstrip("/")):]
        return path

    def log(self, text: str) -> None:
        self.notify("window/logMessage", {"type": 4, "message": text})

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _error_object(code: int, message: str, data: bytes = b"null") -> bytes:
    return b'{"code":%d,"message":%s,"data":%s}' % (code, _encoder.encode(message), data)


def _capabilities(client: dict[str, Any]) -> dict[str, Any]:
    """What `initialize` answers: vmd/* plus the editor features of `vmd.editor`.

    pygls never answers `initialize` here, so features registered on it are declared by hand.
    """
    caps: dict[str, Any] = {
        "experimental": {
            "vmd": {
                "protocolVersion": PROTOCOL_VERSION,
                "methods": [LOAD, LOAD_MANY, RELOAD, INVALIDATE],
            }
        },
        "textDocumentSync": {"openClose": True, "change": 2},  # incremental, for hover/lenses
        "codeLensProvider": {"resolveProvider": False},
        "executeCommandProvider": {"commands": [PREVIEW_COMMAND, RELOAD_COMMAND]},
        "hoverProvider": True,
    }
    # LSP 3.18: declared only to clients that know it (pygls 2.1 would not advertise it).
    workspace = client.get("workspace")
    if isinstance(workspace, dict) and workspace.get("textDocumentContent") is not None:
        caps["workspace"] = {"textDocumentContent": {"schemes": [PREVIEW_SCHEME]}}
    return caps


def _roots(client: ClientInfo) -> list[str]:
    roots = [_path(str(f.get("uri", ""))) for f in client.workspace_folders or []]
    if not any(roots) and client.root_uri:
        roots = [_path(client.root_uri)]
    if not any(roots) and client.root_path:
        roots = [client.root_path]
    return [r for r in roots if r and os.path.isabs(r)]


def _path(uri: str) -> str:
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme == "file" else ""


async def _watch_parent(pid: int, server: VmdServer) -> None:
    """Exit when the client process is gone, even if it could not close our stdin."""
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


async def _serve(in_fd: int, out_fd: int) -> int:
    server = VmdServer()
    # Its interpreter starts while we read `initialize` and import the rest of the daemon.
    server.early = early = EarlyProcess()
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
        try:
            await asyncio.wait_for(early.close(), 2.0)
        except Exception:
            log.exception("error while stopping the first worker")
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
    try:
        return _run(_serve(0, out_fd))
    except KeyboardInterrupt:
        return 1


def _run(main: Coroutine[Any, Any, int]) -> int:
    """Run `main` on uvloop where it is installed (not on Windows): each turn of its event loop
    costs less, and a change passes through several on its way to the page. Else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
