"""What counts as a dependency: files read at import, in setup, by load, and files written."""

from __future__ import annotations

import os

from harness import Daemon, Fence, Project, exported


async def test_a_file_read_at_import_time_gets_a_fresh_process_when_it_changes(
    project: Project, daemon: Daemon
) -> None:
    project.write("config.json", '{"greeting": "hello"}')
    loader = project.write(
        "src/greet.vmd.py",
        """
        import json
        from pathlib import Path
        import vmd
        CONFIG = json.loads(Path("config.json").read_text())  # module state from a data file
        def load(ctx):
            return vmd.json_module(CONFIG["greeting"])
        """,
    )
    first = await daemon.load(loader)
    assert exported(first) == "hello"
    assert project.path("config.json") in first["dependencies"]
    mark = daemon.mark()
    project.write("config.json", '{"greeting": "howdy"}')
    change = await daemon.changed(loader, since=mark)
    assert change["reason"] == "code"
    assert exported(await daemon.load(loader)) == "howdy"


async def test_a_file_read_by_load_reruns_the_module(project: Project, daemon: Daemon) -> None:
    project.write("rows.txt", "a")
    loader = project.write(
        "src/rows.vmd.py",
        """
        from pathlib import Path
        import vmd
        def load(ctx):
            return vmd.json_module(Path("rows.txt").read_text())
        """,
    )
    assert exported(await daemon.load(loader)) == "a"
    mark = daemon.mark()
    project.write("rows.txt", "b")
    change = await daemon.changed(loader, since=mark)
    assert change["reason"] == "watch"
    assert exported(await daemon.load(loader)) == "b"


async def test_a_loader_that_writes_and_rereads_its_own_cache_settles(
    project: Project, daemon: Daemon
) -> None:
    project.write("cache.txt", "0")
    loader = project.write(
        "src/cached.vmd.py",
        """
        from pathlib import Path
        import vmd
        def load(ctx):
            cache = Path("cache.txt")
            runs = int(cache.read_text()) + 1
            cache.write_text(str(runs))
            return vmd.json_module(int(cache.read_text()))
        """,
    )
    # The project root is watched, so that the watcher hears of the loader's own writes.
    fence = await Fence(daemon, project, ".").start()
    first = await daemon.load(loader)
    again = await daemon.load(loader)
    assert exported(first) == exported(again) == 1
    assert again["version"] == first["version"]
    await fence.passed()  # its own write must not make it stale and re-run it forever
    assert daemon.changes(loader) == []
    assert (await daemon.load(loader))["version"] == first["version"]


async def test_dependencies_list_only_existing_files_but_missing_ones_are_still_watched(
    project: Project, daemon: Daemon
) -> None:
    loader = project.write(
        "src/opt.vmd.py",
        """
        import vmd
        try:
            from extras import VALUE  # optional: may not exist yet
        except ImportError:
            VALUE = "default"
        def load(ctx):
            return vmd.json_module(VALUE)
        """,
    )
    first = await daemon.load(loader)
    assert exported(first) == "default"
    assert all(os.path.exists(p) for p in first["dependencies"]), first["dependencies"]
    mark = daemon.mark()
    project.write("src/extras.py", "VALUE = 'extra'\n")
    await daemon.changed(loader, since=mark)
    second = await daemon.load(loader)
    assert exported(second) == "extra"
    assert project.path("src/extras.py") in second["dependencies"]
