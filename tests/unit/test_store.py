"""vmd.store against a fake file system: what a change makes stale, and when a module runs again.

No processes and no disk: `FakeFiles` stands in for `vmd.filestate.DISK`, and each "run" is the
`Done` a worker would have reported for the files as they are at that moment.
"""

from __future__ import annotations

import itertools
import posixpath

import pytest

from vmd import globs
from vmd.confine import ModuleId
from vmd.errors import LoaderError
from vmd.filestate import Sig
from vmd.protocol import FileEvent
from vmd.store import Mark, Store
from vmd.workers.ipc import Done, ErrorInfo

LOADER = "/p/src/users.vmd.py"
HELPER = "/p/src/helpers.py"
DATA = "/p/data"
GLOB = "/p/data/*.csv"


class FakeFiles:
    """Files and folders with signatures that change on every write, like mtime and ctime."""

    def __init__(self) -> None:
        self._clock = itertools.count(1)
        self.sigs: dict[str, Sig] = {}
        self.folders: set[str] = set()

    def write(self, path: str, text: str = "x") -> None:
        folder = posixpath.dirname(path)
        if path not in self.sigs:
            self._touch_folder(folder)
        self.sigs[path] = (next(self._clock), len(text), hash(path) & 0xFFFF, 0)

    def remove(self, path: str) -> None:
        del self.sigs[path]
        self._touch_folder(posixpath.dirname(path))

    def _touch_folder(self, folder: str) -> None:
        self.folders.add(folder)
        self.sigs[folder] = (next(self._clock), 0, hash(folder) & 0xFFFF, 0)

    # FileState
    def signature(self, path: str) -> Sig:
        return self.sigs.get(path)

    def expand(self, patterns: list[str]) -> tuple[list[str], dict[str, Sig]]:
        files = sorted(
            p for p in self.sigs
            if p not in self.folders and any(globs.matches(g, p) for g in patterns)
        )
        walked = {base: self.signature(base) for base in (globs.split(g)[0] for g in patterns)}
        return files, walked

    def is_dir(self, path: str) -> bool:
        return path in self.folders

    def realpath(self, path: str) -> str:
        return path


@pytest.fixture
def fs() -> FakeFiles:
    files = FakeFiles()
    files.write(LOADER, "def load(ctx): ...")
    files.write(HELPER, "X = 1")
    files.write(f"{DATA}/a.csv", "a")
    return files


@pytest.fixture
def code_changes() -> list[str]:
    return []


@pytest.fixture
def store(fs: FakeFiles, code_changes: list[str]) -> Store:
    return Store(files=fs, on_code_changed=code_changes.append)


def done(fs: FakeFiles, *, ok: bool = True, code: str = "export default 1;") -> Done:
    """What a worker reports for a run of LOADER (imports HELPER, watches GLOB) right now."""
    files, walked = fs.expand([GLOB])
    return Done(
        seq=0,
        ok=ok,
        code=code if ok else "",
        error=None if ok else ErrorInfo(message="boom", file=HELPER, line=1),
        globs=[GLOB],
        watched_files=files,
        watched={**{f: fs.signature(f) for f in files}, **walked},
        code_deps={LOADER: fs.signature(LOADER), HELPER: fs.signature(HELPER)},
    )


def loaded(store: Store, fs: FakeFiles, id: str = LOADER) -> None:
    """A module asked for and run once, as the service does it."""
    store.add(ModuleId(id=id, path=LOADER, real=LOADER, query={}))
    store.begin(id)
    run_once(store, fs, id)
    assert not store.still_dirty(id)
    store.finish(id)


def run_once(store: Store, fs: FakeFiles, id: str = LOADER) -> list[tuple[str, str]]:
    """One run that sees the files as they are now; returns the events it was given."""
    run = store.take_run(id)
    store.record_run(id, done(fs), None, run.seen)
    return run.events


def the_mark(marks: list[Mark]) -> Mark:
    [mark] = marks
    return mark


def test_a_module_is_served_from_memory_until_a_file_it_depends_on_changes(
    store: Store, fs: FakeFiles
) -> None:
    loaded(store, fs)
    assert store.cached(LOADER) is not None
    fs.write(f"{DATA}/a.csv", "changed")
    # A load that races the watcher: the stat re-check sees it before any event arrives.
    assert store.cached(LOADER) is None
    mark = store.recheck(LOADER)
    assert mark is not None and mark.start
    assert mark.changed is not None and mark.changed.reason == "watch"
    assert mark.changed.events == [FileEvent(type="change", path=f"{DATA}/a.csv")]


