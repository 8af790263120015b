"""File watching: what a change on disk does to loaded modules, over a real daemon."""

from __future__ import annotations

import asyncio
import os
import shutil

import pytest
from harness import Daemon, Fence, Project, StartDaemon, eventually, exported

# Reports the watched files' contents and the events that triggered the run.
TEXTS = """
import vmd

watch = [{glob!r}]

def load(ctx):
    folder = ctx.path.parent
    return vmd.json_module({{
        "texts": {{name: (folder / name).read_text() for name in ctx.watched_files}},
        "events": sorted([e.type, e.path] for e in ctx.events),
    }})
"""


def texts_loader(project: Project, glob: str = "data/*.txt") -> str:
    return project.write("src/texts.vmd.py", TEXTS.format(glob=glob))


async def test_editing_a_watched_file_notifies_and_the_next_load_is_fresh(
    project: Project, daemon: Daemon
) -> None:
    data = project.write("src/data/a.txt", "one")
    loader = texts_loader(project)
    first = await daemon.load(loader)
    assert exported(first) == {"texts": {"data/a.txt": "one"}, "events": []}
    mark = daemon.mark()
    project.write("src/data/a.txt", "two")
    change = await daemon.changed(loader, since=mark)
    assert change["reason"] == "watch"
    assert change["version"] == first["version"]
    assert change["events"] == [{"type": "change", "path": data}]
    result = await daemon.load(loader)
    assert result["version"] > first["version"]
    assert exported(result) == {
        "texts": {"data/a.txt": "two"},
        "events": [["change", "data/a.txt"]],
    }


async def test_adding_a_file_that_matches_the_glob_reports_add(
    project: Project, daemon: Daemon
) -> None:
    project.write("src/data/a.txt", "one")
    loader = texts_loader(project)
    await daemon.load(loader)
    mark = daemon.mark()
    added = project.write("src/data/b.txt", "bee")
    change = await daemon.changed(loader, since=mark)
    assert {"type": "add", "path": added} in change["events"]
    result = exported(await daemon.load(loader))
    assert result["texts"] == {"data/a.txt": "one", "data/b.txt": "bee"}
    assert ["add", "data/b.txt"] in result["events"]


async def test_adding_a_file_the_glob_does_not_match_changes_nothing(
    project: Project, daemon: Daemon
) -> None:
    project.write("src/data/a.txt", "one")
    loader = texts_loader(project)
    first = await daemon.load(loader)
    mark = daemon.mark()
    project.write("src/data/notes.md", "ignored")
    project.write("src/data/a.txt", "two")  # a real change afterwards, to wait on
    change = await daemon.changed(loader, since=mark)
    assert [e["path"] for e in change["events"]] == [project.path("src/data/a.txt")]
    assert exported(await daemon.load(loader))["texts"] == {"data/a.txt": "two"}
    assert (await daemon.load(loader))["version"] == first["version"] + 1


async def test_deleting_a_watched_file_reports_unlink(project: Project, daemon: Daemon) -> None:
    project.write("src/data/a.txt", "one")
    gone = project.write("src/data/b.txt", "two")
    loader = texts_loader(project)
    await daemon.load(loader)
    mark = daemon.mark()
    os.remove(gone)
    change = await daemon.changed(loader, since=mark)
    assert change["events"] == [{"type": "unlink", "path": gone}]
    result = await daemon.load(loader)
    assert exported(result)["texts"] == {"data/a.txt": "one"}
    assert exported(result)["events"] == [["unlink", "data/b.txt"]]
    assert result["watchFiles"] == [project.path("src/data/a.txt")]


async def test_a_load_racing_the_watcher_ignores_a_file_the_globs_do_not_match(
    project: Project, daemon: Daemon
) -> None:
    project.write("src/data/a.txt", "one")
    loader = texts_loader(project)
    first = await daemon.load(loader)
    fence = await Fence(daemon, project, "src/data").start()
    mark = daemon.mark()
    # In the folder the glob walks, but not matched (an editor's swap file, say): the load
    # racing the watcher sees the folder change and must not take it for a change of inputs.
    project.write("src/data/.a.txt.swp", "x")
    assert (await daemon.load(loader))["version"] == first["version"]
    await fence.passed()  # the watcher has reported the swap file too
    assert daemon.changes(loader, since=mark) == []
    assert (await daemon.load(loader))["version"] == first["version"]


