"""The `vmd` command line, run as a subprocess against a real daemon."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from vmd.cli import find_loaders, module_id

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "project"
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = Path(os.path.realpath(tmp_path)) / "project"
    shutil.copytree(FIXTURE, root)
    return root


def vmd(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vmd", *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )


def sleeper(started: Path) -> str:
    """A loader that creates `started` once it runs, then sleeps far past any test's wait."""
    return (
        "import pathlib, time\n\ndef load(ctx):\n"
        f"    pathlib.Path({str(started)!r}).touch()\n    time.sleep(30)\n    return ''\n"
    )


async def until(predicate: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Wait until `predicate()` is true (polling), failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.02)


async def until_exists(path: Path, timeout: float = 30) -> None:
    """Wait for `path` to appear (polling), failing after `timeout` seconds."""
    await until(path.exists, f"{path} exists", timeout)


def replace(path: Path, text: str) -> None:
    """Give `path` new content in one step, as editors save: a watcher that wakes between a
    truncate and a write (a busy machine) would otherwise make the loader read an empty file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def echo_loader(runs: Path) -> str:
    """A loader whose module is data/a.txt's text, failing on `boom`; each run appends the
    text it read to `runs`, so a test knows a run happened even when nothing is printed."""
    return (
        "watch = ['data/*.txt']\n\n"
        "def load(ctx):\n"
        "    text = (ctx.path.parent / 'data' / 'a.txt').read_text()\n"
        f"    with open({str(runs)!r}, 'a') as f:\n"
        "        f.write(text + '\\n')\n"
        "    if text == 'boom':\n"
        "        raise ValueError('boom')\n"
        "    return f'export default {text!r};'\n"
    )


def runs_seen(runs: Path) -> list[str]:
    return runs.read_text().splitlines() if runs.exists() else []


def _as_from_a_terminal() -> None:
    """SIGINT as a shell prompt leaves it: a suite started in the background (`cmd &` without
    job control) inherits it ignored, and Python keeps an ignored SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.asynccontextmanager
