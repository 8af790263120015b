"""Back-pressure: a client pipelining requests without reading the answers makes the daemon stop
reading once a bounded amount of output waits (`vmd.transport.OUTPUT_HIGH`), instead of
buffering every answer; once the client reads, every request is answered, in order."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from harness import ENV, Project, initialize_params

from vmd.transport import OUTPUT_HIGH

BIG = "import json\n\ndef load(ctx):\n    return 'export default ' + json.dumps('x' * (1 << 20))\n"
REQUESTS = 200
PAD = "p" * 100_000  # ignored by the daemon: makes the requests themselves take room


def framed(message: object) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


async def read_message(stdout: asyncio.StreamReader) -> dict[str, object]:
    header = await stdout.readuntil(b"\r\n\r\n")
    length = int(header.split(b":")[1].split(b"\r\n")[0])
    return json.loads(await stdout.readexactly(length))  # type: ignore[no-any-return]


async def test_unread_answers_stop_the_daemon_reading_and_all_arrive_once_read(
    project: Project,
) -> None:
    loader = project.write("src/big.vmd.py", BIG)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vmd", "serve", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, env=ENV, start_new_session=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(framed({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                                 "params": initialize_params(Path(project.root))}))
        proc.stdin.write(framed({"jsonrpc": "2.0", "id": -1, "method": "vmd/load",
                                 "params": {"id": loader}}))
        for _ in range(2):  # the handshake, and the module run once: answers are cached now
            while "id" not in await read_message(proc.stdout):
                pass
        sent = 0
        for n in range(1, REQUESTS + 1):
            request = framed({"jsonrpc": "2.0", "id": n, "method": "vmd/load",
                              "params": {"id": loader, "pad": PAD}})
            proc.stdin.write(request)
            sent += len(request)
        # Not reading: the daemon stops taking requests once the answers back up.
        unread = proc.stdin.transport.get_write_buffer_size()  # type: ignore[attr-defined]
        for _ in range(50):
            await asyncio.sleep(0.1)
            now = proc.stdin.transport.get_write_buffer_size()  # type: ignore[attr-defined]
            if now == unread and _ > 10:
                break
            unread = now
        answered = REQUESTS - unread // len(request)
        # Roughly OUTPUT_HIGH of 1 MiB answers were taken (plus what the pipes hold); without
        # back-pressure every request is read and every answer buffered in the daemon.
        assert unread > sent // 3, (unread, sent)
        assert answered < 2 * (OUTPUT_HIGH >> 20), answered
        ids = []
        while len(ids) < REQUESTS:
            message = await read_message(proc.stdout)
            if "id" in message:
                assert len(message["result"]["code"]) > 1 << 20  # type: ignore[index]
                ids.append(message["id"])
        assert ids == list(range(1, REQUESTS + 1))
        proc.stdin.write(framed({"jsonrpc": "2.0", "id": "bye", "method": "shutdown"}))
        while (await read_message(proc.stdout)).get("id") != "bye":
            pass
        proc.stdin.write(framed({"jsonrpc": "2.0", "method": "exit"}))
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
