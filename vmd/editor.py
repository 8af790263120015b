"""Editor features over plain LSP: code lenses, commands, `vmd:` preview documents, hover.

Registered on the pygls server that `vmd.lsp` builds, so importing this module costs what pygls
costs: `vmd.server` never imports it; the bridge does, once an editor needs it. Handlers
delegate to the daemon's `Service`, reached through an `EditorHost` (all the editor features
know of the daemon); `EditorFeatures` also hears about changes (through the bridge) to refresh
open previews.

Preview documents: a module id `/proj/src/users.vmd.py?type=admin` is served as the read-only
document `vmd:/proj/src/users.vmd.py?type=admin` (path and query each percent-encoded, see
`id_to_uri`) through LSP 3.18 `workspace/textDocumentContent`, refreshed with
`workspace/textDocumentContent/refresh`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import posixpath
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, unquote, urlsplit

import msgspec
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer

from vmd import filestate, globs
from vmd.errors import VmdError
from vmd.loader_source import load_line, watch_glob_at
from vmd.protocol import (
    PREVIEW_COMMAND,
    PREVIEW_SCHEME,
    RELOAD_COMMAND,
    SERVER_NOT_INITIALIZED,
    ChangedParams,
    PreviewResult,
    ReloadCommandResult,
)
from vmd.store import Outcome

if TYPE_CHECKING:
    from vmd.service import Service

log = logging.getLogger("vmd.editor")

_HOVER_LIMIT = 50  # files listed in a watch-glob hover; the rest are counted

# Characters left as they are in a vmd: URI; everything else is percent-encoded (UTF-8).
_SAFE_PATH = "/-._~!$&'()*+,;=:@"
_SAFE_QUERY = "-._~!$&'()*+,;:@/?="  # `&` and `=` stay readable; `%`, `#`, space are encoded


def id_to_uri(id: str) -> str:
    """The `vmd:` URI of a module id: `vmd:` + encoded path, then `?` + encoded query if any.

    Example:
        >>> id_to_uri("/proj/my src/users.vmd.py?type=admin&q=a%20b")
        'vmd:/proj/my%20src/users.vmd.py?type=admin&q=a%2520b'
    """
    path, sep, query = id.partition("?")
    uri = f"{PREVIEW_SCHEME}:{quote(path, safe=_SAFE_PATH)}"
    if sep:
        uri += "?" + quote(query, safe=_SAFE_QUERY)
    return uri


def uri_to_id(uri: str) -> str:
    """The module id a `vmd:` URI names: its path and query, each percent-decoded.

    Raises:
        ValueError: not a `vmd:` URI, or it has an authority or a fragment.
    """
    scheme, _, rest = uri.partition(":")
    if scheme.lower() != PREVIEW_SCHEME or not rest:
        raise ValueError(f"not a vmd: URI: {uri!r}")
    if rest.startswith("//"):
        raise ValueError(f"a vmd: URI has no authority: {uri!r}")
    if "#" in rest:
        raise ValueError(f"a vmd: URI has no fragment: {uri!r}")
    path, sep, query = rest.partition("?")
    return unquote(path) + (sep + unquote(query) if sep else "")


def target_to_id(target: Any) -> str:
    """A command argument naming a module: an id, an absolute path, a `file:` or `vmd:` URI,
    or an object with one of `id`, `uri`, `path`."""
    if isinstance(target, dict):
        target = target.get("id") or target.get("uri") or target.get("path")
    elif target is not None and not isinstance(target, str):
        target = getattr(target, "id", None) or getattr(target, "uri", None)
    if not isinstance(target, str) or not target:
        raise JsonRpcInvalidParams("give a module id, a loader path or a file:/vmd: URI")
    if target.startswith(f"{PREVIEW_SCHEME}:"):
        try:
            return uri_to_id(target)
        except ValueError as exc:  # a wrong argument, not a bug of ours
            raise JsonRpcInvalidParams(str(exc)) from None
    if target.startswith("file:"):
        return _file_path(target)
    return target


def _file_path(uri: str) -> str:
    parts = urlsplit(uri)
    return unquote(parts.path)


class EditorHost(Protocol):
    """What the editor features use of the daemon (`vmd.server.VmdServer` is one)."""

    @property
    def service(self) -> Service | None:
        """The daemon's service; None before `initialize`."""
        ...

    @property
    def capabilities(self) -> dict[str, Any]:
        """The client's capabilities, as `initialize` gave them."""
        ...

    def request(self, method: str, params: Any) -> asyncio.Future[Any]:
        """Send a request to the client; the future resolves with the raw answer."""
        ...


