"""Confinement: only included loaders inside the root may ever run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vmd.confine import parse_id
from vmd.errors import Refused

INCLUDE = ["**/*.vmd.py"]


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "src").mkdir(parents=True)
    (root / "src" / "users.vmd.py").write_text("def load(ctx): return ''\n")
    (root / "plain.py").write_text("print('never')\n")
    (tmp_path / "outside.vmd.py").write_text("def load(ctx): return ''\n")
    return root


def test_an_included_loader_parses_with_its_query(root: Path) -> None:
    path = str(root / "src" / "users.vmd.py")
    mid = parse_id(path + "?type=admin&x=1&x=2&flag", [str(root)], INCLUDE)
    assert mid.real == path
    assert mid.query == {"type": "admin", "x": "2", "flag": ""}


@pytest.mark.parametrize(
    "make_id, why",
    [
        (lambda r: "src/users.vmd.py", "absolute"),
        (lambda r: f"{r}/src/../src/users.vmd.py", "normalised"),
        (lambda r: f"{r}/src/./users.vmd.py", "normalised"),
        (lambda r: f"{r}/src//users.vmd.py", "normalised"),
        (lambda r: f"/{r}/src/users.vmd.py", "normalised"),
        (lambda r: f"{r}/src/users.vmd.py\x00.js", "NUL"),
        (lambda r: f"{r}/src/users.vmd.py#frag", "'#'"),
        (lambda r: f"{r}/plain.py", "include globs"),
        (lambda r: f"{r}/../outside.vmd.py", "normalised"),
        (lambda r: f"{os.path.dirname(r)}/outside.vmd.py", "outside the workspace root"),
        (lambda r: f"{r}/src/missing.vmd.py", "does not exist"),
        (lambda r: "", "non-empty"),
    ],
)
def test_unsafe_or_unknown_ids_are_refused_with_a_reason(
    root: Path, make_id: object, why: str
) -> None:
    with pytest.raises(Refused) as info:
        parse_id(make_id(str(root)), [str(root)], INCLUDE)  # type: ignore[operator]
    assert why in str(info.value)


def test_a_symlink_pointing_out_of_the_root_is_refused(root: Path, tmp_path: Path) -> None:
    link = root / "src" / "evil.vmd.py"
    link.symlink_to(tmp_path / "outside.vmd.py")
    with pytest.raises(Refused, match="outside the workspace root"):
        parse_id(str(link), [str(root)], INCLUDE)


def test_a_symlink_to_a_plain_python_file_is_refused(root: Path) -> None:
    link = root / "src" / "sneaky.vmd.py"
    link.symlink_to(root / "plain.py")
    with pytest.raises(Refused, match="include globs"):
        parse_id(str(link), [str(root)], INCLUDE)


def test_a_folder_named_like_a_loader_is_refused(root: Path) -> None:
    (root / "dir.vmd.py").mkdir()
    with pytest.raises(Refused, match="not a file"):
        parse_id(str(root / "dir.vmd.py"), [str(root)], INCLUDE)


def test_custom_include_globs_decide_what_runs(root: Path) -> None:
    (root / "gen").mkdir()
    (root / "gen" / "a.py").write_text("def load(ctx): return ''\n")
    assert parse_id(str(root / "gen" / "a.py"), [str(root)], ["gen/*.py"]).query == {}
    with pytest.raises(Refused):
        parse_id(str(root / "src" / "users.vmd.py"), [str(root)], ["gen/*.py"])


def test_ids_checked_together_share_what_was_confined_but_never_a_refusal(root: Path) -> None:
    loader = str(root / "src" / "users.vmd.py")
    link = root / "src" / "link.vmd.py"
    link.symlink_to(root.parent / "outside.vmd.py")
    confined: dict[str, str] = {}
    for n in range(3):
        assert parse_id(f"{loader}?n={n}", [str(root)], INCLUDE, confined).real == loader
        with pytest.raises(Refused, match="outside the workspace root"):
            parse_id(f"{link}?n={n}", [str(root)], INCLUDE, confined)
    assert confined == {loader: loader}
