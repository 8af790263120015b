"""The vmd: URI form of module ids (protocol.md, "Preview documents")."""

from __future__ import annotations

import pytest
from pygls.exceptions import JsonRpcInvalidParams

from vmd.editor import id_to_uri, target_to_id, uri_to_id


@pytest.mark.parametrize(
    ("id", "uri"),
    [
        ("/proj/src/users.vmd.py", "vmd:/proj/src/users.vmd.py"),
        ("/proj/src/users.vmd.py?type=admin", "vmd:/proj/src/users.vmd.py?type=admin"),
        ("/proj/my src/ü.vmd.py", "vmd:/proj/my%20src/%C3%BC.vmd.py"),
        ("/p/a.vmd.py?q=a%20b&x=1", "vmd:/p/a.vmd.py?q=a%2520b&x=1"),
        ("/p/100%.vmd.py?", "vmd:/p/100%25.vmd.py?"),
        ("/p/a.vmd.py?q=?x", "vmd:/p/a.vmd.py?q=?x"),
    ],
)
def test_ids_and_vmd_uris_round_trip(id: str, uri: str) -> None:
    assert id_to_uri(id) == uri
    assert uri_to_id(uri) == id


def test_an_editor_that_encodes_more_still_names_the_same_id() -> None:
    # VS Code's Uri.toString() encodes `=` and `&` in queries.
    assert uri_to_id("vmd:/proj/a.vmd.py?type%3Dadmin%26x%3D1") == "/proj/a.vmd.py?type=admin&x=1"


@pytest.mark.parametrize("uri", ["file:///a.vmd.py", "vmd://host/a.vmd.py", "vmd:/a#b", "vmd:"])
def test_other_uris_are_rejected(uri: str) -> None:
    with pytest.raises(ValueError):
        uri_to_id(uri)


def test_command_targets_name_a_module_id() -> None:
    assert target_to_id("/p/a.vmd.py?x=1") == "/p/a.vmd.py?x=1"
    assert target_to_id("file:///p/my%20a.vmd.py") == "/p/my a.vmd.py"
    assert target_to_id("vmd:/p/a.vmd.py?x=1") == "/p/a.vmd.py?x=1"
    assert target_to_id({"id": "/p/a.vmd.py"}) == "/p/a.vmd.py"
    assert target_to_id({"uri": "file:///p/a.vmd.py"}) == "/p/a.vmd.py"


@pytest.mark.parametrize("target", ["vmd://x/y", "vmd:/tmp/a#b", None, 3, ""])
def test_a_malformed_command_target_is_invalid_params_not_an_internal_error(
    target: object,
) -> None:
    with pytest.raises(JsonRpcInvalidParams):
        target_to_id(target)