class EditorFeatures:
    """The editor-facing LSP features of one daemon connection."""

    def __init__(self, ls: LanguageServer, host: EditorHost) -> None:
        self.ls = ls
        self.host = host
        self.previewed: set[str] = set()  # ids served as vmd: documents: refresh these
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- hooks from the daemon -------------------------------------------------------------

    def changed(self, params: ChangedParams) -> None:
        """A module went stale: ask the client to fetch its preview again."""
        if params.id in self.previewed and self._supports("workspace", "textDocumentContent"):
            self._fire("workspace/textDocumentContent/refresh", {"uri": id_to_uri(params.id)})

    def finished(self, outcome: Outcome) -> None:
        """A run ended: a first run of a new id adds a code lens to its loader."""
        if outcome.first and self._supports("workspace", "codeLens", "refreshSupport"):
            self._fire("workspace/codeLens/refresh", None)

    # -- handlers --------------------------------------------------------------------------

    async def text_document_content(
        self, params: types.TextDocumentContentParams
    ) -> types.TextDocumentContentResult:
        try:
            id = uri_to_id(params.uri)
        except ValueError as exc:
            raise JsonRpcInvalidParams(str(exc)) from None
        self.previewed.add(id)
        return types.TextDocumentContentResult(text=await self._text(id))

    async def preview(self, *args: Any) -> dict[str, Any]:
        """`vmd.preview [target]`: run the module if needed; its vmd: URI and current text."""
        if len(args) != 1:
            raise JsonRpcInvalidParams("vmd.preview takes one argument: a module id or path")
        id = target_to_id(args[0])
        self.previewed.add(id)
        try:
            out = await self._service().load(id)
        except VmdError as exc:
            if exc.kind == "refused":
                self.previewed.discard(id)
                raise JsonRpcException(str(exc), exc.code, _to_builtins(exc)) from None
            failed = PreviewResult(id=id, uri=id_to_uri(id), error=exc.to_data(),
                                   text=_error_text(id, exc))
            return _builtins(failed)
        code = out.code()
        done = PreviewResult(id=id, uri=id_to_uri(id), code=code, version=out.version, text=code)
        return _builtins(done)

    async def reload(self, *args: Any) -> dict[str, Any]:
        """`vmd.reload [target]`: re-run one id, or every known id of a loader path."""
        if len(args) != 1:
            raise JsonRpcInvalidParams("vmd.reload takes one argument: a module id or path")
        id = target_to_id(args[0])
        service = self._service()
        ids = [id]
        if "?" not in id:
            ids = self.known_ids(id) or [id]
        results = await asyncio.gather(*(service.reload(i, None) for i in ids),
                                       return_exceptions=True)
        errors = []
        for res in results:
            if isinstance(res, VmdError):
                if res.kind == "refused":
                    raise JsonRpcException(str(res), res.code, _to_builtins(res))
                errors.append(res.to_data())
            elif isinstance(res, BaseException):
                raise res
        return _builtins(ReloadCommandResult(ids=ids, errors=errors))

    def code_lens(self, params: types.CodeLensParams) -> list[types.CodeLens] | None:
        path = _file_path(params.text_document.uri)
        if not path.endswith(".py") or not self._runnable(path):
            return None
        text = self._source(params.text_document.uri, path)
        line = load_line(text)
        where = types.Range(start=types.Position(line=line, character=0),
                            end=types.Position(line=line, character=0))
        lenses = []
        ids = self.known_ids(path) or [path]
        for id in ids:
            query = id.partition("?")[2]
            title = f"Preview ?{query}" if query else "Preview module"
            lenses.append(types.CodeLens(
                range=where,
                command=types.Command(title=title, command=PREVIEW_COMMAND, arguments=[id]),
            ))
        lenses.append(types.CodeLens(
            range=where,
            command=types.Command(title="Reload", command=RELOAD_COMMAND, arguments=[path]),
        ))
        return lenses

    async def hover(self, params: types.HoverParams) -> types.Hover | None:
        path = _file_path(params.text_document.uri)
        if not path.endswith(".py"):
            return None
        text = self._source(params.text_document.uri, path)
        found = watch_glob_at(text, params.position.line, params.position.character)
        if found is None:
            return None
        pattern, where = found
        folder = posixpath.dirname(os.path.realpath(path))
        # A glob may cover a whole tree (`/usr/**/*`): walked in a thread, so the daemon answers
        # every other request meanwhile.
        files, _ = await asyncio.to_thread(filestate.expand, [globs.absolute(pattern, folder)])
        if not files:
            body = f"`{pattern}` matches no file now."
        else:
            noun = "file" if len(files) == 1 else "files"
            lines = [f"`{pattern}` matches {len(files)} {noun}:", ""]
            lines += [f"- `{posixpath.relpath(f, folder)}`" for f in files[:_HOVER_LIMIT]]
            if len(files) > _HOVER_LIMIT:
                lines.append(f"- … and {len(files) - _HOVER_LIMIT} more")
            body = "\n".join(lines)
        return types.Hover(
            contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=body),
            range=where,
        )

    # -- helpers ---------------------------------------------------------------------------

    def known_ids(self, path: str) -> list[str]:
        """Ids this daemon has loaded (or previewed) for the loader at `path`, bare id first."""
        real = os.path.realpath(path)
        ids = set(self._service().ids_of(real))
        ids |= {i for i in self.previewed if os.path.realpath(i.partition("?")[0]) == real}
        return sorted(ids, key=lambda i: ("?" in i, i))

    async def _text(self, id: str) -> str:
        try:
            out = await self._service().load(id)
        except VmdError as exc:
            return _error_text(id, exc)
        assert out.result is not None
        return out.code()

    def _runnable(self, path: str) -> bool:
        from vmd.confine import parse_id

        service = self._service()
        try:
            parse_id(path, service.roots, service.options.include)
        except VmdError:
            return False
        return True

    def _source(self, uri: str, path: str) -> str:
        """The editor's text of an open document, else the file on disk."""
        doc = self.ls.workspace.text_documents.get(uri)
        if doc is not None:
            source: str = doc.source
            return source
        try:
            return Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def _service(self) -> Service:
        service = self.host.service
        if service is None:
            raise JsonRpcException("vmd is not initialized", SERVER_NOT_INITIALIZED)
        return service

    def _supports(self, *keys: str) -> bool:
        node: Any = self.host.capabilities
        for key in keys:
            if not isinstance(node, dict) or key not in node:
                return False
            node = node[key]
        return bool(node) or node == {}

    def _fire(self, method: str, params: Any) -> None:
        """Send a request whose answer does not matter (a refresh)."""
        future = self.host.request(method, params)

        async def wait() -> None:
            try:
                await asyncio.wait_for(future, 30)
            except asyncio.TimeoutError:
                log.debug("client did not answer %s", method)

        task = asyncio.ensure_future(wait())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def register(ls: LanguageServer, host: EditorHost) -> EditorFeatures:
    """Register the editor features on `ls`; return them for the daemon's hooks."""
    features = EditorFeatures(ls, host)

    @ls.feature(types.WORKSPACE_TEXT_DOCUMENT_CONTENT)
    async def text_document_content(
        params: types.TextDocumentContentParams,
    ) -> types.TextDocumentContentResult:
        return await features.text_document_content(params)

    @ls.feature(types.TEXT_DOCUMENT_CODE_LENS)
    def code_lens(params: types.CodeLensParams) -> list[types.CodeLens] | None:
        return features.code_lens(params)

    @ls.feature(types.TEXT_DOCUMENT_HOVER)
    async def hover(params: types.HoverParams) -> types.Hover | None:
        return await features.hover(params)

    @ls.command(PREVIEW_COMMAND)
    async def preview(*args: Any) -> dict[str, Any]:
        return await features.preview(*args)

    @ls.command(RELOAD_COMMAND)
    async def reload(*args: Any) -> dict[str, Any]:
        return await features.reload(*args)

    return features


def _builtins(message: Any) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(message)
    return out


def _to_builtins(exc: VmdError) -> dict[str, Any]:
    return _builtins(exc.to_data())


def _error_text(id: str, exc: VmdError) -> str:
    """What a preview shows while its loader fails: the error, as a JavaScript comment."""
    lines = [f"// vmd: {id} failed ({exc.kind})", f"// {exc.file}:{exc.line}: {exc.message}"]
    if exc.traceback:
        lines.append("//")
        lines += [f"// {line}".rstrip() for line in exc.traceback.rstrip().splitlines()]
    return "\n".join(lines) + "\n"
