"""Include globs: vmd/globs.py and the Neovim plugin's matcher answer every shared case alike.

The cases are in tests/fixtures/glob_cases.json: an include glob and a path, both relative to
the workspace root, and whether the daemon runs a loader there (vmd/confine.py's question).
vmd/globs.py is the reference the expected answers come from; the Neovim plugin, which decides
on its own which buffers are loaders, must give the same answers (clients/editor/nvim/lua/vmd/
globs.lua, run in headless Neovim by clients/editor/nvim/tests/globs.lua).
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from vmd import globs

REPO = Path(__file__).resolve().parents[2]
CASES_FILE = REPO / "tests" / "fixtures" / "glob_cases.json"
CASES: list[dict[str, Any]] = json.loads(CASES_FILE.read_text(encoding="utf-8"))["cases"]
NVIM_PLUGIN = REPO / "clients" / "editor" / "nvim"
NVIM = shutil.which("nvim")
ROOT = "/root"


def _name(case: dict[str, Any]) -> str:
    return f"{case['pattern']} {'~' if case['match'] else '!~'} {case['path']}"


def test_the_cases_cover_every_kind_of_glob() -> None:
    patterns = [case["pattern"] for case in CASES]
    for needle in ["*", "?", "[", "[!", "**/", "/**/", "a**b", "/", "./", ".."]:
        assert any(needle in p for p in patterns), needle
    assert any(p.endswith("/") for p in patterns), "a trailing / in a pattern"
    assert any(c["path"].endswith("/") for c in CASES), "a trailing / in a path"
    assert any(c["path"].startswith(".") or "/." in c["path"] for c in CASES), "dotfiles"
    assert {c["match"] for c in CASES} == {True, False}


@pytest.mark.parametrize("case", CASES, ids=_name)
def test_globs_py_answers_each_case(case: dict[str, Any]) -> None:
    pattern = globs.absolute(case["pattern"], ROOT)
    assert globs.matches(pattern, posixpath.join(ROOT, case["path"])) is case["match"]


@pytest.fixture(scope="module")
def nvim_answers(tmp_path_factory: pytest.TempPathFactory) -> list[bool]:
    if NVIM is None:
        if os.environ.get("CI"):
            pytest.fail("nvim is required in CI")
        pytest.skip("nvim is not installed")
    results = tmp_path_factory.mktemp("globs") / "answers.json"
    env = {**os.environ, "VMD_GLOB_CASES": str(CASES_FILE), "VMD_GLOB_RESULTS": str(results)}
    proc = subprocess.run(
        [NVIM, "--headless", "-u", "NONE", "-i", "NONE",
         "--cmd", f"set rtp^={NVIM_PLUGIN}",
         "-c", f"luafile {NVIM_PLUGIN / 'tests' / 'globs.lua'}"],
        env=env, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    answers: list[bool] = json.loads(results.read_text(encoding="utf-8"))
    assert len(answers) == len(CASES)
    return answers


@pytest.mark.parametrize("index", range(len(CASES)), ids=[_name(c) for c in CASES])
def test_the_nvim_plugin_answers_each_case_as_globs_py_does(
    nvim_answers: list[bool], index: int
) -> None:
    assert nvim_answers[index] is CASES[index]["match"], CASES[index].get("why", "")