async def test_atomic_save_serves_the_new_content(project: Project, daemon: Daemon) -> None:
    data = project.write("src/data/a.txt", "one")
    loader = texts_loader(project)
    await daemon.load(loader)
    mark = daemon.mark()
    project.write_atomic("src/data/a.txt", "saved atomically")
    change = await daemon.changed(loader, since=mark)
    assert change["events"] == [{"type": "change", "path": data}]
    result = exported(await daemon.load(loader))
    assert result["texts"] == {"data/a.txt": "saved atomically"}


async def test_editing_the_loader_reports_code_and_runs_the_new_code(
    project: Project, daemon: Daemon
) -> None:
    loader = project.write("src/a.vmd.py", "def load(ctx):\n    return 'export default 1;'\n")
    first = await daemon.load(loader)
    mark = daemon.mark()
    project.write("src/a.vmd.py", "def load(ctx):\n    return 'export default 2;'\n")
    change = await daemon.changed(loader, since=mark)
    assert change["reason"] == "code"
    result = await daemon.load(loader)
    assert result["code"] == "export default 2;"
    assert result["version"] > first["version"]


async def test_same_size_same_mtime_edit_of_a_helper_runs_the_new_code(
    project: Project, daemon: Daemon
) -> None:
    helper = project.write("src/helpers.py", "VALUE = 1\n")
    loader = project.write(
        "src/a.vmd.py",
        """
        import vmd
        from helpers import VALUE

        def load(ctx):
            return vmd.json_module(VALUE)
        """,
    )
    assert exported(await daemon.load(loader)) == 1
    before = os.stat(helper)
    mark = daemon.mark()
    project.write("src/helpers.py", "VALUE = 2\n")
    # Same size and the very same mtime: only a content-blind cache (a .pyc) would miss it.
    os.utime(helper, ns=(before.st_atime_ns, before.st_mtime_ns))
    change = await daemon.changed(loader, since=mark)
    assert change["reason"] == "code"
    assert exported(await daemon.load(loader)) == 2


@pytest.mark.parametrize("mode", ["serve", "build"])
async def test_a_new_query_right_after_a_helper_edit_runs_the_new_helper(
    project: Project, start_daemon: StartDaemon, mode: str
) -> None:
    # The new id runs in the worker that imported the old helper, unless the daemon notices
    # the edit before the watcher says so (build mode has no watcher at all).
    daemon = await start_daemon(options={"mode": mode})
    project.write("src/helpers.py", "WORD = 'old'\n")
    loader = project.write(
        "src/a.vmd.py",
        """
        import vmd
        import helpers

        def load(ctx):
            return vmd.json_module(helpers.WORD)
        """,
    )
    assert exported(await daemon.load(loader)) == "old"
    project.write("src/helpers.py", "WORD = 'new'\n")
    assert exported(await daemon.load(loader + "?lang=fr")) == "new"
    assert exported(await daemon.load(loader)) == "new"


async def test_missing_helper_module_recovers_once_it_is_created(
    project: Project, daemon: Daemon
) -> None:
    loader = project.write(
        "src/a.vmd.py",
        """
        import vmd
        from later import VALUE

        def load(ctx):
            return vmd.json_module(VALUE)
        """,
    )
    error = await daemon.load_error(loader)
    assert "ModuleNotFoundError" in error.data["message"]
    mark = daemon.mark()
    project.write("src/later.py", "VALUE = 'here now'\n")
    await daemon.changed(loader, since=mark)
    assert exported(await daemon.load(loader)) == "here now"


async def test_a_module_created_where_it_would_shadow_an_import_takes_over(
    project: Project, daemon: Daemon
) -> None:
    project.write("shadow.py", "WHERE = 'root'\n")
    loader = project.write(
        "src/a.vmd.py",
        """
        import vmd
        from shadow import WHERE

        def load(ctx):
            return vmd.json_module(WHERE)
        """,
    )
    assert exported(await daemon.load(loader)) == "root"
    mark = daemon.mark()
    project.write("src/shadow.py", "WHERE = 'next to the loader'\n")  # first on the path
    assert (await daemon.changed(loader, since=mark))["reason"] == "code"
    assert exported(await daemon.load(loader)) == "next to the loader"


