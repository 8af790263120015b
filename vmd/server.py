"""The daemon's protocol face: LSP lifecycle and a table of vmd/* handlers.

Every incoming message is decoded once into an envelope (`vmd.rpc`) and routed: the lifecycle
and the methods in `REQUESTS` / `NOTIFICATIONS` are answered here (a cached `vmd/load` without
leaving this module), other LSP methods go to pygls through `vmd.lsp`, loaded lazily because
importing it costs more than start-up may. Handlers only translate; the work is in
`vmd.service`, diagnostics are `vmd.diagnostics`', progress `vmd.progress`', and starting the
process `vmd.bootstrap`'s.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import msgspec

from vmd import __version__, rpc
from vmd.chunks import Encoded, join
from vmd.diagnostics import Publisher
from vmd.errors import VmdError
from vmd.inflight import Inflight
from vmd.lsp import PyglsBridge
from vmd.options import parse_options
from vmd.progress import Busy, Progress
from vmd.protocol import (
    CHANGED,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    INVALIDATE,
    LOAD,
    LOAD_MANY,
    METHOD_NOT_FOUND,
    PREVIEW_COMMAND,
    PREVIEW_SCHEME,
    PROTOCOL_VERSION,
    RELOAD,
    RELOAD_COMMAND,
    SERVER_NOT_INITIALIZED,
    ChangedParams,
    InitializationOptions,
    InvalidateParams,
    InvalidateResult,
    LoadManyParams,
    LoadParams,
    ReloadParams,
)
from vmd.rpc import Method, Reply, Rpc, RpcError
from vmd.workers.ipc import unsendable
from vmd.workers.spawn import EarlyProcess

if TYPE_CHECKING:
    from vmd.service import Service
    from vmd.store import Outcome

log = logging.getLogger("vmd.server")

DID_CHANGE_WATCHED_FILES = "workspace/didChangeWatchedFiles"
_encoder = msgspec.json.Encoder()


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


class VmdServer:
    """One client connection: routing, lifecycle, and the `Notifier` the service talks to.

    `watch_parent(pid, rpc)`: what keeps an eye on the client's process, once it is known."""

    def __init__(
        self, watch_parent: Callable[[int, Rpc], Coroutine[Any, Any, None]] | None = None
    ) -> None:
        self.rpc = Rpc(self._route, on_stop=self._on_stop)
        self.lsp = PyglsBridge(self.rpc.conn.write, self)
        self.service: Service | None = None
        self.early: EarlyProcess | None = None
        self.options = InitializationOptions()
        self.client = ClientInfo()
        self.diagnostics = Publisher(self.rpc.notify)
        self.busy = Busy(self.rpc)
        self.progress = Progress(self.rpc, delay_ms=self.options.progress_delay_ms)
        self._watch_parent = watch_parent
        self._tasks: set[asyncio.Task[Any]] = set()
        self.inflight = Inflight(self.rpc, lambda ids: _service(self).stop_unwaited(ids))

    # -- routing ---------------------------------------------------------------------------

    def _route(self, body: bytes) -> None:
        env = self.rpc.envelope(body)
        if env is None:
            return
        msg_id, method = bytes(env.id), env.method
        if method is None:  # a client's answer to one of our requests (or to pygls')
            if not self.rpc.response(msg_id, body):
                self.lsp.handle(body)
        elif method == "exit":
            self.rpc.stop("")
        elif method == "$/cancelRequest":
            if not self.inflight.cancel(env.params) and self.lsp.active:
                self.lsp.handle(body)  # maybe one of pygls' requests
        elif method in ("initialized", "$/setTrace"):
            pass
        elif msg_id and method == "initialize":
            self._initialize(msg_id, env.params)
        elif msg_id and method == "shutdown":
            self._shutdown(msg_id)
        elif msg_id:
            self._request(msg_id, method, env.params, body)
        elif method.startswith("vmd/") or self.service is None:
            log.warning("ignored notification %s", method)
        elif (note := NOTIFICATIONS.get(method)) is not None:
            if (params := note.decode(env.params)) is not None:
                note.handler(self, params)
        else:
            self.lsp.handle(body)

    def _request(self, msg_id: bytes, method: str, raw: msgspec.Raw, body: bytes) -> None:
        """A request other than the lifecycle's: the guards, then its handler or pygls."""
        if self.service is None:
            self.rpc.error(msg_id, SERVER_NOT_INITIALIZED, f"{method} before initialize")
            return
        if self.rpc.shutdown_requested:
            self.rpc.error(msg_id, INVALID_REQUEST, f"{method} after shutdown")
            return
        handler = REQUESTS.get(method)
        if handler is None:
            if method.startswith("vmd/"):
                self.rpc.error(msg_id, METHOD_NOT_FOUND, f"unknown method {method}")
            else:
                self.lsp.handle(body)
            return
        try:
            params = handler.decode_request(raw)
            reply = handler.handler(self, params)
        except RpcError as exc:
            self.rpc.reply(msg_id, exc.reply())
            return
        if isinstance(reply, tuple):
            self.rpc.reply(msg_id, reply)
        else:
            ids = params.ids if isinstance(params, LoadManyParams) else [params.id]
            self.inflight.answer_later(msg_id, reply, ids)

    # -- lifecycle -------------------------------------------------------------------------

    def _initialize(self, msg_id: bytes, raw: msgspec.Raw) -> None:
        """Answer `initialize`, then start the service. Not a table handler: the answer must
        reach the client before the service is imported, and the service must exist before
        this returns (the next message of the same read may need it)."""
        if self.service is not None:
            self.rpc.error(msg_id, INVALID_REQUEST, "initialize was already received")
            return
        try:
            params = msgspec.json.decode(raw if raw else b"{}")
            self.client = msgspec.convert(params, ClientInfo)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            self.rpc.error(msg_id, INVALID_PARAMS, f"initialize: invalid params: {exc}")
            return
        self.options, warnings = parse_options(self.client.initialization_options)
        self.progress = Progress(self.rpc, delay_ms=self.options.progress_delay_ms)
        roots = _roots(self.client)
        self.diagnostics.spellings = [
            (os.path.realpath(r), r) for r in roots if os.path.realpath(r) != r
        ]
        if not roots:
            warnings.append("initialize gave no rootUri or workspaceFolders; "
                            "every module will be refused")
        result = {
            "capabilities": _capabilities(self.client.capabilities),
            "serverInfo": {"name": "vmd", "version": __version__},
        }
        self.rpc.result(msg_id, _encoder.encode(result))
        # Answer first, then import the machinery: the client's start-up waits on the answer,
        # and no other message is read before this callback returns.
        self.rpc.conn.flush()
        from vmd.service import Service

        self.service = Service(roots=roots, options=self.options, notifier=self)
        for warning in warnings:
            log.warning("%s", warning)
            self.rpc.notify("window/logMessage", {"type": 2, "message": f"vmd: {warning}"})
        self.spawn(self.service.start(self.early))
        self.lsp.remember_initialize(params)
        if "textDocument" in self.client.capabilities:  # an editor: it will want LSP features
            self.lsp.preload()
        if self.client.process_id is not None and self._watch_parent is not None:
            self.spawn(self._watch_parent(self.client.process_id, self.rpc))

    def _shutdown(self, msg_id: bytes) -> None:
        self.diagnostics.flush()  # runs that ended before the shutdown are the user's problems
        # Set now, not when the workers are stopped: an `exit` read in the same burst is then
        # the orderly exit it is.
        self.rpc.shutdown_requested = True
        self.spawn(self._shut_down(msg_id))

    async def _shut_down(self, msg_id: bytes) -> None:
        if self.service is not None:
            await self.service.close()
        self.rpc.result(msg_id, b"null")

    def _on_stop(self) -> None:
        self.diagnostics.flush()

    # -- answering loads -------------------------------------------------------------------

    async def answer(self, id: str, work: Awaitable[Outcome]) -> Reply:
        """How loading `id` ended, while counted as busy."""
        with self.busy.request():
            return await self._outcome(id, work)

    async def answer_many(self, service: Service, ids: list[str]) -> Reply:
        """One answer for many loads; each id ends as its own `vmd/load` would have.

        The answer waits for the slowest id, so an id reported stale meanwhile (its own
        `vmd/load` would have been answered before that `vmd/changed`) is loaded again.
        """
        with self.busy.request():
            outcomes = await self._load_all(service, ids)
            while stale := [at for at, (_, version) in enumerate(outcomes)
                            if not service.settled(ids[at], version)]:
                again = await self._load_all(service, [ids[at] for at in stale])
                for at, outcome in zip(stale, again, strict=True):
                    outcomes[at] = outcome
        parts: list[Encoded] = [b'{"results":[']
        for at, ((kind, value), _) in enumerate(outcomes):
            parts += [b'%s{"%s":' % (b"," if at else b"", kind), value, b"}"]
        return rpc.result(join([*parts, b"]}"]))

    async def _load_all(self, service: Service, ids: list[str]) -> list[tuple[Reply, int]]:
        """Each id's outcome (see `_outcome`) and the version of the output it is."""
        confined: dict[str, str] = {}  # the ids are checked together: each loader path once

        async def one(id: str) -> tuple[Reply, int]:
            cached = service.cached(id)
            if cached is not None:
                return rpc.result(cached), service.version(id)
            outcome = await self._outcome(id, service.load(id, confined))
            return outcome, service.version(id)

        return await asyncio.gather(*(one(id) for id in ids))

    async def _outcome(self, id: str, work: Awaitable[Outcome]) -> Reply:
        """How loading `id` ended: `(b"result", LoadResult)` or `(b"error", error object)`,
        both encoded, whatever happened (a bug must still answer, not leave it hanging)."""
        window = self.client.capabilities.get("window") or {}
        try:
            # Only a client that shows progress pays for watching the clock (a build does not).
            done = await (self.progress.around(work, id) if window.get("workDoneProgress")
                          else work)
        except VmdError as exc:
            return RpcError(exc.code, str(exc), _encoder.encode(exc.to_data())).reply()
        except Exception as exc:
            log.exception("internal error answering %s", id)
            return RpcError(INTERNAL_ERROR, f"internal error: {exc}").reply()
        assert done.encoded is not None
        return rpc.result(done.encoded)

    # -- what the editor features use ------------------------------------------------------

    @property
    def capabilities(self) -> dict[str, Any]:
        """The client's capabilities, as `initialize` gave them."""
        return self.client.capabilities

    def request(self, method: str, params: Any) -> asyncio.Future[Any]:
        """Send a request to the client; the future resolves with the raw answer."""
        return self.rpc.request(method, params)

    # -- Notifier --------------------------------------------------------------------------

    def changed(self, params: ChangedParams) -> None:
        self.rpc.notify(CHANGED, params)
        self.lsp.changed(params)  # refresh vmd: preview documents

    def finished(self, outcome: Outcome) -> None:
        self.lsp.finished(outcome)
        if self.rpc.shutdown_requested or self.rpc.stopped.is_set():
            return  # runs cut short by the shutdown: no problem in the user's files to show
        self.diagnostics.update(outcome.id, outcome.loader, outcome.error)

    def log(self, text: str) -> None:
        self.rpc.notify("window/logMessage", {"type": 4, "message": text})

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