async def running(
    project: Path, *args: str, stdout: Any = asyncio.subprocess.PIPE, stderr: Any = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`vmd ARGS` running in `project`; killed on the way out if it has not exited."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vmd", *args, cwd=project, env=ENV, stdout=stdout, stderr=stderr,
        preexec_fn=_as_from_a_terminal,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_load_prints_the_module_code(project: Path) -> None:
    out = vmd("load", "src/hello.vmd.py?kind=admin", cwd=project)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("export default JSON.parse(")
    assert '\\"kind\\":\\"admin\\"' in out.stdout


def test_load_json_prints_the_whole_result_with_an_absolute_id(project: Path) -> None:
    out = vmd(
        "load", "src/hello.vmd.py", "--json", "--query", "a=1", "--mode", "build", cwd=project
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["id"] == str(project / "src" / "hello.vmd.py") + "?a=1"
    assert result["version"] == 1
    assert result["watchFiles"] == [str(project / "src" / "data" / "a.txt")]
    assert '\\"mode\\":\\"build\\"' in result["code"]


def test_load_error_prints_file_line_and_traceback_and_exits_1(project: Path) -> None:
    out = vmd("load", "src/broken.vmd.py", cwd=project)
    assert out.returncode == 1
    assert out.stdout == ""
    first = out.stderr.splitlines()[0]
    assert first.startswith(f"{project / 'src' / 'helpers.py'}:2: ")
    assert "the helper exploded" in first
    assert "Traceback (most recent call last)" in out.stderr


def test_load_json_of_a_failing_loader_prints_the_error_as_json_and_exits_1(
    project: Path,
) -> None:
    out = vmd("load", "src/broken.vmd.py", "--json", cwd=project)
    assert out.returncode == 1
    error = json.loads(out.stdout)["error"]
    assert "raise ValueError(\"the helper exploded\")" in error.pop("traceback")
    assert error == {
        "id": str(project / "src" / "broken.vmd.py"),
        "message": "ValueError: the helper exploded",
        "file": str(project / "src" / "helpers.py"),
        "line": 2,
        "kind": "error",
    }
    assert "the helper exploded" in out.stderr  # a person watching still reads it there
    out = vmd("load", "src/missing.vmd.py", "--json", cwd=project)
    assert out.returncode == 1
    assert json.loads(out.stdout)["error"]["kind"] == "refused"


def test_load_with_root_elsewhere(project: Path, tmp_path: Path) -> None:
    out = vmd("load", str(project / "src" / "hello.vmd.py"), "--root", str(project), cwd=tmp_path)
    assert out.returncode == 0, out.stderr


def test_check_reports_each_loader_and_exits_1_when_one_fails(project: Path) -> None:
    out = vmd("check", cwd=project)
    assert out.returncode == 1, out.stderr
    assert out.stdout.splitlines() == [
        "FAIL src/broken.vmd.py: src/helpers.py:2: ValueError: the helper exploded",
        "ok   src/hello.vmd.py",
    ]


def test_check_exits_0_when_every_loader_loads(project: Path) -> None:
    out = vmd("check", "src/hello.vmd.py", cwd=project)
    assert (out.returncode, out.stdout) == (0, "ok   src/hello.vmd.py\n")


def test_check_json_prints_one_object_per_loader_with_the_daemons_error_data(
    project: Path,
) -> None:
    with open(os.fsencode(project / "src") + b"/bad\xffname.vmd.py", "w") as f:
        f.write("def load(ctx):\n    return ''\n")
    out = vmd("check", "--json", cwd=project)
    assert out.returncode == 1, out.stderr
    bad, broken, hello = (json.loads(line) for line in out.stdout.splitlines())
    src = project / "src"
    assert hello == {"id": str(src / "hello.vmd.py"), "ok": True, "error": None}
    assert broken["id"] == str(src / "broken.vmd.py")
    assert broken["ok"] is False
    error = broken["error"]
    assert error["traceback"].startswith("Traceback (most recent call last)")
    assert "the helper exploded" in error.pop("traceback")
    assert error == {
        "id": str(src / "broken.vmd.py"),
        "message": "ValueError: the helper exploded",
        "file": str(src / "helpers.py"),
        "line": 2,
        "kind": "error",
    }
    assert bad["id"] == bad["error"]["file"] == str(src / "bad\\xffname.vmd.py")
    assert (bad["ok"], bad["error"]["kind"]) == (False, "refused")
    out = vmd("check", "--json", "src/hello.vmd.py", cwd=project)
    assert (out.returncode, json.loads(out.stdout)["ok"]) == (0, True)


def test_check_exits_2_when_no_loader_is_found(project: Path) -> None:
    out = vmd("check", "--include", "nothing/*.vmd.py", cwd=project)
    assert out.returncode == 2
    assert "no loaders found" in out.stderr


def test_check_refuses_an_include_glob_that_cannot_match_with_a_usage_error(
    project: Path,
) -> None:
    out = vmd("check", "--include", "src/[z-a].vmd.py", cwd=project)
    assert out.returncode == 2
    assert "invalid glob 'src/[z-a].vmd.py': bad character range z-a" in out.stderr
    assert "Traceback" not in out.stderr


def test_find_loaders_skips_tool_folders_and_honours_include(project: Path) -> None:
    for skipped in ("node_modules/pkg", ".venv", ".git", "src/__pycache__"):
        (project / skipped).mkdir(parents=True, exist_ok=True)
        (project / skipped / "x.vmd.py").write_text("")
    (project / "other").mkdir()
    (project / "other" / "y.vmd.py").write_text("")
    src = project / "src"
    assert find_loaders(str(project), [], ["**/*.vmd.py"]) == [
        str(project / "other" / "y.vmd.py"),
        str(src / "broken.vmd.py"),
        str(src / "hello.vmd.py"),
    ]
    assert find_loaders(str(project), [], ["src/*.vmd.py"]) == [
        str(src / "broken.vmd.py"),
        str(src / "hello.vmd.py"),
    ]
    assert find_loaders(str(project), [str(project / "other")], ["**/*.vmd.py"]) == [
        str(project / "other" / "y.vmd.py")
    ]


def test_query_values_reach_the_loader_as_written(project: Path) -> None:
    out = vmd(
        "load", "src/hello.vmd.py", "--json", "--query", "lang=c++", "--query", "q=a&b",
        "--query", "x=1#2", cwd=project,
    )
    assert out.returncode == 0, out.stderr
    code = json.loads(out.stdout)["code"]
    assert '\\"query\\":{\\"lang\\":\\"c++\\",\\"q\\":\\"a&b\\",\\"x\\":\\"1#2\\"}' in code


def test_a_query_without_a_value_is_refused_by_name(project: Path) -> None:
    out = vmd("load", "src/hello.vmd.py", "--query", "noeq", cwd=project)
    assert out.returncode == 2
    assert "expected KEY=VALUE, got 'noeq'" in out.stderr


def test_what_a_loader_prints_goes_to_stderr_and_stdout_keeps_only_the_module(
    project: Path,
) -> None:
    (project / "src" / "talk.vmd.py").write_text(
        "import sys\n\ndef load(ctx):\n    print('hello from the loader')\n"
        "    print('and from its stderr', file=sys.stderr)\n    return 'export default 1'\n"
    )
    out = vmd("load", "src/talk.vmd.py", cwd=project)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "export default 1\n"
    assert "hello from the loader" in out.stderr
    assert "and from its stderr" in out.stderr


def test_a_root_or_path_that_is_not_there_is_a_usage_error_naming_it(project: Path) -> None:
    out = vmd("load", "src/hello.vmd.py", "--root", "/nonexistent", cwd=project)
    assert out.returncode == 2
    assert "argument --root: /nonexistent: no such folder" in out.stderr
    out = vmd("check", "--root", "src/hello.vmd.py", cwd=project)
    assert (out.returncode, out.stdout) == (2, "")
    assert "argument --root: src/hello.vmd.py: not a folder" in out.stderr
    out = vmd("check", "nowhere", cwd=project)
    assert (out.returncode, out.stdout) == (2, "")
    assert "vmd: nowhere: no such file or folder" in out.stderr


def test_check_reports_file_names_no_id_can_hold_and_checks_the_rest(project: Path) -> None:
    src = os.fsencode(project / "src")
    for name in (b"bad\xffname.vmd.py", b"why?.vmd.py"):
        with open(src + b"/" + name, "w") as f:
            f.write("def load(ctx):\n    return ''\n")
    out = vmd("check", "src", cwd=project)
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    assert "FAIL src/bad\\xffname.vmd.py:1: " in out.stdout
    assert "a file name that is not valid UTF-8 cannot be a module id" in out.stdout
    assert "FAIL src/why?.vmd.py:1: " in out.stdout
    assert "a file name with '?' or '#' cannot be a module id" in out.stdout
    assert "ok   src/hello.vmd.py" in lines


def test_module_id_is_absolute_and_keeps_the_query(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = Path(os.path.realpath(tmp_path))
    monkeypatch.chdir(here)
    assert module_id("a.vmd.py") == str(here / "a.vmd.py")
    assert module_id("a.vmd.py?x=1", ["y=2"]) == str(here / "a.vmd.py") + "?x=1&y=2"
    assert module_id("/p/a.vmd.py", ["y=2"]) == "/p/a.vmd.py?y=2"


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
async def test_watch_prints_a_new_version_after_a_watched_file_edit_and_stops_cleanly(
    project: Path, stop: signal.Signals
) -> None:
    async with running(project, "watch", "src/hello.vmd.py") as proc:
        assert proc.stdout is not None
        first = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert b'a.txt\\":\\"one\\"' in first
        replace(project / "src" / "data" / "a.txt", "two")
        header = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert header == b"// version 2 (watch)\n"
        code = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert b'a.txt\\":\\"two\\"' in code
        proc.send_signal(stop)
        assert await asyncio.wait_for(proc.wait(), 10) == 0


async def test_watch_does_not_print_a_version_whose_code_did_not_change(
    project: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    (project / "src" / "echo.vmd.py").write_text(echo_loader(runs))
    a = project / "src" / "data" / "a.txt"
    async with running(project, "watch", "src/echo.vmd.py") as proc:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"export default 'one';\n"
        replace(a, "one")  # a new file, the same text: version 2 has the same code
        await until(lambda: runs_seen(runs) == ["one", "one"], "version 2 ran")
        replace(a, "two")
        # Versions are printed in order: seeing version 3 next shows 2 was handled, unprinted.
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"// version 3 (watch)\n"
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"export default 'two';\n"


async def test_watch_all_prints_every_version_even_when_its_code_did_not_change(
    project: Path, tmp_path: Path
) -> None:
    (project / "src" / "echo.vmd.py").write_text(echo_loader(tmp_path / "runs"))
    a = project / "src" / "data" / "a.txt"
    async with running(project, "watch", "--all", "src/echo.vmd.py") as proc:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"export default 'one';\n"
        replace(a, "one")
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"// version 2 (watch)\n"
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"export default 'one';\n"
        replace(a, "two")
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"// version 3 (watch)\n"
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"export default 'two';\n"


async def test_watch_prints_an_error_line_for_a_failed_run_and_the_module_once_it_recovers(
    project: Path, tmp_path: Path
) -> None:
    (project / "src" / "echo.vmd.py").write_text(echo_loader(tmp_path / "runs"))
    a = project / "src" / "data" / "a.txt"
    async with running(
        project, "watch", "src/echo.vmd.py", stderr=asyncio.subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"export default 'one';\n"
        replace(a, "boom")
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"// error (watch)\n"
        replace(a, "one")  # the code printed before the error: it is printed again
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"// version 3 (watch)\n"
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"export default 'one';\n"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        stderr = (await proc.stderr.read()).decode()
    loader = project / "src" / "echo.vmd.py"
    assert stderr.startswith(f"{loader}:8: ValueError: boom\nTraceback (most recent call last)")


def test_watch_help_documents_every_kind_of_line_it_prints(tmp_path: Path) -> None:
    out = vmd("watch", "--help", cwd=tmp_path)
    assert out.returncode == 0
    for kind in (
        "CODE", "// version N (WHY)", "// error (WHY)", "FILE:LINE: MESSAGE",
        "anything the loader prints", "vmd: MESSAGE", "--all",
    ):
        assert kind in out.stdout


@pytest.mark.parametrize("command", ["serve", "load", "watch", "check"])
def test_help_describes_each_command_with_examples(command: str, tmp_path: Path) -> None:
    out = vmd(command, "--help", cwd=tmp_path)
    assert out.returncode == 0
    assert f"usage: vmd {command}" in out.stdout
    assert "examples:" in out.stdout


def test_help_lists_the_commands(tmp_path: Path) -> None:
    out = vmd("--help", cwd=tmp_path)
    assert out.returncode == 0
    for command in ("serve", "load", "watch", "check"):
        assert command in out.stdout


async def test_ctrl_c_stops_watch_while_its_first_load_still_runs(
    project: Path, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    (project / "src" / "slow.vmd.py").write_text(sleeper(started))
    async with running(project, "watch", "src/slow.vmd.py") as proc:
        await until_exists(started)  # watch is waiting on the loader
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 10) == 0


async def test_watch_ends_quietly_when_its_reader_goes_away(project: Path) -> None:
    """`vmd watch … | head -1`: the next change finds stdout closed."""
    read, write = os.pipe()
    async with running(
        project, "watch", "src/hello.vmd.py", stdout=write, stderr=asyncio.subprocess.PIPE
    ) as proc:
        os.close(write)
        with os.fdopen(read, "rb") as reader:
            assert b"export default" in await asyncio.to_thread(reader.readline)
        replace(project / "src" / "data" / "a.txt", "two")
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        assert proc.stderr is not None
        assert b"Traceback" not in await proc.stderr.read()


async def test_ctrl_c_during_load_exits_130_without_a_traceback(
    project: Path, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    (project / "src" / "slow.vmd.py").write_text(sleeper(started))
    async with running(
        project, "load", "src/slow.vmd.py", stderr=asyncio.subprocess.PIPE
    ) as proc:
        await until_exists(started)  # the loader is asleep in its worker
        proc.send_signal(signal.SIGINT)
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 10)
        assert proc.returncode == 130
        assert (stdout, stderr) == (b"", b"")
