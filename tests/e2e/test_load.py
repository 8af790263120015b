"""vmd/load, vmd/reload, vmd/invalidate and ctx.reload against a real daemon."""

from __future__ import annotations

import asyncio
from pathlib import Path

from harness import Daemon, Fence, Project, StartDaemon, eventually, exported

# Appends one line per run to a file outside anything the loader watches or reads (it only
# writes it), so the number of lines counts real runs of the loader.
COUNTING = """
import os, vmd

def load(ctx):
    with open(os.environ.get("VMD_TEST_COUNTER", "") or {counter!r}, "a") as f:
        f.write("run\\n")
    return vmd.json_module({{"query": ctx.query, "data": ctx.data, "mode": ctx.mode}})
"""


def counting_loader(project: Project, rel: str = "src/count.vmd.py") -> tuple[str, Path]:
    counter = project.root.parent / f"runs-{Path(rel).name}.txt"
    return project.write(rel, COUNTING.format(counter=str(counter))), counter


def runs(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


async def test_string_result_is_served_with_version_1_and_null_map(
    project: Project, daemon: Daemon
) -> None:
    loader = project.write("a.vmd.py", "def load(ctx):\n    return 'export default 42;'\n")
    result = await daemon.load(loader)
    assert result["id"] == loader
    assert result["code"] == "export default 42;"
    assert result["map"] is None
    assert result["version"] == 1


async def test_code_and_map_result_is_served_as_given(project: Project, daemon: Daemon) -> None:
    loader = project.write(
        "a.vmd.py",
        """
        def load(ctx):
            return {"code": "export default 1;", "map": {"version": 3, "mappings": ""}}
        """,
    )
    result = await daemon.load(loader)
    assert result["code"] == "export default 1;"
    assert result["map"] == {"version": 3, "mappings": ""}


async def test_second_load_is_served_from_memory_without_rerunning(
    project: Project, daemon: Daemon
) -> None:
    loader, counter = counting_loader(project)
    first = await daemon.load(loader)
    again = await daemon.load(loader)
    third = await daemon.load(loader)
    assert first["version"] == again["version"] == third["version"] == 1
    assert again["code"] == first["code"]
    assert runs(counter) == 1


async def test_query_string_reaches_ctx_query(project: Project, daemon: Daemon) -> None:
    loader, _ = counting_loader(project)
    result = await daemon.load(loader + "?type=admin&page=2")
    assert exported(result)["query"] == {"type": "admin", "page": "2"}


async def test_async_load_function_is_awaited(project: Project, daemon: Daemon) -> None:
    loader = project.write(
        "a.vmd.py",
        """
        import asyncio, vmd

        async def load(ctx):
            await asyncio.sleep(0.01)
            return vmd.json_module("awaited")
        """,
    )
    assert exported(await daemon.load(loader)) == "awaited"


async def test_results_are_keyed_by_the_exact_id_string(
    project: Project, daemon: Daemon
) -> None:
    loader, counter = counting_loader(project)
    a = await daemon.load(loader + "?a=1&b=2")
    b = await daemon.load(loader + "?b=2&a=1")
    plain = await daemon.load(loader)
    assert (a["id"], b["id"], plain["id"]) == (loader + "?a=1&b=2", loader + "?b=2&a=1", loader)
    assert a["version"] == b["version"] == plain["version"] == 1
    assert runs(counter) == 3  # two spellings of one query are two modules


async def test_watch_files_watch_dirs_and_dependencies_are_absolute(
    project: Project, daemon: Daemon
) -> None:
    project.write("src/data/a.txt", "A")
    project.write("src/data/b.txt", "B")
    project.write("src/data/skip.csv", "no")
    helper = project.write("src/helpers.py", "def shout(s):\n    return s.upper()\n")
    read = project.write("content/extra.json", "{}")
    project.write("content/plain.txt", "plain")
    loader = project.write(
        "src/a.vmd.py",
        """
        import vmd
        from helpers import shout

        watch = ["data/*.txt", "../content/plain.txt", "missing/**/*.md"]

        def load(ctx):
            open(ctx.path.parent.parent / "content" / "extra.json").read()
            return vmd.json_module([shout(f) for f in ctx.watched_files])
        """,
    )
    result = await daemon.load(loader)
    assert exported(result) == ["../CONTENT/PLAIN.TXT", "DATA/A.TXT", "DATA/B.TXT"]
    assert result["watchFiles"] == [
        project.path("content/plain.txt"), project.path("src/data/a.txt"),
        project.path("src/data/b.txt"),
    ]
    # Where a new file may match: existing glob folders only (a plain path is a watch file).
    assert result["watchDirs"] == [project.path("src/data")]
    assert {loader, helper, read} <= set(result["dependencies"])
    assert all(Path(p).is_absolute() for p in result["dependencies"])


async def test_ctx_mode_is_serve_by_default(project: Project, daemon: Daemon) -> None:
    loader, _ = counting_loader(project)
    assert exported(await daemon.load(loader))["mode"] == "serve"


async def test_ctx_mode_is_build_in_build_mode(
    project: Project, start_daemon: StartDaemon
) -> None:
    daemon = await start_daemon(options={"mode": "build"})
    loader, _ = counting_loader(project)
    assert exported(await daemon.load(loader))["mode"] == "build"


async def test_reload_passes_data_and_bumps_the_version(
    project: Project, daemon: Daemon
) -> None:
    loader, counter = counting_loader(project)
    first = await daemon.load(loader)
    result = await daemon.reload(loader, {"page": 2, "tags": ["x"]})
    assert result["version"] == first["version"] + 1
    assert exported(result)["data"] == {"page": 2, "tags": ["x"]}
    assert runs(counter) == 2
    # the reloaded output is what later loads serve
    assert await daemon.load(loader) == result


async def test_reload_notifies_changed_with_reason_reload(
    project: Project, daemon: Daemon
) -> None:
    loader, _ = counting_loader(project)
    first = await daemon.load(loader)
    mark = daemon.mark()
    await daemon.reload(loader, 1)
    change = await daemon.changed(loader, since=mark)
    assert (change["reason"], change["version"]) == ("reload", first["version"])


async def test_invalidate_by_id_returns_it_notifies_and_next_load_reruns(
    project: Project, daemon: Daemon
) -> None:
    loader, counter = counting_loader(project)
    other, _ = counting_loader(project, "src/other.vmd.py")
    first = await daemon.load(loader)
    await daemon.load(other)
    mark = daemon.mark()
    assert await daemon.invalidate(id=loader) == [loader]
    change = await daemon.changed(loader, since=mark)
    assert (change["reason"], change["version"]) == ("invalidate", first["version"])
    again = await daemon.load(loader)
    assert again["version"] == first["version"] + 1
    assert runs(counter) == 2
    assert not [c for c in daemon.notifications("vmd/changed", since=mark) if c["id"] == other]


async def test_a_change_after_an_invalidate_is_not_reported_again(
    project: Project, daemon: Daemon
) -> None:
    project.write("src/data/a.txt", "one")
    loader = project.write(
        "src/a.vmd.py",
        """
        import vmd
        watch = ["data/*.txt"]
        def load(ctx):
            return vmd.json_module((ctx.path.parent / "data/a.txt").read_text())
        """,
    )
    await daemon.load(loader)
    fence = await Fence(daemon, project, "src/data").start()
    mark = daemon.mark()
    await daemon.invalidate(id=loader)
    await daemon.changed(loader, since=mark)
    project.write("src/data/a.txt", "two")
    assert exported(await daemon.load(loader)) == "two"
    await fence.passed()  # the watcher has reported the write too
    reports = daemon.changes(loader, since=mark)
    assert [r["reason"] for r in reports] == ["invalidate"]  # stale once, reported once


async def test_invalidating_twice_drops_and_reports_once(project: Project, daemon: Daemon) -> None:
    loader, _ = counting_loader(project)
    await daemon.load(loader)
    mark = daemon.mark()
    assert await daemon.invalidate(id=loader) == [loader]
    await daemon.changed(loader, since=mark)
    assert await daemon.invalidate(id=loader) == []  # nothing cached any more
    await daemon.roundtrip()  # nothing runs: a second report could only come with an answer
    assert len(daemon.notifications("vmd/changed", since=mark)) == 1


async def test_invalidate_by_path_drops_every_module_depending_on_it(
    project: Project, daemon: Daemon
) -> None:
    data = project.write("src/data/a.txt", "one")
    loader = project.write(
        "src/a.vmd.py",
        """
        import vmd
        watch = ["data/*.txt"]
        def load(ctx):
            return vmd.json_module(ctx.query)
        """,
    )
    unrelated, _ = counting_loader(project)
    await daemon.load(loader)
    await daemon.load(loader + "?x=1")
    await daemon.load(unrelated)
    mark = daemon.mark()
    ids = await daemon.invalidate(path=data)
    assert sorted(ids) == sorted([loader, loader + "?x=1"])
    for id in ids:
        assert (await daemon.changed(id, since=mark))["reason"] == "invalidate"
    assert (await daemon.load(loader + "?x=1"))["version"] == 2
    assert (await daemon.load(unrelated))["version"] == 1


async def test_invalidate_of_an_unknown_id_returns_nothing(
    project: Project, daemon: Daemon
) -> None:
    assert await daemon.invalidate(id=project.path("never-loaded.vmd.py")) == []


async def test_ctx_reload_from_a_setup_thread_reruns_the_module_with_its_data(
    project: Project, daemon: Daemon
) -> None:
    trigger = project.root.parent / "trigger"
    loader = project.write(
        "src/feed.vmd.py",
        f"""
        import os, threading, time, vmd

        def setup(ctx):
            stop = threading.Event()
            def poll():
                while not stop.is_set():
                    if os.path.exists({str(trigger)!r}):
                        os.remove({str(trigger)!r})
                        ctx.reload({{"pushed": True}})
                    time.sleep(0.01)
            threading.Thread(target=poll, daemon=True).start()
            return stop.set

        def load(ctx):
            return vmd.json_module(ctx.data)
        """,
    )
    first = await daemon.load(loader)
    assert exported(first) is None
    mark = daemon.mark()
    trigger.write_text("go")
    change = await daemon.changed(loader, since=mark)
    assert (change["reason"], change["version"]) == ("reload", 1)
    result = await daemon.load(loader)
    assert result["version"] == 2
    assert exported(result) == {"pushed": True}


async def test_concurrent_loads_of_a_new_module_share_one_run(
    project: Project, daemon: Daemon
) -> None:
    loader, counter = counting_loader(project)
    results = await asyncio.gather(*(daemon.load(loader) for _ in range(10)))
    assert {r["version"] for r in results} == {1}
    assert runs(counter) == 1


async def test_load_many_answers_each_id_in_order_as_its_own_load_would(
    project: Project, daemon: Daemon
) -> None:
    loader = project.write(
        "src/page.vmd.py",
        """
        import vmd
        def load(ctx):
            n = int(ctx.query["n"])
            return vmd.json_module({"n": 10 // (n - 2)})
        """,
    )
    outside = str(project.root.parent / "elsewhere.vmd.py")
    ids = [f"{loader}?n=1", f"{loader}?n=2", f"{loader}?n=3", outside]
    answer = await daemon.call("vmd/loadMany", {"ids": ids})
    first, failed, third, refused = answer["results"]
    assert exported(first["result"]) == {"n": -10} and "error" not in first
    assert exported(third["result"]) == {"n": 10}
    assert failed["error"]["code"] == -32010 and "result" not in failed
    assert failed["error"]["data"]["message"].startswith("ZeroDivisionError: ")
    assert (failed["error"]["data"]["file"], failed["error"]["data"]["line"]) == (loader, 5)
    # Exactly what vmd/load answers for the same ids.
    assert failed["error"] == (await daemon.load_error(ids[1])).error
    assert refused["error"] == (await daemon.load_error(outside)).error
    assert refused["error"]["code"] == -32020


async def test_load_many_runs_a_repeated_id_once_and_serves_loaded_ones_from_memory(
    project: Project, daemon: Daemon
) -> None:
    loader, counter = counting_loader(project)
    await daemon.load(f"{loader}?k=a")
    answer = await daemon.call(
        "vmd/loadMany", {"ids": [f"{loader}?k=a", f"{loader}?k=b", f"{loader}?k=b"]}
    )
    assert [o["result"]["version"] for o in answer["results"]] == [1, 1, 1]
    assert [exported(o["result"])["query"] for o in answer["results"]] == [
        {"k": "a"}, {"k": "b"}, {"k": "b"},
    ]
    assert runs(counter) == 2  # ?k=a once before, ?k=b once now


async def test_load_many_of_no_ids_answers_no_results(daemon: Daemon) -> None:
    assert await daemon.call("vmd/loadMany", {"ids": []}) == {"results": []}


async def test_load_many_never_answers_output_reported_stale_while_it_waited(
    project: Project, daemon: Daemon
) -> None:
    """The answer waits for the slowest id: one whose input changed meanwhile is answered with
    its re-run, as its own vmd/load (answered before the vmd/changed) would have been."""
    release = project.root.parent / "release"  # outside the project: not one of its inputs
    slow = project.write(
        "src/slow.vmd.py",
        f"""
        import os, time
        def load(ctx):
            while not os.path.exists({str(release)!r}):
                time.sleep(0.01)
            return ''
        """,
    )
    project.write("src/y.txt", "old")
    ran = project.root.parent / "y-ran.txt"  # outside the project: not one of its inputs
    fast = project.write(
        "src/y.vmd.py",
        f"""
        import vmd
        watch = ["y.txt"]
        def load(ctx):
            text = (ctx.path.parent / "y.txt").read_text()
            open({str(ran)!r}, "w").close()
            return vmd.json_module(text)
        """,
    )
    mark = daemon.mark()
    answer = asyncio.ensure_future(daemon.call("vmd/loadMany", {"ids": [slow, fast]}))
    await eventually(ran.exists)  # the fast one has its output; the slow one still runs
    project.write("src/y.txt", "new")
    stale = await daemon.changed(fast, since=mark)
    assert not answer.done()
    release.touch()  # the slow one ends only now
    result = (await answer)["results"][1]["result"]
    assert result["version"] > stale["version"]
    assert exported(result) == "new"


async def test_a_daemon_busy_with_slow_loads_says_so_every_second_and_then_falls_quiet(
    project: Project, daemon: Daemon
) -> None:
    """A vmd/loadMany is answered once all its modules have run: meanwhile the client hears
    `$/vmd/busy`, so it can tell a busy daemon from a stuck one."""
    slow = project.write(
        "src/slow.vmd.py", "import time\ndef load(ctx):\n    time.sleep(1.2)\n    return ''\n"
    )
    mark = daemon.mark()
    answer = await daemon.call("vmd/loadMany", {"ids": [f"{slow}?n=1", f"{slow}?n=2"]})
    assert all("result" in outcome for outcome in answer["results"])
    busy = daemon.notifications("$/vmd/busy", since=mark)
    assert len(busy) >= 2 and busy[0] == {"requests": 1}
    mark = daemon.mark()
    await asyncio.sleep(1.5)
    assert daemon.notifications("$/vmd/busy", since=mark) == []
