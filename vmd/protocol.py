"""Every vmd/* wire type and method name.

`protocol.md` documents exactly these Structs (a test compares the two). New fields must
always have defaults so older clients keep working. Names are camelCase on the wire.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

# Bumped only for incompatible changes; clients check `capabilities.experimental.vmd`.
PROTOCOL_VERSION = 1

LOAD = "vmd/load"
LOAD_MANY = "vmd/loadMany"
RELOAD = "vmd/reload"
INVALIDATE = "vmd/invalidate"
CHANGED = "vmd/changed"
BUSY = "$/vmd/busy"

# What every client shares (clients/README.md; tests/unit/test_shared_knowledge.py checks each
# client's copy against these). The include globs when none are given:
DEFAULT_INCLUDE: tuple[str, ...] = ("**/*.vmd.py",)
# What a client tells a user whose interpreter lacks vmd, before saying how to pick another:
# `{python}` is the interpreter, `{checkout}` a vmd checkout's path (INSTALL_CHECKOUT, or the
# spelling a client's messages already use; clients/README.md says which).
INSTALL_HINT = (
    "Install vmd into that interpreter from a checkout of the vmd repository: "
    "`{python} -m pip install {checkout}` "
    '(vmd is not on PyPI: the "vmd" there is an unrelated project).'
)
INSTALL_CHECKOUT = "path/to/vmd"

# JSON-RPC error codes (protocol.md, "Errors"). JSON-RPC 2.0's own:
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_NOT_INITIALIZED = -32002  # LSP's
REQUEST_CANCELLED = -32800  # LSP's: answered to a request the client cancelled
# vmd's, about one module (`data` is a LoaderErrorData): in the implementation-defined range
# -32099..-32000, avoiding the two LSP reserves there (-32002, and -32001 UnknownErrorCode).
LOADER_FAILED = -32010
LOADER_TIMEOUT = -32011
LOADER_CRASHED = -32012
REFUSED = -32020

EventType = Literal["add", "change", "unlink"]
ChangeReason = Literal["watch", "code", "reload", "invalidate"]
ErrorKind = Literal["error", "timeout", "crash", "refused"]


class Message(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=False):
    """Base for every vmd/* params and result object."""


class LoadParams(Message, kw_only=True):
    """`vmd/load` params: the module id, exactly as results will be keyed."""

    id: str


class LoadManyParams(Message, kw_only=True):
    """`vmd/loadMany` params: modules to load in one request (a build asks for hundreds)."""

    ids: list[str]


class ReloadParams(Message, kw_only=True):
    """`vmd/reload` params: re-run `id` now with `ctx.data = data`."""

    id: str
    data: Any = None


class InvalidateParams(Message, kw_only=True):
    """`vmd/invalidate` params: one module `id`, or every module depending on `path`."""

    id: str | None = None
    path: str | None = None


class LoadResult(Message, kw_only=True):
    """Result of `vmd/load` and `vmd/reload`."""

    id: str
    code: str
    map: Any = None
    version: int
    watch_files: list[str]
    dependencies: list[str]
    watch_dirs: list[str] = []


class InvalidateResult(Message, kw_only=True):
    """Result of `vmd/invalidate`: the ids whose cached output was dropped."""

    ids: list[str]


class FileEvent(Message, kw_only=True):
    """A file change that made a module stale; `path` is absolute."""

    type: EventType
    path: str


class ChangedParams(Message, kw_only=True):
    """`vmd/changed` notification (server to client)."""

    id: str
    version: int
    reason: ChangeReason
    events: list[FileEvent] = []


class BusyParams(Message, kw_only=True):
    """`$/vmd/busy` notification (server to client), sent every second while requests that
    run loaders are unanswered: a busy daemon is told from a stuck one by hearing from it."""

    requests: int


class LoaderErrorData(Message, kw_only=True):
    """The `data` of a JSON-RPC error about one module.

    `file` is absolute and `line` is 1-based: the deepest frame in the loader or one of its
    project-local imports (the loader itself and line 1 when no frame is known).
    """

    id: str
    message: str
    file: str
    line: int
    kind: ErrorKind = "error"
    traceback: str = ""


class ErrorObject(Message, kw_only=True):
    """A JSON-RPC error object: what a failed `vmd/load` of the same id answers."""

    code: int
    message: str
    data: LoaderErrorData | None = None


class LoadOutcome(Message, kw_only=True):
    """How one id of a `vmd/loadMany` ended: exactly one of `result` and `error` is present."""

    result: LoadResult | None = None
    error: ErrorObject | None = None


class LoadManyResult(Message, kw_only=True):
    """Result of `vmd/loadMany`: one outcome per id, in the order of the ids."""

    results: list[LoadOutcome]


# Editor commands (`workspace/executeCommand`), run by the daemon; see vmd/editor.py.
PREVIEW_COMMAND = "vmd.preview"
RELOAD_COMMAND = "vmd.reload"
PREVIEW_SCHEME = "vmd"


class PreviewResult(Message, kw_only=True):
    """Result of the `vmd.preview` command: the module's `vmd:` document and its current text."""

    id: str
    uri: str
    code: str | None = None
    version: int | None = None
    error: LoaderErrorData | None = None
    text: str


class ReloadCommandResult(Message, kw_only=True):
    """Result of the `vmd.reload` command: the ids re-run, and the errors of those that failed."""

    ids: list[str]
    errors: list[LoaderErrorData] = []


class InitializationOptions(Message, kw_only=True):
    """`initializationOptions` of `initialize`; every field is optional."""

    mode: Literal["serve", "build"] = "serve"
    include: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_INCLUDE))
    timeout_ms: int = 30000
    max_workers: int = 8
    max_query_ids: int = 5000
    memory_limit_mb: int | None = None
    progress_delay_ms: int = 500
    preload: bool = True


# The structs protocol.md documents, by section name (the test walks this).
DOCUMENTED: dict[str, type[Message]] = {
    "LoadParams": LoadParams,
    "LoadManyParams": LoadManyParams,
    "LoadManyResult": LoadManyResult,
    "LoadOutcome": LoadOutcome,
    "ErrorObject": ErrorObject,
    "ReloadParams": ReloadParams,
    "InvalidateParams": InvalidateParams,
    "LoadResult": LoadResult,
    "InvalidateResult": InvalidateResult,
    "ChangedParams": ChangedParams,
    "BusyParams": BusyParams,
    "FileEvent": FileEvent,
    "LoaderErrorData": LoaderErrorData,
    "InitializationOptions": InitializationOptions,
    "PreviewResult": PreviewResult,
    "ReloadCommandResult": ReloadCommandResult,
}
