"""Which modules a loader imports, read from its source before it runs: what the preloader
imports ahead of the loader's first run."""

from __future__ import annotations

from pathlib import Path

from vmd.workers.scan import only_standard, top_level_imports


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_top_level_imports_in_order_including_guarded_ones(tmp_path: Path) -> None:
    loader = write(tmp_path / "a.vmd.py", (
        "import pandas as pd, numpy\n"
        "from polars import col\n"
        "try:\n    import duckdb\nexcept ImportError:\n    import sqlite3\n"
        "if True:\n    from json import loads\n"
        "def load(ctx):\n    import lazy_inside_a_function\n"
    ))
    assert top_level_imports(loader, [str(tmp_path)]) == [
        "pandas", "numpy", "polars", "duckdb", "sqlite3", "json",
    ]


def test_relative_imports_and_project_modules_are_left_out(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text("")
    (tmp_path / "pkg").mkdir()
    loader = write(tmp_path / "a.vmd.py", "import helpers, pkg.sub, csv\nfrom . import x\n")
    assert top_level_imports(loader, [str(tmp_path)]) == ["csv"]


def test_a_loader_that_does_not_parse_needs_nothing(tmp_path: Path) -> None:
    loader = write(tmp_path / "a.vmd.py", "import (\n")
    assert top_level_imports(loader, [str(tmp_path)]) == []
    assert top_level_imports(str(tmp_path / "missing.vmd.py"), []) == []


def test_only_the_standard_library_and_vmd_count_as_at_hand() -> None:
    assert only_standard(["os", "json", "collections.abc", "vmd", "vmd.cache"])
    assert only_standard([])
    assert not only_standard(["os", "pandas"])
    assert not only_standard(["numpy.typing"])
