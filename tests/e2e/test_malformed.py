"""Malformed messages get JSON-RPC errors and change nothing: the daemon keeps answering."""

from __future__ import annotations

import json
import os
from typing import Any

from harness import WAIT, Daemon, Project, eventually

OK = "def load(ctx):\n    return 'export default 1;'\n"


def framed(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


async def orphan(daemon: Daemon, count: int) -> dict[str, Any]:
    """Wait for the `count`-th response that answers no request we made (id null errors)."""
    await eventually(lambda: len(daemon.orphans) >= count, timeout=WAIT)
    return daemon.orphans[count - 1]


async def still_serves(project: Project, daemon: Daemon) -> None:
    loader = project.write("src/ok.vmd.py", OK)
    assert (await daemon.load(loader))["code"] == "export default 1;"


async def test_invalid_json_is_a_parse_error_and_the_daemon_keeps_answering(
    project: Project, daemon: Daemon
) -> None:
    daemon.send_raw(framed(b'{"jsonrpc": "2.0", "id": 1, "method": '))
    error = await orphan(daemon, 1)
    assert error["id"] is None
    assert error["error"]["code"] == -32700
    await still_serves(project, daemon)


async def test_json_that_is_not_a_request_object_is_an_invalid_request(
    project: Project, daemon: Daemon
) -> None:
    bodies = [b"[]", b"[1, 2]", b"42", b'"text"', b"null", b"{}", b'{"jsonrpc": "2.0"}']
    for n, body in enumerate(bodies, 1):
        daemon.send_raw(framed(body))
        error = await orphan(daemon, n)
        assert error["error"]["code"] == -32600, (body, error)
    await still_serves(project, daemon)


async def test_missing_jsonrpc_version_is_an_invalid_request(
    project: Project, daemon: Daemon
) -> None:
    loader = project.write("src/ok.vmd.py", OK)
    daemon.send_raw(framed(json.dumps(
        {"id": "no-version", "method": "vmd/load", "params": {"id": loader}}
    ).encode()))
    daemon.send_raw(framed(json.dumps(
        {"jsonrpc": "1.0", "id": "old-version", "method": "vmd/load", "params": {"id": loader}}
    ).encode()))
    first, second = await orphan(daemon, 1), await orphan(daemon, 2)
    assert (first["id"], first["error"]["code"]) == ("no-version", -32600)
    assert (second["id"], second["error"]["code"]) == ("old-version", -32600)
    await still_serves(project, daemon)


async def test_bad_params_are_invalid_params_naming_the_field(
    project: Project, daemon: Daemon
) -> None:
    cases: list[tuple[str, Any, str | None]] = [
        ("vmd/load", None, None),
        ("vmd/load", {}, "id"),
        ("vmd/load", {"id": 42}, "id"),
        ("vmd/load", {"id": None}, "id"),
        ("vmd/load", [], None),
        ("vmd/load", "x", None),
        ("vmd/reload", {"data": 1}, "id"),
        ("vmd/reload", {"id": ["a"]}, "id"),
        ("vmd/invalidate", {"id": 3}, "id"),
        ("vmd/invalidate", {"path": {}}, "path"),
        ("vmd/loadMany", {}, "ids"),
        ("vmd/loadMany", {"ids": "a.vmd.py"}, "ids"),
        ("vmd/loadMany", {"ids": ["a.vmd.py", 7]}, "ids[1]"),
    ]
    for method, params, field in cases:
        response = await daemon.exchange(method, params)
        assert response["error"]["code"] == -32602, (method, params, response)
        if field is not None:
            message = response["error"]["message"]
            assert f"`{field}`" in message or f"`$.{field}`" in message, message
    await still_serves(project, daemon)


async def test_reload_data_a_loader_cannot_be_given_is_invalid_params_and_changes_nothing(
    project: Project, daemon: Daemon
) -> None:
    loader = project.write(
        "src/a.vmd.py", "import vmd\ndef load(ctx):\n    return vmd.json_module(ctx.data)\n"
    )
    first = await daemon.load(loader)
    mark = daemon.mark()
    response = await daemon.exchange("vmd/reload", {"id": loader, "data": {"n": 10**23}})
    assert response["error"]["code"] == -32602, response  # an int beyond 64 bits
    assert "data cannot be given to a loader" in response["error"]["message"]
    await daemon.roundtrip()
    assert daemon.notifications("vmd/changed", since=mark) == []
    assert await daemon.load(loader) == first
    await still_serves(project, daemon)


async def test_load_without_params_is_invalid_params(project: Project, daemon: Daemon) -> None:
    response = await daemon.exchange("vmd/load", omit_params=True)
    assert response["error"]["code"] == -32602
    await still_serves(project, daemon)


async def test_invalidate_needs_exactly_one_of_id_and_path(
    project: Project, daemon: Daemon
) -> None:
    for params in ({}, {"id": "/a.vmd.py", "path": "/a.txt"}):
        response = await daemon.exchange("vmd/invalidate", params)
        assert response["error"]["code"] == -32602, response
        assert "id" in response["error"]["message"] and "path" in response["error"]["message"]


async def test_unknown_vmd_method_is_method_not_found(project: Project, daemon: Daemon) -> None:
    response = await daemon.exchange("vmd/foo", {"id": "x"})
    assert response["error"]["code"] == -32601
    assert "vmd/foo" in response["error"]["message"]
    await still_serves(project, daemon)


async def test_unknown_notification_is_ignored(project: Project, daemon: Daemon) -> None:
    daemon.notify("vmd/foo", {"x": 1})
    daemon.notify("custom/whatever", None)
    await still_serves(project, daemon)
    assert daemon.orphans == []


async def test_broken_header_block_is_an_error_and_the_next_message_is_handled(
    project: Project, daemon: Daemon
) -> None:
    loader = project.write("src/ok.vmd.py", OK)
    daemon.send_raw(b"Content-Type: application/json\r\n\r\n")  # no Content-Length
    daemon.send_raw(b"this is not a header\r\n\r\n")
    daemon.send_raw(b"Content-Length: many\r\n\r\n")
    first = await orphan(daemon, 1)
    assert (first["id"], first["error"]["code"]) == (None, -32700)
    await eventually(lambda: len(daemon.orphans) == 3)
    assert (await daemon.load(loader))["version"] == 1


async def test_message_split_across_writes_is_reassembled(
    project: Project, daemon: Daemon
) -> None:
    loader = project.write("src/ok.vmd.py", OK)
    body = json.dumps({"jsonrpc": "2.0", "id": "split", "method": "vmd/load",
                       "params": {"id": loader}}).encode()
    data = framed(body)
    for i in range(0, len(data), 7):
        daemon.send_raw(data[i : i + 7])
        await daemon.proc.stdin.drain()  # type: ignore[union-attr]
    response = await orphan(daemon, 1)  # "split" is not an id the harness allocated
    assert response["id"] == "split"
    assert response["result"]["version"] == 1


async def test_several_messages_in_one_write_are_all_answered(
    project: Project, daemon: Daemon
) -> None:
    loader = project.write("src/ok.vmd.py", OK)
    data = b"".join(
        framed(json.dumps({"jsonrpc": "2.0", "id": f"m{i}", "method": "vmd/load",
                           "params": {"id": loader}}).encode())
        for i in range(5)
    )
    daemon.send_raw(data)
    await eventually(lambda: len(daemon.orphans) == 5)
    assert sorted(r["id"] for r in daemon.orphans) == [f"m{i}" for i in range(5)]
    assert all(r["result"]["code"] == "export default 1;" for r in daemon.orphans)


async def test_huge_and_unicode_request_ids_are_echoed_exactly(
    project: Project, daemon: Daemon
) -> None:
    loader = project.write("src/ok.vmd.py", OK)
    ids = ["x" * 200_000, "ünïcødé ✓ 🚀 \u2028", "", -7, 2**53]
    for msg_id in ids:
        daemon.send({"jsonrpc": "2.0", "id": msg_id, "method": "vmd/load",
                     "params": {"id": loader}})
    await eventually(lambda: len(daemon.orphans) == len(ids))
    assert [r["id"] for r in daemon.orphans] == ids
    assert all(r["result"]["id"] == loader for r in daemon.orphans)


async def test_unicode_module_ids_and_queries_are_keyed_exactly(
    project: Project, daemon: Daemon
) -> None:
    loader = project.write(
        "src/ünï/çødé.vmd.py",
        "import vmd\n\ndef load(ctx):\n    return vmd.json_module(ctx.query)\n",
    )
    id = loader + "?name=✓🚀&q=a%20b"
    result = await daemon.load(id)
    assert result["id"] == id
    assert json.loads(json.loads(result["code"][len("export default JSON.parse("):-3])) == {
        "name": "✓🚀", "q": "a b"
    }


async def test_invalid_utf8_in_a_request_is_a_parse_error_answered_to_its_id(
    project: Project, daemon: Daemon
) -> None:
    daemon.send_raw(
        framed(b'{"jsonrpc":"2.0","id":"bad","method":"vmd/load","params":{"id":"/\xff"}}')
    )
    error = await orphan(daemon, 1)
    assert (error["id"], error["error"]["code"]) == ("bad", -32700)
    daemon.send_raw(framed(b'{"jsonrpc":"2.0","id":"bad2","method":"\xff"}'))
    error = await orphan(daemon, 2)
    assert error["error"]["code"] == -32700
    await still_serves(project, daemon)


async def test_json_nested_too_deep_is_a_parse_error_and_the_daemon_keeps_answering(
    project: Project, daemon: Daemon
) -> None:
    deep = b"[" * 5000 + b"]" * 5000
    daemon.send_raw(framed(b'{"jsonrpc":"2.0","id":7,"method":"vmd/load","params":' + deep + b"}"))
    daemon.send_raw(framed(b'{"jsonrpc":"2.0","id":' + deep + b',"method":"vmd/load"}'))
    for n in (1, 2):
        error = await orphan(daemon, n)
        assert (error["id"], error["error"]["code"]) == (None, -32700)
    await still_serves(project, daemon)


async def test_a_string_id_that_is_not_utf8_is_never_echoed(
    project: Project, daemon: Daemon
) -> None:
    loader = project.write("src/ok.vmd.py", OK)
    daemon.send_raw(framed(
        b'{"jsonrpc":"2.0","id":"\xff\xfe","method":"vmd/load","params":{"id":"'
        + loader.encode() + b'"}}'
    ))
    error = await orphan(daemon, 1)  # the harness read it as UTF-8 JSON
    assert (error["id"], error["error"]["code"]) == (None, -32700)
    await still_serves(project, daemon)


async def test_a_loader_error_naming_a_file_that_is_not_utf8_keeps_its_type_and_line(
    project: Project, daemon: Daemon
) -> None:
    folder = project.path("src/odd")
    os.makedirs(folder)
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.txt"), "w"):
        pass
    loader = project.write(
        "src/odd.vmd.py",
        "import os\n\ndef load(ctx):\n"
        "    (name,) = os.listdir(ctx.path.parent / 'odd')\n"
        "    raise ValueError(f'cannot read {name}')\n",
    )
    error = await daemon.load_error(loader)
    assert error.message.endswith("ValueError: cannot read caf\\udce9.txt")
    assert (error.data["file"], error.data["line"]) == (loader, 5)
