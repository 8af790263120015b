"""LSP base-protocol framing over the daemon's stdin and stdout.

vmd reads and writes the pipes itself (instead of pygls' reader, which polls stdin through the
same thread pool as handlers) so that cached `vmd/load` answers cost one msgspec decode and one
write, and so the protocol stream can be moved off file descriptor 1 before anything runs.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import stat
import threading
from collections.abc import Callable

from vmd.chunks import Chunks, Encoded

log = logging.getLogger("vmd.transport")

_MAX_HEADER = 8192
# Output the client has not read yet, past which no more requests are read (back-pressure: a
# client pipelining requests without reading answers blocks on its own writes instead of
# growing the daemon), and below which reading starts again.
OUTPUT_HIGH = 64 << 20
OUTPUT_LOW = 16 << 20
# Output is written in steps of about this much (see `ClientConnection.flush`).
_STEP = 1 << 20


class FrameError(ValueError):
    """A header block that is not `Content-Length: N` framing."""


class Framer:
    """Incremental parser: feed bytes, get complete message bodies."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._need = -1  # body length once a header block has been parsed

    def unfinished(self) -> str | None:
        """What is left of a message the input ended inside, or None when nothing is."""
        if self._need >= 0:
            return f"input ended {self._need - len(self._buf)} bytes short of a message body"
        if self._buf.strip():
            return "input ended inside a header block (headers end with a blank CRLF line)"
        return None

    def feed(self, data: bytes) -> tuple[list[bytes], list[str]]:
        """Return the complete bodies now available and any framing errors met on the way."""
        buf = self._buf
        buf += data
        bodies: list[bytes] = []
        errors: list[str] = []
        pos = 0
        while True:
            if self._need < 0:
                end = buf.find(b"\r\n\r\n", pos)
                if end < 0:
                    if len(buf) - pos > _MAX_HEADER:
                        errors.append("header block too long without a blank line; dropped")
                        pos = len(buf)
                    break
                try:
                    self._need = _content_length(bytes(buf[pos:end]))
                except FrameError as exc:
                    errors.append(str(exc))
                pos = end + 4
                continue
            if len(buf) - pos < self._need:
                break
            bodies.append(bytes(buf[pos : pos + self._need]))
            pos += self._need
            self._need = -1
        del buf[:pos]
        return bodies, errors


def _content_length(header: bytes) -> int:
    length = -1
    for line in header.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if not sep:
            raise FrameError(f"malformed header line {line[:80]!r}; message dropped")
        if name.strip().lower() == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                length = -1
            if length < 0:
                raise FrameError(f"bad Content-Length {value[:40]!r}; message dropped")
    if length < 0:
        raise FrameError("header without Content-Length; message dropped")
    return length


def frame(body: bytes) -> bytes:
    """Prefix `body` with its Content-Length header."""
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def _pollable(fd: int) -> bool:
    """Whether the event loop can watch `fd`: pipes, sockets and terminals, not regular files."""
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)