# -- the handlers: (server, params) -> reply, or an awaitable of it ------------------------


def load(server: VmdServer, params: LoadParams) -> Reply | Awaitable[Reply]:
    service = _service(server)
    cached = service.cached(params.id)
    if cached is not None:
        return rpc.result(cached)
    return server.answer(params.id, service.load(params.id))


def load_many(server: VmdServer, params: LoadManyParams) -> Awaitable[Reply]:
    return server.answer_many(_service(server), params.ids)


def reload(server: VmdServer, params: ReloadParams) -> Awaitable[Reply]:
    if why := unsendable(params.data):  # a loader could never be given it
        raise RpcError(INVALID_PARAMS, f"{RELOAD}: data cannot be given to a loader: {why}")
    return server.answer(params.id, _service(server).reload(params.id, params.data))


def invalidate(server: VmdServer, params: InvalidateParams) -> Reply:
    if (params.id is None) == (params.path is None):
        raise RpcError(INVALID_PARAMS, f"{INVALIDATE}: give exactly one of id, path")
    ids = _service(server).invalidate(id=params.id, path=params.path)
    return rpc.result(_encoder.encode(InvalidateResult(ids=ids)))


def did_change_watched_files(server: VmdServer, params: WatchedFilesParams) -> None:
    """A client's watcher saw files change: a hint that may come sooner than ours."""
    paths = {p for change in params.changes if (p := _path(change.uri))}
    if paths:
        _service(server).on_hint(paths)


REQUESTS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(LOAD, LoadParams, load),
        Method(LOAD_MANY, LoadManyParams, load_many),
        Method(RELOAD, ReloadParams, reload),
        Method(INVALIDATE, InvalidateParams, invalidate),
    )
}
# The Node client's tests play an older daemon by deleting from this (same dict) and replacing
# `_capabilities`; `VmdServer._route` is what they wrap to record messages.
_decoders = REQUESTS
NOTIFICATIONS: dict[str, Method] = {
    DID_CHANGE_WATCHED_FILES: Method(
        DID_CHANGE_WATCHED_FILES, WatchedFilesParams, did_change_watched_files
    ),
}


def _service(server: VmdServer) -> Service:
    assert server.service is not None  # the router's guard: no handler runs before initialize
    return server.service


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
