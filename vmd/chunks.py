"""Encoded JSON in pieces: a module of hundreds of MB is never copied into one buffer on the
event loop. The worker encodes its code as a JSON string and sends it in parts; the daemon keeps
the parts, puts its own JSON around them, and writes them to the client one after another.
"""

from __future__ import annotations

from collections.abc import Iterable

# Code longer than this (characters) travels in parts of at most PART bytes.
LARGE = 1 << 20
PART = 1 << 20


class Chunks(tuple[bytes, ...]):
    """One JSON value as the concatenation of its pieces."""

    __slots__ = ()

    @property
    def size(self) -> int:
        return sum(len(piece) for piece in self)


Encoded = bytes | Chunks


def join(pieces: Iterable[Encoded]) -> Encoded:
    """`pieces` concatenated: bytes when all are bytes, else their pieces (not copied)."""
    flat: list[bytes] = []
    chunked = False
    for piece in pieces:
        if isinstance(piece, Chunks):
            flat.extend(piece)
            chunked = True
        else:
            flat.append(piece)
    return Chunks(flat) if chunked else b"".join(flat)


def embed(encoded: bytes, field: bytes, pieces: list[bytes]) -> Chunks:
    """`encoded`, a JSON object whose string `field` is empty, with `pieces` (a JSON string,
    quotes included) as that field's value. The first `"field":""` is the field: inside a
    string value, quotes are escaped."""
    head, found, tail = encoded.partition(b'"%s":""' % field)
    assert found, f"no empty {field!r} in the encoded object"
    return Chunks((head + b'"%s":' % field, *pieces, tail))


def split(data: bytes, size: int = PART) -> list[bytes]:
    """`data` in parts of at most `size` bytes."""
    return [data[at : at + size] for at in range(0, len(data), size)]
