"""vmd.client against a scripted stand-in daemon (tests/fixtures/fake_daemon.py).

The real daemon is exercised in tests/e2e/test_client.py; these pin the transport's behaviour in
cases a real daemon cannot be made to produce on demand (dying mid-request, odd requests).
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from vmd.client import AsyncClient, Client, ConnectionClosed, ProtocolError
from vmd.errors import LoaderError

FAKE = Path(__file__).parent.parent / "fixtures" / "fake_daemon.py"


@pytest.fixture
def fake_python(tmp_path: Path) -> str:
    """An "interpreter" that runs the fake daemon whatever `-m vmd serve` it is given."""
    script = tmp_path / "fake-python"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


@pytest.fixture
async def client(tmp_path: Path, fake_python: str) -> AsyncIterator[AsyncClient]:
    c = await AsyncClient.start(tmp_path, python=fake_python, include=["*.vmd.py"], timeout_ms=5)
    yield c
    await c.close()


async def test_initialize_sends_root_pid_and_only_the_given_options(
    tmp_path: Path, client: AsyncClient
) -> None:
    params = client.initialize_result["echo"]
    assert params["processId"] == os.getpid()
    assert params["rootUri"] == tmp_path.resolve().as_uri()
    assert params["workspaceFolders"][0]["uri"] == tmp_path.resolve().as_uri()
    assert params["initializationOptions"] == {
        "mode": "serve",
        "include": ["*.vmd.py"],
        "timeoutMs": 5,
    }


async def test_load_decodes_the_result(client: AsyncClient) -> None:
    result = await client.load("/p/a.vmd.py")
    assert (result.id, result.version, result.dependencies) == ("/p/a.vmd.py", 1, ["/p/a.vmd.py"])


async def test_loader_error_raises_the_typed_error_with_file_and_line(client: AsyncClient) -> None:
    with pytest.raises(LoaderError) as info:
        await client.load("/p/bad.vmd.py")
    assert (info.value.file, info.value.line, info.value.id) == (
        "/p/bad.vmd.py",
        3,
        "/p/bad.vmd.py",
    )
    assert "ValueError: boom" in info.value.traceback
    assert str(info.value) == "/p/bad.vmd.py:3: boom"


async def test_other_error_raises_protocol_error(client: AsyncClient) -> None:
    with pytest.raises(ProtocolError) as info:
        await client.load("proto")
    assert (info.value.code, info.value.message) == (-32602, "bad params")


async def test_server_requests_are_answered(client: AsyncClient) -> None:
    answers = await client.request("test/ask", {})
    assert answers[0] is None
    assert answers[1] == [None, None]
    assert answers[2] is None
    assert answers[3]["code"] == -32601


async def test_notifications_reach_callbacks_and_change_streams(client: AsyncClient) -> None:
    logs: list[Any] = []
    diagnostics: list[Any] = []
    client.on_log = logs.append
    client.on_diagnostics = diagnostics.append
    changes = client.changes()
    assert await client.request("test/notify", {}) == "sent"
    change = await asyncio.wait_for(changes.__anext__(), 5)
    assert (change.id, change.version, change.reason) == ("/x.vmd.py", 2, "watch")
    assert logs == [{"type": 4, "message": "hello"}]
    assert diagnostics == [{"uri": "file:///x", "diagnostics": []}]


async def test_daemon_death_fails_pending_requests_with_the_exit_code(
    client: AsyncClient,
) -> None:
    hanging = asyncio.ensure_future(client.request("test/hang", {}))
    changes = client.changes()
    with pytest.raises(ConnectionClosed, match="exited with code 3") as info:
        await client.request("test/die", {})
    assert info.value.returncode == 3
    with pytest.raises(ConnectionClosed, match="exited with code 3"):
        await hanging
    with pytest.raises(ConnectionClosed, match="exited with code 3"):
        await client.load("/p/a.vmd.py")
    assert [c async for c in changes] == []
    assert client.closed


async def test_close_shuts_the_daemon_down_and_later_calls_fail_fast(
    tmp_path: Path, fake_python: str
) -> None:
    c = await AsyncClient.start(tmp_path, python=fake_python)
    await c.close()
    assert c.process.returncode == 0
    with pytest.raises(ConnectionClosed, match="closed"):
        await c.load("/p/a.vmd.py")
    await c.close()  # idempotent


async def test_daemon_that_fails_to_start_raises_connection_closed(tmp_path: Path) -> None:
    with pytest.raises(ConnectionClosed, match="exited with code 1"):
        await AsyncClient.start(tmp_path, python="false")


def test_sync_client_mirrors_the_async_one(tmp_path: Path, fake_python: str) -> None:
    with Client(tmp_path, python=fake_python) as c:
        assert c.load("/p/a.vmd.py").version == 1
        with pytest.raises(LoaderError):
            c.load("/p/bad.vmd.py")
        changes = c.changes()
        c.request("test/notify", {})
        assert changes.get(timeout=5).version == 2
        changes.close()
    assert c.closed
    with pytest.raises(ConnectionClosed):
        c.load("/p/a.vmd.py")
