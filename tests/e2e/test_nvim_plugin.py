"""The Neovim plugin (clients/editor/nvim) end to end: real headless Neovim, real daemon.

The steps are in clients/editor/nvim/tests/e2e.lua; this test sets up the project and runs it.
Skipped only when Neovim is missing outside CI (./scripts/test installs it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from harness import REPO, Project

NVIM = shutil.which("nvim")
PLUGIN = REPO / "clients" / "editor" / "nvim"

pytestmark = pytest.mark.skipif(
    NVIM is None and not os.environ.get("CI"), reason="nvim is not installed"
)

USERS = """
import vmd

watch = ["data/*.csv"]

def load(ctx):
    names = [(ctx.path.parent / f).read_text().strip() for f in ctx.watched_files]
    return vmd.json_module({"kind": ctx.query.get("type", "all"), "names": names})
"""


def test_preview_follows_watched_files_and_errors_show_at_their_line(
    project: Project, tmp_path: Path
) -> None:
    assert NVIM is not None, "nvim is required in CI"
    project.write("pyproject.toml", "")
    project.write("src/data/a.csv", "ada\n")
    project.write("src/data/b.csv", "bob\n")
    project.write("src/users.vmd.py", USERS)
    project.write("src/other.vmd.py", "def load(ctx):\n    return 'export default 0;'\n")
    project.write("loaders/extra.py", "def load(ctx):\n    return 'export default 1;'\n")
    project.write("second/pyproject.toml", "")  # a root of its own
    project.write("second/b.vmd.py", "def load(ctx):\n    return 'export default \"b\";'\n")
    env = {
        **os.environ,
        "VMD_PROJECT": str(project.root),
        "VMD_PYTHON": sys.executable,
        "PYTHONPATH": str(REPO),
        # Neovim's state (LSP log, shada) goes to the test's folder, not the user's.
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    proc = subprocess.run(
        [NVIM, "--headless", "-u", str(PLUGIN / "tests" / "minimal_init.lua"),
         "-c", f"luafile {PLUGIN / 'tests' / 'e2e.lua'}"],
        env=env, cwd=project.root, capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "nvim e2e: all steps passed" in output, output
