"""The daemon's own requests to its client (refreshes, progress tokens)."""

from __future__ import annotations

import asyncio

from vmd.server import VmdServer


async def test_a_request_the_client_never_answers_is_forgotten_once_given_up() -> None:
    server = VmdServer()
    future = server.request("workspace/textDocumentContent/refresh", {"uri": "vmd:/x"})
    assert len(server._waiting) == 1
    try:
        await asyncio.wait_for(future, 0.01)  # what the daemon's callers do, with a longer wait
    except asyncio.TimeoutError:
        pass
    await asyncio.sleep(0)
    assert server._waiting == {}


async def test_an_answered_request_resolves_and_is_forgotten() -> None:
    server = VmdServer()
    future = server.request("window/workDoneProgress/create", {"token": "t"})
    [key] = server._waiting
    answer = b'{"jsonrpc":"2.0","id":"%s","result":null}' % key.encode()
    server._response(b'"%s"' % key.encode(), answer)
    assert await future == answer
    assert server._waiting == {}