async def test_load_right_after_a_write_is_never_stale(project: Project, daemon: Daemon) -> None:
    project.write("src/data/a.txt", "v000")
    loader = texts_loader(project)
    await daemon.load(loader)
    for i in range(1, 21):
        text = f"v{i:03d}"  # same size every time: only the stat re-check can tell
        project.write("src/data/a.txt", text)
        result = await daemon.load(loader)
        assert exported(result)["texts"] == {"data/a.txt": text}, f"stale at write {i}"


async def test_a_load_right_after_a_write_is_never_stale_among_thousands_of_watched_files(
    project: Project, daemon: Daemon
) -> None:
    # Past what a load re-stats (the watcher's fence vouches for the files instead).
    folder = project.path("src/data")
    os.makedirs(folder)
    for n in range(1_500):
        with open(os.path.join(folder, f"f{n:04d}.txt"), "w") as f:
            f.write("-")
    project.write("src/data/a.txt", "v000")
    loader = texts_loader(project)
    await daemon.load(loader)
    for i in range(1, 21):
        text = f"v{i:03d}"
        project.write("src/data/a.txt" if i % 2 else "src/data/f0700.txt", text)
        texts = exported(await daemon.load(loader))["texts"]
        assert texts["data/a.txt" if i % 2 else "data/f0700.txt"] == text, f"stale at write {i}"
    project.write("src/data/new.txt", "new")  # a file appearing among them, too
    assert exported(await daemon.load(loader))["texts"]["data/new.txt"] == "new"


# TEXTS, but a re-run says it started and then holds until the test opens the gate (paths
# outside what it watches, tested with os.path only, so neither is one of its inputs).
GATED = """
import os, time
import vmd

watch = ["data/*.txt"]

def load(ctx):
    if ctx.events:
        open({started!r}, "w").close()
        while not os.path.exists({gate!r}):
            time.sleep(0.01)
    folder = ctx.path.parent
    return vmd.json_module({{name: (folder / name).read_text() for name in ctx.watched_files}})
"""


async def test_a_burst_of_writes_during_a_run_is_one_more_run_that_ends_on_the_final_files(
    project: Project, daemon: Daemon
) -> None:
    for n in range(20):
        project.write(f"src/data/f{n:02d}.txt", "0")
    started, gate = project.root / "run.started", project.root / "gate"
    loader = project.write("src/texts.vmd.py", GATED.format(started=str(started), gate=str(gate)))
    fence = await Fence(daemon, project, "src/data").start()
    first = await daemon.load(loader)
    mark = daemon.mark()
    for round in range(1, 11):
        for n in range(20):
            (project.root / f"src/data/f{n:02d}.txt").write_text(str(round))
        if round == 1:  # the rest of the burst lands while a run is under way
            await eventually(started.exists)
    await fence.passed()  # the daemon has heard of every write
    gate.touch()
    result = await daemon.load(loader)
    assert set(exported(result).values()) == {"10"}
    # 200 writes: the run they interrupted, then one run for everything that came during it.
    assert result["version"] - first["version"] == 2
    changes = [c for c in daemon.notifications("vmd/changed", since=mark) if c["id"] == loader]
    assert 1 <= len(changes) <= 2


async def test_explicitly_watched_files_under_node_modules_are_noticed(
    project: Project, daemon: Daemon
) -> None:
    data = project.write("node_modules/pkg/data.txt", "one")
    loader = project.write(
        "src/a.vmd.py",
        """
        import vmd

        watch = ["../node_modules/pkg/*.txt"]

        def load(ctx):
            return vmd.json_module((ctx.path.parent / ctx.watched_files[0]).read_text())
        """,
    )
    assert exported(await daemon.load(loader)) == "one"
    mark = daemon.mark()
    project.write("node_modules/pkg/data.txt", "two")
    change = await daemon.changed(loader, since=mark)
    assert change["events"] == [{"type": "change", "path": data}]
    assert exported(await daemon.load(loader)) == "two"


