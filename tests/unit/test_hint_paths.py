"""Which paths of a client's `workspace/didChangeWatchedFiles` hint the daemon acts on at once."""

from __future__ import annotations

from pathlib import Path

from vmd.service import worth_a_hint


def test_a_file_with_content_a_missing_file_and_a_folder_are_acted_on(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("data")
    (tmp_path / "sub").mkdir()
    paths = {f"{tmp_path}/a.txt", f"{tmp_path}/gone.txt", f"{tmp_path}/sub/"}
    assert worth_a_hint(paths) == {f"{tmp_path}/a.txt", f"{tmp_path}/gone.txt", f"{tmp_path}/sub"}


def test_an_empty_file_is_left_to_the_daemons_watcher(tmp_path: Path) -> None:
    # An editor that truncates and then writes can be caught in between: acting now would run
    # the loader on nothing; the daemon's watcher reports the file once it has settled.
    (tmp_path / "empty.txt").write_text("")
    assert worth_a_hint({f"{tmp_path}/empty.txt"}) == set()
