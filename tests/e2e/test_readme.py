"""README.md's command-line examples, run: each prints exactly the output the README shows.

A block is runnable when the line before its ```sh fence is `<!-- runnable: DIR -->` (an HTML
comment, invisible on GitHub), DIR being the folder its commands run in, relative to the
README. Each `$ command` line runs in sh with the venv's `vmd` first on PATH; the lines after it,
up to the next `$` line, are what it prints (stdout and stderr, as a terminal shows them). A
first `$ cd DIR` tells readers where to run the block; it is checked against the marker, not run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
BIN = Path(sys.executable).parent  # the venv the tests run in, which has the `vmd` command

_MARKER = re.compile(r"<!--\s*runnable:\s*(?P<dir>\S+)\s*-->")


@dataclass
class Command:
    line: str
    expected: list[str] = field(default_factory=list)


@dataclass
class Block:
    where: str  # README.md:LINE, for test ids and messages
    folder: str
    commands: list[Command]


def runnable_blocks(text: str) -> list[Block]:
    """Every block of `text` marked runnable, parsed into commands and their shown output."""
    lines = text.splitlines()
    blocks = []
    for at, line in enumerate(lines):
        marker = _MARKER.fullmatch(line.strip())
        if marker is None:
            continue
        where = f"README.md:{at + 1}"
        assert lines[at + 1 : at + 2] == ["```sh"], f"{where}: a ```sh block must follow"
        body = []
        for inner in lines[at + 2 :]:
            if inner.startswith("```"):
                break
            body.append(inner)
        else:
            raise AssertionError(f"{where}: the block is never closed")
        commands: list[Command] = []
        for inner in body:
            if inner.startswith("$ "):
                commands.append(Command(inner[2:]))
            else:
                assert commands, f"{where}: output before any `$ command` line"
                commands[-1].expected.append(inner)
        folder = marker["dir"]
        if commands and commands[0].line == f"cd {folder}" and not commands[0].expected:
            commands.pop(0)
        assert all(not c.line.startswith("cd ") for c in commands), (
            f"{where}: only a first `cd {folder}`, matching the marker, is understood"
        )
        blocks.append(Block(where, folder, commands))
    return blocks


BLOCKS = runnable_blocks(README.read_text(encoding="utf-8"))


def test_the_readme_marks_its_vmd_load_examples_runnable() -> None:
    assert any(c.line.startswith("vmd load ") for b in BLOCKS for c in b.commands)


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_a_runnable_readme_example_prints_what_the_readme_shows(block: Block) -> None:
    assert (BIN / "vmd").exists(), f"no vmd command in {BIN}: install vmd into the test venv"
    cwd = README.parent / block.folder
    assert cwd.is_dir(), f"{block.where}: {block.folder} is not a folder"
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(REPO),  # this checkout's vmd, even if the venv has another installed
    }
    for command in block.commands:
        out = subprocess.run(
            ["sh", "-c", command.line],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=60,
        )
        assert out.stdout.splitlines() == command.expected, (
            f"{block.where}: `{command.line}` in {block.folder} (exit {out.returncode})"
        )