async def test_build_mode_sends_no_changed_but_loads_stay_fresh(
    project: Project, start_daemon: StartDaemon
) -> None:
    daemon = await start_daemon(options={"mode": "build"})
    project.write("src/data/a.txt", "one")
    loader = texts_loader(project)
    first = await daemon.load(loader)
    mark = daemon.mark()
    project.write("src/data/a.txt", "two")
    result = await daemon.load(loader)  # the stat re-check, not a watcher, sees the edit
    assert exported(result)["texts"] == {"data/a.txt": "two"}
    assert result["version"] == first["version"] + 1
    await daemon.roundtrip()  # no watcher: a report could only have come with the load
    assert daemon.notifications("vmd/changed", since=mark) == []


async def test_editing_a_file_the_loader_read_reruns_it(project: Project, daemon: Daemon) -> None:
    config = project.write("config.json", '{"title": "one"}')
    loader = project.write(
        "src/a.vmd.py",
        """
        import json, vmd

        def load(ctx):
            with open(ctx.path.parent.parent / "config.json") as f:
                return vmd.json_module(json.load(f)["title"])
        """,
    )
    first = await daemon.load(loader)
    assert config in first["dependencies"]
    mark = daemon.mark()
    project.write("config.json", '{"title": "two"}')
    change = await daemon.changed(loader, since=mark)
    assert (change["reason"], change["events"]) == ("watch", [{"type": "change", "path": config}])
    assert exported(await daemon.load(loader)) == "two"


async def test_files_created_in_a_new_subfolder_of_a_recursive_glob_are_added(
    project: Project, daemon: Daemon
) -> None:
    project.write("src/data/a.txt", "one")
    loader = texts_loader(project, "data/**/*.txt")
    await daemon.load(loader)
    mark = daemon.mark()
    deep = project.write("src/data/new/deeper/b.txt", "bee")  # mkdir -p, then write at once
    change = await daemon.changed(loader, since=mark)
    assert change["reason"] == "watch"
    result = await daemon.load(loader)
    assert exported(result)["texts"] == {"data/a.txt": "one", "data/new/deeper/b.txt": "bee"}
    assert deep in result["watchFiles"]


async def test_deleting_the_loader_refuses_it_and_recreating_it_recovers(
    project: Project, daemon: Daemon
) -> None:
    loader = project.write("src/a.vmd.py", "def load(ctx):\n    return 'export default 1;'\n")
    await daemon.load(loader)
    fence = await Fence(daemon, project, "src").start()
    mark = daemon.mark()
    os.remove(loader)
    change = await daemon.changed(loader, since=mark)
    assert change["reason"] == "code"
    error = await daemon.load_error(loader)
    assert error.data["kind"] == "refused"
    # The deletion is reported once: loading again (as a client does on each report) must
    # not report it again, or the client and the daemon feed each other forever.
    mark = daemon.mark()
    for _ in range(3):
        assert (await daemon.load_error(loader)).data["kind"] == "refused"
    await fence.passed()  # whatever the watcher had left to say about src/ has been said
    assert daemon.changes(loader, since=mark) == []
    project.write("src/a.vmd.py", "def load(ctx):\n    return 'export default 2;'\n")
    assert (await daemon.load(loader))["code"] == "export default 2;"


async def test_re_pointing_a_symlinked_loader_runs_the_new_target(
    project: Project, daemon: Daemon
) -> None:
    project.write("src/real.vmd.py", "def load(ctx):\n    return 'export default \"real\";'\n")
    project.write("src/other.vmd.py", "def load(ctx):\n    return 'export default \"other\";'\n")
    alias = project.path("src/alias.vmd.py")
    os.symlink("real.vmd.py", alias)
    assert (await daemon.load(alias))["code"] == 'export default "real";'
    mark = daemon.mark()
    os.symlink("other.vmd.py", alias + ".new")
    os.replace(alias + ".new", alias)  # as `ln -sfn` does
    assert (await daemon.changed(alias, since=mark))["reason"] == "code"
    assert (await daemon.load(alias))["code"] == 'export default "other";'


