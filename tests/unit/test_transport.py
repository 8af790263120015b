"""LSP base-protocol framing: split, joined and broken input."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from vmd.transport import ClientConnection, Framer, frame


def test_messages_split_across_reads_are_reassembled() -> None:
    framer = Framer()
    data = frame(b'{"a":1}') + frame('{"é":2}'.encode())
    bodies: list[bytes] = []
    for i in range(len(data)):
        got, errors = framer.feed(data[i : i + 1])
        assert errors == []
        bodies += got
    assert bodies == [b'{"a":1}', '{"é":2}'.encode()]


def test_content_length_counts_bytes_not_characters() -> None:
    body = '{"x":"\u2028é"}'.encode()
    assert frame(body).startswith(b"Content-Length: %d\r\n" % len(body))


def test_extra_headers_and_case_are_accepted() -> None:
    data = b"content-length: 2\r\nContent-Type: application/vscode-jsonrpc\r\n\r\n{}"
    assert Framer().feed(data) == ([b"{}"], [])


def test_a_header_block_without_length_is_reported_and_skipped() -> None:
    framer = Framer()
    bodies, errors = framer.feed(b"Foo: bar\r\n\r\n" + frame(b"[]"))
    assert bodies == [b"[]"]
    assert errors and "Content-Length" in errors[0]


def test_a_negative_content_length_is_reported_as_bad() -> None:
    bodies, errors = Framer().feed(b"Content-Length: -5\r\n\r\n" + frame(b"{}"))
    assert errors == ["bad Content-Length b' -5'; message dropped"]
    assert bodies == [b"{}"]


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"Content-Length: 10\r\n\r\n{}", "8 bytes short of a message body"),
        (b"Content-Length: 2\n\n{}", "inside a header block"),  # bare LF: never a header end
        (b"", None),
        (frame(b"{}"), None),
    ],
)
def test_input_that_ends_inside_a_message_says_what_was_left(data: bytes, says: str | None) -> None:
    framer = Framer()
    framer.feed(data)
    left = framer.unfinished()
    assert (left is None) if says is None else (left is not None and says in left)


def test_garbage_headers_do_not_lose_the_next_message() -> None:
    bodies, errors = Framer().feed(b"garbage\r\n\r\n" + frame(b"{}"))
    assert bodies == [b"{}"] and len(errors) == 1


async def test_a_burst_is_handled_in_order_and_the_close_comes_after_it(tmp_path: Path) -> None:
    """A client that writes many requests and closes its end at once (a build, a script) has
    every one of them handled, in order, before the daemon hears the input is closed."""
    events: list[object] = []
    closed = asyncio.Event()

    def on_close() -> None:
        events.append("closed")
        closed.set()

    conn = ClientConnection(
        lambda bodies: events.extend(bodies),
        on_close,
        lambda error: events.append(f"error: {error}"),
    )
    read_fd, write_fd = os.pipe()
    out = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT)
    sent = [b'{"n":%d}' % i for i in range(100)]
    os.write(write_fd, b"".join(frame(body) for body in sent[:50]) + b"Bogus: 1\r\n\r\n")
    os.write(write_fd, b"".join(frame(body) for body in sent[50:]))
    os.close(write_fd)
    await conn.open(read_fd, out)
    await asyncio.wait_for(closed.wait(), 10)
    error = "error: header without Content-Length; message dropped"
    assert [event for event in events if event != error] == [*sent, "closed"]
    assert events.count(error) == 1
    os.close(read_fd)
    os.close(out)
