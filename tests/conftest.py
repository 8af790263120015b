"""Shared fixtures: a WorkerPool driving real worker processes over loaders in tmp_path."""

from __future__ import annotations

import asyncio
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from vmd.workers import ipc
from vmd.workers.pool import WorkerPool


class Workers:
    """A WorkerPool rooted at a temporary project, recording what it logs and reloads."""

    def __init__(
        self,
        root: Path,
        *,
        timeout_ms: int,
        max_workers: int,
        extra_roots: list[str],
        mode: str = "serve",
        max_starts: int | None = None,
    ) -> None:
        self.root = root
        self.logs: list[tuple[str, str]] = []  # (loader, line), however the lines came
        self.reloads: list[tuple[str, Any]] = []
        self.pool = WorkerPool(
            roots=[str(root), *extra_roots],
            mode=mode,
            timeout_ms=timeout_ms,
            max_workers=max_workers,
            max_starts=max_starts,
            on_log=lambda loader, text: self.logs.extend((loader, t) for t in text.split("\n")),
            on_reload=lambda id, data: self.reloads.append((id, data)),
        )

    def write(self, rel: str, text: str) -> str:
        """Write a dedented file under the project; return its absolute path."""
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return str(path)

    async def run(
        self,
        loader: str,
        query: str = "",
        events: list[tuple[str, str]] | None = None,
        data: Any = None,
    ) -> ipc.Done:
        """Run module `loader?query`."""
        params = dict(p.split("=", 1) for p in query.split("&")) if query else {}
        id = f"{loader}?{query}" if query else loader
        return await self.pool.run(loader, id, params, events or [], data)

    async def until(self, predicate: Callable[[], Any], timeout: float = 5.0) -> None:
        """Wait until `predicate()` is true (polling), failing after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {predicate}")
            await asyncio.sleep(0.01)


@pytest.fixture
async def make_workers(tmp_path: Path) -> AsyncIterator[Callable[..., Workers]]:
    """Build started-on-first-use Workers harnesses; all are closed (and killed) at the end."""
    made: list[Workers] = []

    def make(
        *,
        timeout_ms: int = 10_000,
        max_workers: int = 4,
        extra_roots: list[str] | None = None,
        mode: str = "serve",
        max_starts: int = 4,
    ) -> Workers:
        # max_starts is fixed, not the machine's CPU count: tests behave alike on any machine.
        harness = Workers(
            tmp_path,
            timeout_ms=timeout_ms,
            max_workers=max_workers,
            extra_roots=extra_roots or [],
            mode=mode,
            max_starts=max_starts,
        )
        made.append(harness)
        return harness

    try:
        yield make
    finally:
        for harness in made:
            try:
                await harness.pool.close()
            finally:
                harness.pool.kill_all()


@pytest.fixture
async def workers(make_workers: Callable[..., Workers]) -> Workers:
    """A started Workers harness with a generous timeout."""
    harness: Workers = make_workers()
    await harness.pool.start()
    return harness
