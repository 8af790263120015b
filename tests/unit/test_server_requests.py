"""The daemon's own requests to its client (refreshes, progress tokens)."""

from __future__ import annotations

import asyncio
import json

import pytest

from vmd.server import VmdServer


async def test_a_request_the_client_never_answers_is_forgotten_once_given_up() -> None:
    server = VmdServer()
    future = server.request("workspace/textDocumentContent/refresh", {"uri": "vmd:/x"})
    assert server.rpc.unanswered == 1
    try:
        await asyncio.wait_for(future, 0.01)  # what the daemon's callers do, with a longer wait
    except asyncio.TimeoutError:
        pass
    await asyncio.sleep(0)
    assert server.rpc.unanswered == 0


async def test_an_answered_request_resolves_and_is_forgotten(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = VmdServer()
    sent: list[bytes] = []
    monkeypatch.setattr(server.rpc.conn, "send", sent.append)
    future = server.request("window/workDoneProgress/create", {"token": "t"})
    [request] = sent
    key = json.dumps(json.loads(request)["id"]).encode()
    answer = b'{"jsonrpc":"2.0","id":%s,"result":null}' % key
    assert server.rpc.response(key, answer)
    assert await future == answer
    assert server.rpc.unanswered == 0
