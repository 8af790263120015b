"""LSP base-protocol framing: split, joined and broken input."""

from __future__ import annotations

from vmd.transport import Framer, frame


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


def test_garbage_headers_do_not_lose_the_next_message() -> None:
    bodies, errors = Framer().feed(b"garbage\r\n\r\n" + frame(b"{}"))
    assert bodies == [b"{}"] and len(errors) == 1
