"""A deliberately lean JSON-RPC peer for benchmarks: blocking pipes, msgspec, no asyncio.

The benchmarks measure the daemon, so the client side must cost as little as possible; the
real client (`vmd.client`) is exercised by the tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

from vmd.transport import Framer, frame

_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder()


class Peer:
    """A spawned `vmd serve` and a blocking message pump over its pipes."""

    def __init__(
        self,
        root: Path,
        options: dict[str, Any] | None = None,
        python: str = sys.executable,
        env: dict[str, str] | None = None,
    ) -> None:
        self.proc = subprocess.Popen(
            [python, "-m", "vmd", "serve", "--log-level", "warning"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=root,
            env=env,
        )
        assert self.proc.stdin and self.proc.stdout
        self._in = self.proc.stdin.fileno()
        self._out = self.proc.stdout.fileno()
        self._framer = Framer()
        self._queue: list[Any] = []
        self._next = 0
        self.notifications: list[Any] = []
        self.root = root
        self.options = options or {}

    def initialize(self) -> float:
        """Send initialize and wait for its answer; returns seconds taken."""
        t = time.perf_counter()
        self.request(
            "initialize",
            {
                "processId": os.getpid(),
                "rootUri": self.root.as_uri(),
                "capabilities": {},
                "initializationOptions": self.options,
            },
        )
        took = time.perf_counter() - t
        self.notify("initialized", {})
        return took

    def send(self, message: dict[str, Any]) -> None:
        os.write(self._in, frame(_enc.encode(message)))

    def send_many(self, messages: list[bytes]) -> None:
        os.write(self._in, b"".join(messages))

    def encode_request(self, method: str, params: Any) -> bytes:
        self._next += 1
        msg = {"jsonrpc": "2.0", "id": self._next, "method": method, "params": params}
        return frame(_enc.encode(msg))

    def notify(self, method: str, params: Any) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def request(self, method: str, params: Any) -> Any:
        os.write(self._in, self.encode_request(method, params))
        want = self._next
        while True:
            msg = self.read()
            if msg.get("id") == want and "method" not in msg:
                if "error" in msg:
                    raise RuntimeError(msg["error"])
                return msg["result"]

    def _fill(self) -> None:
        data = os.read(self._out, 1 << 20)
        if not data:
            raise EOFError("daemon closed its stdout")
        bodies, _ = self._framer.feed(data)
        self._queue.extend(_dec.decode(b) for b in bodies)

    def read(self) -> Any:
        """The next message from the daemon; notifications are also kept in `notifications`."""
        while not self._queue:
            self._fill()
        msg = self._queue.pop(0)
        if "method" in msg and "id" not in msg:
            self.notifications.append(msg)
        elif "method" in msg:  # a server->client request: answer null
            self.send({"jsonrpc": "2.0", "id": msg["id"], "result": None})
        return msg

    def read_responses(self) -> list[Any]:
        """Every response available in one read (at least one)."""
        while True:
            out = [m for m in self._queue if "id" in m and "method" not in m]
            # The rest as read() handles them: left in the queue, they would make this loop
            # spin without ever reading again (a failing loader publishes diagnostics).
            for msg in self._queue:
                if "method" in msg and "id" not in msg:
                    self.notifications.append(msg)
                elif "method" in msg:
                    self.send({"jsonrpc": "2.0", "id": msg["id"], "result": None})
            self._queue = []
            if out:
                return out
            self._fill()

    def wait_for(self, method: str, timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        for i, msg in enumerate(self.notifications):
            if msg["method"] == method:
                return self.notifications.pop(i)
        while time.monotonic() < deadline:
            msg = self.read()
            if msg.get("method") == method:
                self.notifications.remove(msg)
                return msg
        raise TimeoutError(method)

    def close(self) -> None:
        try:
            self.request("shutdown", None)
            self.notify("exit", None)
            self.proc.wait(5)
        except Exception:
            self.proc.kill()
            self.proc.wait()


def median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p))]
