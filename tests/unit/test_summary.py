"""scripts/summary.py: the closing table of ./scripts/test, which must never look greener than
the run was."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "scripts" / "summary.py"
_spec = importlib.util.spec_from_file_location("vmd_test_summary", _PATH)
assert _spec is not None and _spec.loader is not None
summary = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = summary
_spec.loader.exec_module(summary)

# The shapes the three runners write: pytest (testsuites > testsuite > testcase), vitest (the
# same, one testsuite per file) and node --test (testcases nested in a testsuite per describe).
PYTEST_XML = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest"
 tests="4" failures="1" errors="1" skipped="1">
<testcase classname="t" name="a"/>
<testcase classname="t" name="b"><failure message="boom">x</failure></testcase>
<testcase classname="t" name="c"><error message="setup">x</error></testcase>
<testcase classname="t" name="d"><skipped message="no nvim"/></testcase>
</testsuite></testsuites>"""
NODE_XML = """<?xml version="1.0" encoding="utf-8"?><testsuites>
<testsuite name="extension"><testcase name="a"/><testcase name="b"/>
<testsuite name="nested"><testcase name="c"><failure type="testCodeFailure"/></testcase>
</testsuite></testsuite></testsuites>"""


def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], *specs: str) -> tuple[int, list[str]]:
    code = summary.main([str(tmp_path), *specs])
    return code, capsys.readouterr().out.splitlines()


def write(tmp_path: Path, name: str, status: int, xml: str | None = None) -> None:
    (tmp_path / f"{name}.status").write_text(f"{status}\n")
    if xml is not None:
        (tmp_path / f"{name}.xml").write_text(xml)


def test_every_testcase_is_counted_whichever_runner_wrote_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path, "pytest", 1, PYTEST_XML)
    write(tmp_path, "vscode", 1, NODE_XML)
    code, out = run(tmp_path, capsys, "pytest:junit", "vscode:junit")
    assert code == 1
    assert out[-1] == "3 passed, 3 failed, 1 skipped"


def test_a_suite_that_did_not_run_counts_as_a_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path, "lint", 0)
    code, out = run(tmp_path, capsys, "lint", "vitest:junit")
    assert code == 1
    assert any(line.startswith("vitest") and "did not run" in line for line in out)
    assert out[-1] == "1 passed, 1 failed, 0 skipped"


def test_a_failing_exit_without_a_failing_test_still_fails_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    passing = PYTEST_XML.replace('<failure message="boom">x</failure>', "").replace(
        '<error message="setup">x</error>', ""
    )
    write(tmp_path, "pytest", 3, passing)  # e.g. a crash in a session fixture's teardown
    write(tmp_path, "vitest", 1)  # e.g. typecheck failed: no report was written
    code, out = run(tmp_path, capsys, "pytest:junit", "vitest:junit")
    assert code == 1
    assert out[-1] == "3 passed, 2 failed, 1 skipped"


def test_a_suite_that_ran_no_test_is_not_a_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path, "vitest", 0, "<testsuites></testsuites>")
    code, out = run(tmp_path, capsys, "vitest:junit")
    assert (code, out[-1]) == (1, "0 passed, 1 failed, 0 skipped")


def test_an_all_green_run_exits_zero_with_its_total_as_the_last_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path, "lint", 0)
    write(tmp_path, "vscode", 0, NODE_XML.replace('<failure type="testCodeFailure"/>', ""))
    code, out = run(tmp_path, capsys, "lint", "vscode:junit")
    assert (code, out[-1]) == (0, "4 passed, 0 failed, 0 skipped")
