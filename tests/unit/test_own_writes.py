"""`capture.own_writes`: what a run wrote into its own watch globs is taken as it left it, and
nothing anyone else did meanwhile is hidden by that."""

from __future__ import annotations

from pathlib import Path

from vmd import filestate
from vmd.workers.capture import own_writes


def watched_now(folder: Path) -> tuple[list[str], dict[str, filestate.Sig]]:
    pattern = str(folder / "*.txt")
    files, walked = filestate.expand([pattern])
    return [pattern], {**{f: filestate.signature(f) for f in files}, **walked}


def written_out(folder: Path) -> tuple[Path, list[str], dict[str, filestate.Sig]]:
    """`out.txt` in `folder`, and the watch of `*.txt` there as a run starting now sees it."""
    out = folder / "out.txt"
    out.write_text("old")
    return out, *watched_now(folder)


def test_a_file_the_run_rewrote_and_the_folder_it_saved_through_are_taken_as_left(
    tmp_path: Path,
) -> None:
    out, globs, before = written_out(tmp_path)
    (tmp_path / ".tmp").write_text("new")  # an atomic save: the folder's entries change
    (tmp_path / ".tmp").replace(out)
    after = own_writes(before, globs, {str(out)})
    _, now = watched_now(tmp_path)
    assert after == now


def test_a_file_someone_else_added_meanwhile_keeps_the_folder_as_the_run_saw_it(
    tmp_path: Path,
) -> None:
    out, globs, before = written_out(tmp_path)
    out.write_text("new")
    (tmp_path / "theirs.txt").write_text("added by another process")
    after = own_writes(before, globs, {str(out)})
    assert after[str(out)] == filestate.signature(str(out))
    assert after[str(tmp_path)] == before[str(tmp_path)]  # so the addition is a change
    assert str(tmp_path / "theirs.txt") not in after


def test_files_the_run_did_not_write_keep_the_signature_it_saw(tmp_path: Path) -> None:
    data = tmp_path / "data.txt"
    data.write_text("one")
    globs, before = watched_now(tmp_path)
    data.write_text("two, written by someone else")
    assert own_writes(before, globs, set())[str(data)] == before[str(data)]