async def test_a_worker_crash_caused_by_a_change_is_reported_once_and_recovers(
    project: Project, daemon: Daemon
) -> None:
    project.write("src/mode.txt", "ok")
    loader = project.write(
        "src/a.vmd.py",
        """
        import os

        watch = ["mode.txt"]

        def load(ctx):
            if (ctx.path.parent / "mode.txt").read_text() == "crash":
                os._exit(3)
            return "export default 1;"
        """,
    )
    await daemon.load(loader)
    fence = await Fence(daemon, project, "src").start()
    mark = daemon.mark()
    project.write("src/mode.txt", "crash")
    await daemon.changed(loader, since=mark)
    assert (await daemon.load_error(loader)).data["kind"] == "crash"
    mark = daemon.mark()
    pids = daemon.worker_pids()
    for _ in range(3):  # the failure is served from memory: no report, no new worker
        assert (await daemon.load_error(loader)).data["kind"] == "crash"
    await fence.passed()  # the watcher has said all it had to about mode.txt
    assert daemon.changes(loader, since=mark) == []
    assert daemon.worker_pids() == pids
    project.write("src/mode.txt", "ok")
    await daemon.changed(loader, since=mark)
    assert (await daemon.load(loader))["code"] == "export default 1;"


async def test_a_module_failing_on_bad_input_recovers_when_the_input_is_fixed(
    project: Project, daemon: Daemon
) -> None:
    project.write("src/data/users.json", "{not json")
    loader = project.write(
        "src/a.vmd.py",
        """
        import json, vmd

        watch = ["data/users.json"]

        def load(ctx):
            return vmd.json_module(json.loads((ctx.path.parent / "data/users.json").read_text()))
        """,
    )
    error = await daemon.load_error(loader)
    assert error.data["message"].startswith("JSONDecodeError")
    mark = daemon.mark()
    project.write("src/data/users.json", '["ada"]')
    await daemon.changed(loader, since=mark)
    assert exported(await daemon.load(loader)) == ["ada"]


async def test_data_changes_keep_the_loader_instance_and_code_changes_replace_it(
    project: Project, daemon: Daemon
) -> None:
    cleaned = project.root.parent / "cleaned"
    project.write("src/data/a.txt", "one")
    source = f"""
        import os, vmd

        watch = ["data/*.txt"]
        setups = 0

        def setup(ctx):
            global setups
            setups += 1
            return lambda: open({str(cleaned)!r}, "a").write(str(os.getpid()) + "\\n")

        def load(ctx):
            return vmd.json_module({{"pid": os.getpid(), "setups": setups, "rev": 1}})
        """
    loader = project.write("src/a.vmd.py", source)
    first = exported(await daemon.load(loader))
    mark = daemon.mark()
    project.write("src/data/a.txt", "two")
    await daemon.changed(loader, since=mark)
    second = exported(await daemon.load(loader))
    assert second == first  # same process, setup not re-run: imports are not paid again
    assert not cleaned.exists()
    mark = daemon.mark()
    project.write("src/a.vmd.py", source.replace('"rev": 1', '"rev": 2'))
    await daemon.changed(loader, since=mark)
    third = exported(await daemon.load(loader))
    assert third["rev"] == 2 and third["pid"] != first["pid"] and third["setups"] == 1
    # the replaced instance's cleanup ran, in the old process
    assert cleaned.read_text().split() == [str(first["pid"])]


async def test_a_code_change_notifies_every_id_of_the_loader(
    project: Project, daemon: Daemon
) -> None:
    loader = project.write("src/a.vmd.py", "def load(ctx):\n    return repr(ctx.query)\n")
    ids = [loader, loader + "?a=1", loader + "?b=2"]
    for id in ids:
        await daemon.load(id)
    mark = daemon.mark()
    project.write("src/a.vmd.py", "def load(ctx):\n    return 'v2' + repr(ctx.query)\n")
    for id in ids:
        assert (await daemon.changed(id, since=mark))["reason"] == "code"
    for id in ids:
        assert (await daemon.load(id))["code"].startswith("v2")