class _FileWriter:
    """The write side of the transport for a regular file, which takes every write at once."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._closed = False

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:  # disk full, file closed: the output is gone, the daemon is not
            log.warning("cannot write to the output file: %s", exc)
            self._closed = True

    def is_closing(self) -> bool:
        return self._closed

    def get_write_buffer_size(self) -> int:
        return 0


class _Writer(asyncio.Protocol):
    def __init__(self, conn: ClientConnection) -> None:
        self._conn = conn

    def resume_writing(self) -> None:
        self._conn._resumed()

    def connection_lost(self, exc: Exception | None) -> None:
        self._conn._drained()  # the output is gone: nothing waits for the client any more


class _Reader(asyncio.Protocol):
    def __init__(self, conn: ClientConnection) -> None:
        self._conn = conn

    def data_received(self, data: bytes) -> None:
        self._conn._received(data)

    def eof_received(self) -> bool:
        self._conn._closed()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._conn._closed()


class ClientConnection:
    """The daemon's end of its client's stdio: reads framed messages from `in_fd`, writes
    framed messages to `out_fd`. (A client's end of a daemon is `jsonrpc.DaemonConnection`.)

    Writes made during one read burst are joined into a single write. Messages are handled
    one at a time while less than `OUTPUT_HIGH` bytes of output wait for the client; past that,
    the rest wait and nothing more is read until the client has caught up to `OUTPUT_LOW`.
    """

    def __init__(
        self,
        on_messages: Callable[[list[bytes]], None],
        on_close: Callable[[], None],
        on_frame_error: Callable[[str], None],
    ) -> None:
        self._on_messages = on_messages
        self._on_close = on_close
        self._on_frame_error = on_frame_error
        self._framer = Framer()
        self._out: asyncio.WriteTransport | _FileWriter | None = None
        self._pending: collections.deque[bytes] = collections.deque()
        self._pending_size = 0
        self._flush_scheduled = False
        self._inbox: collections.deque[bytes] = collections.deque()  # read, not yet handled
        self._input: asyncio.ReadTransport | None = None
        self._may_read = threading.Event()  # cleared while the output is backed up
        self._may_read.set()
        self._input_ended = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0
        self._closed_once = False

    async def open(self, in_fd: int, out_fd: int) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        if _pollable(out_fd):
            wfile = os.fdopen(out_fd, "wb", buffering=0, closefd=False)
            self._out, _ = await loop.connect_write_pipe(lambda: _Writer(self), wfile)
            # asyncio calls resume_writing once the buffer is down to `low`, but only if it
            # went past `high`: flush stops past _STEP, and reading pauses only past
            # OUTPUT_HIGH, so it does whenever output waits or reading was paused.
            self._out.set_write_buffer_limits(high=_STEP, low=_STEP // 2)
        else:  # a regular file (output kept for reading later): asyncio cannot poll it
            self._out = _FileWriter(out_fd)
        if _pollable(in_fd):
            rfile = os.fdopen(in_fd, "rb", buffering=0, closefd=False)
            self._input, _ = await loop.connect_read_pipe(lambda: _Reader(self), rfile)
        else:  # a regular file (scripted input): asyncio cannot poll it
            threading.Thread(target=self._read_blocking, args=(in_fd,), daemon=True).start()

    def _read_blocking(self, fd: int) -> None:
        assert self._loop is not None
        while True:
            self._may_read.wait()
            data = os.read(fd, 1 << 16)
            if not data:
                self._loop.call_soon_threadsafe(self._closed)
                return
            self._loop.call_soon_threadsafe(self._received, data)

    def _received(self, data: bytes) -> None:
        bodies, errors = self._framer.feed(data)
        for error in errors:
            self._on_frame_error(error)
        self._inbox.extend(bodies)
        self._handle_inbox()

    def _handle_inbox(self) -> None:
        """Handle what was read, one message at a time, until the output backs up."""
        inbox = self._inbox
        while inbox:
            if self._backed_up(OUTPUT_HIGH):
                self._pause()
                return
            self._on_messages([inbox.popleft()])
        if self._input_ended:
            self._end()

    def _backed_up(self, limit: int) -> bool:
        out = self._out
        if out is None or out.is_closing():
            return False
        return self._pending_size + out.get_write_buffer_size() >= limit

    def _pause(self) -> None:
        if self._may_read.is_set():
            self._may_read.clear()
            if self._input is not None:
                self._input.pause_reading()

    def _drained(self) -> None:
        """The client has read enough of the output: handle and read again."""
        if self._may_read.is_set() or self._backed_up(OUTPUT_LOW + 1):
            return
        self._may_read.set()
        if self._input is not None and not self._input_ended:
            self._input.resume_reading()
        self._handle_inbox()

    def _closed(self) -> None:
        self._input_ended = True
        if not self._inbox:  # else once what was read before the end is handled
            self._end()

    def _end(self) -> None:
        if not self._closed_once:
            self._closed_once = True
            if unfinished := self._framer.unfinished():
                log.warning("protocol framing: %s; dropped", unfinished)
            self._on_close()

    def send(self, body: Encoded) -> None:
        """Queue one message body for writing (thread-safe); a large module's is `Chunks`."""
        if isinstance(body, Chunks):
            self._queue((b"Content-Length: %d\r\n\r\n" % body.size, *body))
        else:
            self._queue((frame(body),))

    def write(self, data: bytes) -> None:
        """Queue already framed bytes (pygls' writer interface; thread-safe)."""
        self._queue((data,))

    def _queue(self, pieces: tuple[bytes, ...]) -> None:
        if threading.get_ident() != self._thread and self._loop is not None:
            self._loop.call_soon_threadsafe(self._queue, pieces)
            return
        self._pending.extend(pieces)
        self._pending_size += sum(map(len, pieces))
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write what is queued in steps of about `_STEP`, while the pipe holds no more than
        that unsent: a large module goes out as the client reads it (the rest when the pipe
        drains: `resume_writing`), and the event loop runs between steps."""
        self._flush_scheduled = False
        out, pending = self._out, self._pending
        if out is None or out.is_closing():
            pending.clear()
            self._pending_size = 0
            return
        while pending and out.get_write_buffer_size() <= _STEP:
            batch = [pending.popleft()]
            size = len(batch[0])
            while pending and size + len(pending[0]) <= _STEP:
                batch.append(pending.popleft())
                size += len(batch[-1])
            out.write(batch[0] if len(batch) == 1 else b"".join(batch))
            self._pending_size -= size
        if not self._may_read.is_set():
            self._drained()  # written through at once: no resume_writing may come

    def _resumed(self) -> None:
        """The client read enough of what the pipe held: write more, read again."""
        if self._pending:
            self.flush()
        self._drained()

    def close(self) -> None:
        """pygls calls this on `exit`; the daemon closes the pipe itself when it stops."""
        self.flush()

    async def drain(self) -> None:
        """Flush and wait until the kernel has taken every queued byte."""
        self.flush()
        out = self._out
        if out is None:
            return
        for _ in range(200):
            if out.is_closing() or not self._pending and out.get_write_buffer_size() == 0:
                return
            await asyncio.sleep(0.005)
