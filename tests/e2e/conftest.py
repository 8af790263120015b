"""Shared fixtures for end-to-end tests: a throwaway project and started daemons on it.

The harness itself (`Daemon`, `Project`...) lives in `harness.py` so test modules can import it
by a name that does not collide with `tests/conftest.py`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from harness import Daemon, Project, StartDaemon, initialize_params, spawn_daemon


@pytest.fixture
def project(tmp_path: Path) -> Project:
    root = Path(os.path.realpath(tmp_path)) / "proj"
    root.mkdir()
    return Project(root)


@pytest.fixture
async def start_daemon(project: Project) -> AsyncIterator[StartDaemon]:
    """Start initialized daemons on `project` (or another root); all are stopped at the end.

    Keyword arguments: `options` (initializationOptions), `capabilities`, `process_id`,
    `root` (default: the project root), `initialize=False` to skip the handshake, `cwd` (the
    daemon's working directory; default: the test's), `env` (added to its environment).
    """
    started: list[Daemon] = []

    async def start(
        *,
        options: dict[str, Any] | None = None,
        capabilities: dict[str, Any] | None = None,
        process_id: int | None = None,
        root: Path | None = project.root,
        initialize: bool = True,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> Daemon:
        daemon = await spawn_daemon(cwd, env=env)
        started.append(daemon)
        if initialize:
            params = initialize_params(root, options=options, capabilities=capabilities,
                                       process_id=process_id)
            await daemon.call("initialize", params)
            daemon.notify("initialized", {})
        return daemon

    try:
        yield start
    finally:
        for daemon in started:
            await daemon.close()


@pytest.fixture
async def daemon(start_daemon: StartDaemon) -> Daemon:
    """A daemon on the project root in serve mode with default options."""
    return await start_daemon()