@pytest.mark.parametrize("glob", ["data/*.txt", "data/**/*.txt"])
async def test_a_watched_folder_deleted_and_recreated_keeps_reporting_edits(
    project: Project, daemon: Daemon, glob: str
) -> None:
    project.write("src/data/a.txt", "one")
    loader = texts_loader(project, glob)
    await daemon.load(loader)
    for turn in range(3):
        mark = daemon.mark()
        shutil.rmtree(project.path("src/data"))
        await daemon.changed(loader, since=mark)
        await daemon.load(loader)
        mark = daemon.mark()
        project.write("src/data/a.txt", f"back {turn}")
        await daemon.changed(loader, since=mark)
        assert exported(await daemon.load(loader))["texts"] == {"data/a.txt": f"back {turn}"}
        await edits_are_reported(project, daemon, loader, f"{turn}.")


@pytest.mark.parametrize("how", ["recreated", "renamed-away-and-back", "swapped", "root"])
async def test_a_watched_folder_replaced_at_once_keeps_reporting_edits(
    project: Project, daemon: Daemon, how: str
) -> None:
    # What `git checkout` or a regenerate-the-folder step does: no event in between is seen.
    project.write("src/data/a.txt", "one")
    loader = texts_loader(project)
    await daemon.load(loader)
    data = project.path("src/data")
    mark = daemon.mark()
    if how == "recreated":
        shutil.rmtree(data)
        project.write("src/data/a.txt", "two")
    elif how == "renamed-away-and-back":
        os.rename(data, data + ".away")
        os.rename(data + ".away", data)
        project.write("src/data/a.txt", "two")
    elif how == "swapped":  # a new folder renamed into the old one's place
        project.write("src/data.new/a.txt", "two")
        shutil.rmtree(data)
        os.rename(data + ".new", data)
    else:  # the workspace root itself, replaced by a copy
        project.write("src/data/a.txt", "two")
        root = str(project.root)
        shutil.copytree(root, root + ".new")
        shutil.rmtree(root)
        os.rename(root + ".new", root)
    await daemon.changed(loader, since=mark)
    assert exported(await daemon.load(loader))["texts"] == {"data/a.txt": "two"}
    await edits_are_reported(project, daemon, loader, "")


async def edits_are_reported(project: Project, daemon: Daemon, loader: str, tag: str) -> None:
    """Three edits of src/data/a.txt: each one `vmd/changed`, then a fresh load."""
    for n in range(3):
        mark = daemon.mark()
        project.write("src/data/a.txt", f"edit {tag}{n}")
        change = await daemon.changed(loader, since=mark)
        assert change["events"] == [{"type": "change", "path": project.path("src/data/a.txt")}]
        texts = exported(await daemon.load(loader))["texts"]
        assert texts == {"data/a.txt": f"edit {tag}{n}"}


OWN_OUTPUT = """
import os, vmd

watch = ["gen/*.txt"]
RUNS = [0]

def load(ctx):
    RUNS[0] += 1
    gen = ctx.path.parent / "gen"
    gen.mkdir(exist_ok=True)
    target = gen / "generated.txt"
    if {atomic}:
        (gen / ".generated.tmp").write_text("the same every time")
        os.replace(gen / ".generated.tmp", target)
    else:
        target.write_text("the same every time")
    return vmd.json_module({{"runs": RUNS[0], "inputs": sorted(ctx.watched_files)}})
"""


@pytest.mark.parametrize("atomic", [False, True], ids=["in-place", "atomic"])
async def test_a_loader_writing_into_its_own_watch_globs_does_not_trigger_itself(
    project: Project, daemon: Daemon, atomic: bool
) -> None:
    project.write("src/gen/input.txt", "in")
    loader = project.write("src/own.vmd.py", OWN_OUTPUT.format(atomic=atomic))
    mark = daemon.mark()
    first = exported(await daemon.load(loader))
    await asyncio.sleep(1.0)  # a loop would have run it hundreds of times by now
    assert len(daemon.changes(loader, since=mark)) <= 1
    settled = exported(await daemon.load(loader))
    assert settled["runs"] <= first["runs"] + 1
    # Someone else's edit of a watched file is still a change.
    mark = daemon.mark()
    project.write("src/gen/input.txt", "edited")
    await daemon.changed(loader, since=mark)
    assert exported(await daemon.load(loader))["runs"] > settled["runs"]