@pytest.mark.parametrize("kind", ["add", "change", "unlink"])
def test_a_watched_file_added_changed_or_removed_makes_the_module_stale(
    store: Store, fs: FakeFiles, kind: str
) -> None:
    loaded(store, fs)
    path = f"{DATA}/b.csv" if kind == "add" else f"{DATA}/a.csv"
    if kind == "unlink":
        fs.remove(path)
    else:
        fs.write(path, "new")
    mark = the_mark(store.on_paths_changed({path}))
    assert mark.changed is not None
    assert (mark.changed.reason, mark.changed.version) == ("watch", 1)
    assert mark.changed.events == [FileEvent(type=kind, path=path)]  # type: ignore[arg-type]
    assert store.take_run(LOADER).events == [(kind, f"../data/{posixpath.basename(path)}")]


def test_a_report_of_a_file_that_did_not_change_changes_nothing(
    store: Store, fs: FakeFiles
) -> None:
    loaded(store, fs)
    assert store.on_paths_changed({f"{DATA}/a.csv", "/p/elsewhere.txt"}) == []
    assert store.cached(LOADER) is not None


@pytest.mark.parametrize("path", [LOADER, HELPER])
def test_a_loader_or_local_import_edit_is_a_code_change_that_asks_for_a_fresh_worker(
    store: Store, fs: FakeFiles, code_changes: list[str], path: str
) -> None:
    loaded(store, fs)
    fs.write(path, "edited")
    mark = the_mark(store.on_paths_changed({path}))
    assert mark.changed is not None and mark.changed.reason == "code"
    assert code_changes == [LOADER]


def test_a_data_change_does_not_ask_for_a_fresh_worker(
    store: Store, fs: FakeFiles, code_changes: list[str]
) -> None:
    loaded(store, fs)
    fs.write(f"{DATA}/a.csv", "changed")
    store.on_paths_changed({f"{DATA}/a.csv"})
    assert code_changes == []


def test_a_file_in_a_walked_folder_the_globs_do_not_match_is_no_change(
    store: Store, fs: FakeFiles
) -> None:
    loaded(store, fs)
    fs.write(f"{DATA}/.a.csv.swp")  # an editor's temporary file: the folder changed
    assert store.on_paths_changed({DATA}) == []
    assert store.cached(LOADER) is None  # the folder's signature differs...
    assert store.recheck(LOADER) is None  # ...but nothing the loader sees did: remembered
    assert store.cached(LOADER) is not None


def test_a_new_file_seen_only_as_its_folder_changing_is_an_add(
    store: Store, fs: FakeFiles
) -> None:
    loaded(store, fs)
    fs.write(f"{DATA}/b.csv")
    mark = the_mark(store.on_paths_changed({DATA}))
    assert mark.changed is not None
    assert mark.changed.events == [FileEvent(type="add", path=f"{DATA}/b.csv")]


def test_changes_during_a_run_give_one_notification_and_one_more_run_on_the_final_state(
    store: Store, fs: FakeFiles
) -> None:
    loaded(store, fs)
    fs.write(f"{DATA}/a.csv", "1")
    first = the_mark(store.on_paths_changed({f"{DATA}/a.csv"}))
    assert first.changed is not None and first.start
    run = store.take_run(LOADER)  # the re-run starts and sees "1"
    saw = done(fs)
    for text in ("2", "3"):  # a burst of saves while it runs
        fs.write(f"{DATA}/a.csv", text)
        again = the_mark(store.on_paths_changed({f"{DATA}/a.csv"}))
        assert (again.changed, again.start) == (None, False)  # already stale, already running
    store.record_run(LOADER, saw, None, run.seen)
    assert store.still_dirty(LOADER)  # the run saw "1", the file is "3": once more
    assert run_once(store, fs) == [("change", "../data/a.csv")]
    assert not store.still_dirty(LOADER)
    outcome = store.finish(LOADER)
    assert outcome.version == 3 and store.cached(LOADER) is not None


