"""Messages between the daemon and its worker processes (msgpack, length-prefixed).

Kept apart from `vmd.protocol` because this is private to one daemon and its workers and may
change freely; the worker imports only this, `vmd.workers.main`, `vmd.globs` and the loader API.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import Any, Literal

import msgspec

from vmd import chunks
from vmd.filestate import Sig

HEADER = struct.Struct(">I")


class _Msg(msgspec.Struct, kw_only=True, tag_field="t"):
    pass


# daemon -> worker ---------------------------------------------------------------------------


class Assign(_Msg, tag="assign"):
    """First message to a (spare) worker: which loader it hosts from now on."""

    roots: list[str]
    loader: str
    mode: Literal["serve", "build"] = "serve"
    memory_limit_mb: int = 0  # the process's data size limit (RLIMIT_DATA); 0: none


class Run(_Msg, tag="run"):
    """Run module `id` of the assigned loader (setup first if this id has no instance yet)."""

    seq: int
    id: str
    query: dict[str, str] = {}
    # (type, path relative to the loader folder) pairs, as ctx.events will show them.
    events: list[tuple[str, str]] = []
    data: Any = None


class Forget(_Msg, tag="forget"):
    """The daemon forgot these modules: drop their instances (running their cleanups)."""

    ids: list[str]


class Stop(_Msg, tag="stop"):
    """Run every instance's cleanup, then exit."""


class Dump(_Msg, tag="dump"):
    """Report where the main thread is now (sent before killing a timed-out run)."""


# worker -> daemon ---------------------------------------------------------------------------


class Ready(_Msg, tag="ready"):
    """The worker has started and imported what it needs."""

    pid: int


class ErrorInfo(msgspec.Struct, kw_only=True):
    """A failure inside the worker, located at the deepest project-local frame."""

    message: str
    file: str
    line: int
    traceback: str = ""


class Done(_Msg, tag="done"):
    """The outcome of one Run, with everything it depended on, even when it failed."""

    seq: int
    ok: bool
    code: str = ""
    map: Any = None
    error: ErrorInfo | None = None
    # Absolute, normalised glob patterns from `watch`.
    globs: list[str] = []
    # Files the globs matched, absolute, sorted (ctx.watched_files has them relative).
    watched_files: list[str] = []
    # Absolute path -> signature, as seen when the run used them.
    watched: dict[str, Sig] = {}  # the watched files and every folder the globs walked
    code_deps: dict[str, Sig] = {}  # the loader and project-local modules it imported
    instance_deps: dict[str, Sig] = {}  # files read at import or in setup (state built from them)
    data_deps: dict[str, Sig] = {}  # files read by watch/load; None = tried but missing
    # Modules from outside the project first imported by this run (what a preloader may import).
    modules: list[str] = []
    out_of_memory: bool = False  # the run met the memory limit: replace this process
    large: bool = False  # `code` came before, in Parts (then it is "" here)
    # The daemon's own: the Parts it received for this Done, never sent by the worker.
    code_json: list[bytes] = []


class Part(_Msg, tag="part"):
    """Before the Done of a large module: a piece of its code, encoded as a JSON string (the
    pieces of one run, in order, make it whole; see `vmd.chunks`)."""

    seq: int
    data: bytes


class ReloadRequest(_Msg, tag="reload"):
    """A loader called `ctx.reload(data)`."""

    id: str
    data: Any = None


class Stack(_Msg, tag="stack"):
    """Answer to Dump: the main thread's deepest project-local frame."""

    file: str
    line: int
    traceback: str = ""


class Stopped(_Msg, tag="stopped"):
    """Answer to Stop: every cleanup ran; the process exits now."""


ToWorker = Assign | Run | Forget | Stop | Dump
FromWorker = Ready | Part | Done | ReloadRequest | Stack | Stopped


# daemon <-> preloader (`vmd.workers.preloader`) ----------------------------------------------


class Preload(_Msg, tag="preload"):
    """On the preloader's stdin: what to import before it forks workers."""

    roots: list[str]
    modules: list[str] = []


class Fork(_Msg, tag="fork"):
    """Fork one worker; its stdin, stdout and stderr ride along (SCM_RIGHTS). `check`: fork
    none, only answer whether the imported modules' files are unchanged (pid 0, and `refused`
    empty if they are): a worker forked earlier is then as good as one forked now."""

    seq: int
    check: bool = False


class Loaded(_Msg, tag="loaded"):
    """The preloader imported what it could and forks from now on (unless `unsafe`)."""

    pid: int
    base: list[str] = []  # the worker's own modules, there before any preloading
    failed: list[str] = []  # not found, project-local, or raised on import
    threaded: list[str] = []  # started a Python thread at import: never preload these
    unsafe: str = ""  # why this preloader cannot fork (it exits)


class Forked(_Msg, tag="forked"):
    """Answer to Fork: the worker's pid, or why none was forked (the preloader then forks no
    more, and exits once the workers it forked have)."""

    seq: int
    pid: int = 0
    refused: str = ""


class Exited(_Msg, tag="exited"):
    """A worker forked by the preloader exited: it waited for it (it is the worker's parent)."""

    pid: int
    code: int  # negative: killed by that signal


ToPreloader = Fork
FromPreloader = Loaded | Forked | Exited

_encoder = msgspec.msgpack.Encoder()
to_worker_decoder = msgspec.msgpack.Decoder(ToWorker)
from_worker_decoder = msgspec.msgpack.Decoder(FromWorker)
preload_decoder = msgspec.msgpack.Decoder(Preload)
to_preloader_decoder = msgspec.msgpack.Decoder(ToPreloader)
from_preloader_decoder = msgspec.msgpack.Decoder(FromPreloader)


def encode(msg: _Msg) -> bytes:
    """Encode one message without a length prefix (for datagram-like sockets)."""
    return _encoder.encode(msg)


def frame(msg: _Msg) -> bytes:
    """Encode one message with its 4-byte length prefix."""
    body = _encoder.encode(msg)
    return HEADER.pack(len(body)) + body


def answer(done: Done, loader: str, load_line: Callable[[], int]) -> list[bytes]:
    """The frames that answer a Run: its Done, after the Parts of a large module's code. A
    result that cannot be sent becomes the loader's TypeError at its `def load` line."""
    try:
        parts = []
        if len(done.code) > chunks.LARGE:
            blob = msgspec.json.encode(done.code)  # the daemon sends it on as it is
            parts = [frame(Part(seq=done.seq, data=p)) for p in chunks.split(blob)]
            done.code, done.large = "", True
        return [*parts, frame(done)]
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
        what = "a map" if done.map is not None and unsendable(done.map) else "code"
        done.map, done.ok, done.code, done.large = None, False, "", False
        done.error = ErrorInfo(
            message=f"TypeError: load() returned {what} that cannot be sent: {exc}",
            file=loader,
            line=load_line(),
        )
        return [frame(done)]


def read_exact(fd: int, n: int) -> bytes | None:
    """Exactly `n` bytes from `fd` (blocking), or None when it ends first."""
    chunks: list[bytes] = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def unsendable(value: Any) -> str | None:
    """Why `value` cannot travel between daemon and worker (msgpack: no ints beyond 64 bits,
    no arbitrary objects), or None when it can."""
    try:
        msgspec.msgpack.encode(value)
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
        return str(exc)
    return None
