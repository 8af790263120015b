"""The closing table of ./scripts/test: every suite's counts, and one `N passed, N failed` line.

Usage: summary.py REPORTS SUITE[:junit] ...  REPORTS holds NAME.status (the suite's exit
status) and, for suites marked `:junit`, NAME.xml. A suite without a report counts as one
check. A suite that did not run, or failed without a failing test to show for it, counts as
one failure, so a run can never look green by having run less. Exits 1 if anything failed.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def junit_counts(report: Path) -> tuple[int, int, int]:
    """(passed, failed, skipped) over every <testcase>, whichever runner wrote the file."""
    passed = failed = skipped = 0
    for case in ET.parse(report).iter("testcase"):
        tags = {child.tag for child in case}
        if tags & {"failure", "error"}:
            failed += 1
        elif "skipped" in tags:
            skipped += 1
        else:
            passed += 1
    return passed, failed, skipped


def suite_counts(reports: Path, spec: str) -> tuple[str, int, int, int, str]:
    """One row of the table: name, passed, failed, skipped, and a note when not plain."""
    name, _, kind = spec.partition(":")
    status_file = reports / f"{name}.status"
    if not status_file.exists():
        return name, 0, 1, 0, "did not run"
    status = int(status_file.read_text().strip() or 1)
    report = reports / f"{name}.xml"
    if kind != "junit":
        return (name, 1, 0, 0, "") if status == 0 else (name, 0, 1, 0, f"exit status {status}")
    if not report.exists():
        return name, 0, 1, 0, f"exit status {status}, no test report"
    try:
        passed, failed, skipped = junit_counts(report)
    except ET.ParseError as exc:
        return name, 0, 1, 0, f"unreadable test report: {exc}"
    note = ""
    if status != 0 and failed == 0:
        failed, note = 1, f"exit status {status} with no failing test"
    elif status == 0 and passed + failed == 0:
        failed, note = 1, "no test ran"
    return name, passed, failed, skipped, note


def main(argv: list[str]) -> int:
    reports, specs = Path(argv[0]), argv[1:]
    rows = [suite_counts(reports, spec) for spec in specs]
    print("==== summary")
    print(f"{'suite':<12}{'passed':>8}{'failed':>8}{'skipped':>9}")
    for name, passed, failed, skipped, note in rows:
        print(f"{name:<12}{passed:>8}{failed:>8}{skipped:>9}  {note}".rstrip())
    passed = sum(row[1] for row in rows)
    failed = sum(row[2] for row in rows)
    skipped = sum(row[3] for row in rows)
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
