"""protocol.md must document exactly the fields vmd/protocol.py defines."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from vmd import errors, protocol

DOC = (Path(__file__).parents[2] / "protocol.md").read_text(encoding="utf-8")


def _table(name: str) -> dict[str, str]:
    marker = f"<!-- struct: {name} -->"
    assert marker in DOC, f"protocol.md has no table for {name}"
    rows = DOC.split(marker, 1)[1].strip().splitlines()
    fields: dict[str, str] = {}
    for row in rows[2:]:
        if not row.startswith("|"):
            break
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]
        fields[cells[0].strip("`")] = cells[2]
    return fields


@pytest.mark.parametrize("name", sorted(protocol.DOCUMENTED))
def test_every_wire_field_is_documented_with_its_requiredness(name: str) -> None:
    struct = protocol.DOCUMENTED[name]
    documented = _table(name)
    fields = msgspec.structs.fields(struct)
    assert set(documented) == {f.encode_name for f in fields}
    for field in fields:
        required = field.required
        assert (documented[field.encode_name] == "required") == required, field.encode_name


@pytest.mark.parametrize(
    "method",
    [
        protocol.LOAD, protocol.LOAD_MANY, protocol.RELOAD, protocol.INVALIDATE,
        protocol.CHANGED, protocol.BUSY, "$/cancelRequest",
    ],
)
def test_every_method_has_a_section(method: str) -> None:
    assert f"### `{method}`" in DOC


@pytest.mark.parametrize(
    "code",
    [errors.LOADER_FAILED, errors.LOADER_TIMEOUT, errors.LOADER_CRASHED, errors.REFUSED,
     protocol.REQUEST_CANCELLED],
)
def test_every_error_code_is_documented(code: int) -> None:
    assert f"| `{code}` |" in DOC