def test_a_change_the_run_in_flight_already_saw_needs_no_other_run(
    store: Store, fs: FakeFiles
) -> None:
    loaded(store, fs)
    store.mark_stale(LOADER, "reload", [])
    run = store.take_run(LOADER)
    fs.write(f"{DATA}/a.csv", "new")  # written before the run read it...
    store.record_run(LOADER, done(fs), None, run.seen)
    store.on_paths_changed({f"{DATA}/a.csv"})  # ...reported after: the run saw it
    assert not store.still_dirty(LOADER)


def test_a_code_change_during_a_run_reruns_it_even_if_the_run_saw_the_new_file(
    store: Store, fs: FakeFiles, code_changes: list[str]
) -> None:
    loaded(store, fs)
    store.add(ModuleId(id=f"{LOADER}?b", path=LOADER, real=LOADER, query={}))
    store.begin(f"{LOADER}?b")
    run = store.take_run(f"{LOADER}?b")
    fs.write(HELPER, "edited")
    store.record_run(f"{LOADER}?b", done(fs), None, run.seen)
    store.on_paths_changed({HELPER})  # the bare id is not running: it asks for a fresh worker
    assert code_changes == [LOADER]
    assert store.still_dirty(f"{LOADER}?b")  # its worker imported the old helper


def test_a_failed_run_keeps_its_dependencies_so_fixing_a_helper_recovers_it(
    store: Store, fs: FakeFiles
) -> None:
    store.add(ModuleId(id=LOADER, path=LOADER, real=LOADER, query={}))
    store.begin(LOADER)
    run = store.take_run(LOADER)
    error = LoaderError("boom", id=LOADER, file=HELPER, line=1)
    store.record_run(LOADER, done(fs, ok=False), error, run.seen)
    outcome = store.finish(LOADER)
    assert outcome.error is error and outcome.result is None
    fs.write(HELPER, "fixed")
    mark = the_mark(store.on_paths_changed({HELPER}))
    assert mark.changed is not None and mark.changed.reason == "code"


def test_a_run_that_reported_nothing_still_settles_the_changes_it_was_for(
    store: Store, fs: FakeFiles
) -> None:
    loaded(store, fs)
    fs.write(f"{DATA}/a.csv", "new")
    store.on_paths_changed({f"{DATA}/a.csv"})
    run = store.take_run(LOADER)
    crashed = LoaderError("crashed", id=LOADER, file=LOADER, line=1)
    store.record_run(LOADER, None, crashed, run.seen)  # no Done: a crash or a timeout
    assert not store.still_dirty(LOADER)
    store.finish(LOADER)
    assert store.recheck(LOADER) is None  # not found, reported and run again


def test_a_recheck_in_build_mode_reruns_without_telling_clients(
    store: Store, fs: FakeFiles
) -> None:
    loaded(store, fs)
    fs.write(HELPER, "edited")
    mark = store.recheck(LOADER, notify=False)
    assert mark is not None and (mark.changed, mark.start) == (None, True)


def test_invalidate_by_path_drops_every_module_depending_on_it_once(
    store: Store, fs: FakeFiles, code_changes: list[str]
) -> None:
    loaded(store, fs)
    loaded(store, fs, f"{LOADER}?type=admin")
    ids, marks = store.invalidate(path=HELPER)
    assert sorted(ids) == [LOADER, f"{LOADER}?type=admin"]
    assert {m.changed.reason for m in marks if m.changed} == {"invalidate"}
    assert set(code_changes) == {LOADER}
    assert store.cached(LOADER) is None
    assert store.invalidate(id=LOADER) == ([], [])  # nothing cached any more: nothing to drop


def test_a_reload_while_running_is_one_more_run_with_its_data(
    store: Store, fs: FakeFiles
) -> None:
    loaded(store, fs)
    store.reload(LOADER, {"page": 1})
    store.take_run(LOADER)
    store.reload(LOADER, {"page": 2})
    assert store.still_dirty(LOADER)
    assert store.take_run(LOADER).data == {"page": 2}


def test_targets_are_the_glob_bases_and_every_dependency_file_not_each_file_a_glob_matched(
    store: Store, fs: FakeFiles
) -> None:
    loaded(store, fs)  # data/a.csv is matched by the glob: watching data/ covers it
    assert store.targets() == {(DATA, False), (LOADER, False), (HELPER, False)}
