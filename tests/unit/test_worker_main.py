"""What a worker does with a loader: results, Context, setup/cleanup, dependency capture, errors.

Every test drives a real worker process through WorkerPool (see tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import py_compile
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Workers


async def test_string_result_becomes_the_module_code(workers: Workers) -> None:
    loader = workers.write(
        "a.vmd.py",
        """
        import vmd
        def load(ctx):
            return vmd.json_module({"id": ctx.id, "query": ctx.query, "mode": ctx.mode})
        """,
    )
    done = await workers.run(loader, "type=admin")
    assert done.ok, done.error
    assert done.map is None
    assert json.loads(json.loads(done.code.split("JSON.parse(", 1)[1].rsplit(")", 1)[0])) == {
        "id": f"{loader}?type=admin",
        "query": {"type": "admin"},
        "mode": "serve",
    }
    assert list(done.code_deps) == [loader]


async def test_dict_result_carries_code_and_map(workers: Workers) -> None:
    loader = workers.write(
        "a.vmd.py",
        """
        def load(ctx):
            return {"code": "export default 1;", "map": {"version": 3, "mappings": ""}}
        """,
    )
    done = await workers.run(loader)
    assert (done.ok, done.code, done.map) == (
        True,
        "export default 1;",
        {"version": 3, "mappings": ""},
    )


async def test_async_load_and_setup_tasks_share_one_persistent_loop(workers: Workers) -> None:
    loader = workers.write(
        "a.vmd.py",
        """
        import asyncio
        ticks = 0
        tasks = []
        async def tick():
            global ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)
        async def setup(ctx):
            tasks.append(asyncio.get_running_loop().create_task(tick()))
        async def load(ctx):
            await asyncio.sleep(0)
            return str(ticks)
        """,
    )
    first = await workers.run(loader)
    assert first.ok, first.error
    later = first
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the task started by setup keeps running between runs
        later = await workers.run(loader)
        if int(later.code) > int(first.code):
            break
        await asyncio.sleep(0.01)
    assert int(later.code) > int(first.code)


async def test_load_returning_an_awaitable_is_awaited(workers: Workers) -> None:
    loader = workers.write(
        "a.vmd.py",
        """
        import asyncio
        async def make():
            return "export default 2;"
        def load(ctx):
            return make()
        """,
    )
    done = await workers.run(loader)
    assert (done.ok, done.code) == (True, "export default 2;")


async def test_setup_runs_once_per_id_and_cleanup_runs_for_each_id_on_replace(
    workers: Workers,
) -> None:
    loader = workers.write(
        "a.vmd.py",
        """
        from pathlib import Path
        setups = []
        def setup(ctx):
            setups.append(ctx.id)
            name = "cleaned-" + ctx.query["n"]
            return lambda: Path(ctx.path.parent, name).write_text("x")
        def load(ctx):
            return str(len(setups))
        """,
    )
    assert (await workers.run(loader, "n=a")).code == "1"
    assert (await workers.run(loader, "n=a")).code == "1"
    assert (await workers.run(loader, "n=b")).code == "2"

    await workers.pool.replace(loader)
    await workers.until((workers.root / "cleaned-a").exists)
    await workers.until((workers.root / "cleaned-b").exists)
    assert (await workers.run(loader, "n=a")).code == "1"  # a fresh module: setup again


async def test_failed_setup_keeps_no_instance_so_the_next_run_retries(workers: Workers) -> None:
    loader = workers.write(
        "a.vmd.py",
        """
        attempts = []
        def setup(ctx):
            attempts.append(1)
            if len(attempts) == 1:
                raise RuntimeError("first setup fails")
        def load(ctx):
            return str(len(attempts))
        """,
    )
    first = await workers.run(loader)
    assert not first.ok
    assert first.error is not None
    assert first.error.message == "RuntimeError: first setup fails"
    assert (first.error.file, first.error.line) == (loader, 6)
    assert (await workers.run(loader)).code == "2"
    assert (await workers.run(loader)).code == "2"


async def test_reload_from_a_setup_thread_reaches_on_reload(workers: Workers) -> None:
    loader = workers.write(
        "a.vmd.py",
        """
        import threading
        def setup(ctx):
            threading.Thread(target=lambda: ctx.reload({"rows": [1, 2]})).start()
        def load(ctx):
            return "export default 0;"
        """,
    )
    assert (await workers.run(loader)).ok
    await workers.until(lambda: workers.reloads)
    assert workers.reloads == [(loader, {"rows": [1, 2]})]


async def test_reload_with_unserialisable_data_raises_type_error_in_the_loader(
    workers: Workers,
) -> None:
    loader = workers.write(
        "a.vmd.py",
        """
        def load(ctx):
            try:
                ctx.reload(object())
            except TypeError as exc:
                return "TypeError: " + str(exc)
            return "no error"
        """,
    )
    done = await workers.run(loader)
    assert done.code.startswith("TypeError: ctx.reload(data)")
    assert workers.reloads == []


async def test_watch_globs_give_sorted_relative_files_only_and_events_pass_through(
    workers: Workers,
) -> None:
    for name in ("content/b.csv", "content/a.csv", "content/notes.txt", "content/dir.csv/x"):
        workers.write(name, "")
    loader = workers.write(
        "src/a.vmd.py",
        """
        import json
        watch = ["../content/*.csv"]
        def load(ctx):
            events = [[e.type, e.path] for e in ctx.events]
            return json.dumps({"files": ctx.watched_files, "events": events, "data": ctx.data})
        """,
    )
    done = await workers.run(loader, events=[("change", "../content/a.csv")], data={"k": 1})
    assert done.ok, done.error
    assert json.loads(done.code) == {
        "files": ["../content/a.csv", "../content/b.csv"],
        "events": [["change", "../content/a.csv"]],
        "data": {"k": 1},
    }
    content = str(workers.root / "content")
    assert done.globs == [f"{content}/*.csv"]
    assert done.watched_files == [f"{content}/a.csv", f"{content}/b.csv"]  # ctx's: relative
    assert {f"{content}/a.csv", f"{content}/b.csv", content} <= set(done.watched)
    assert done.watched[content] is not None  # folders too: an added file changes their mtime


async def test_watch_may_be_a_function_of_ctx(workers: Workers) -> None:
    workers.write("data/admin.json", "{}")
    workers.write("data/user.json", "{}")
    loader = workers.write(
        "a.vmd.py",
        """
        def watch(ctx):
            return ["data/" + ctx.query["type"] + ".json"]
        def load(ctx):
            return ",".join(ctx.watched_files)
        """,
    )
    assert (await workers.run(loader, "type=admin")).code == "data/admin.json"


async def test_bad_watch_value_is_an_error_at_its_line(workers: Workers) -> None:
    loader = workers.write(
        "a.vmd.py",
        """
        import vmd

        watch = "*.csv"
        def load(ctx):
            return ""
        """,
    )
    done = await workers.run(loader)
    assert not done.ok and done.error is not None
    assert "watch must be a list of glob strings" in done.error.message
    assert (done.error.file, done.error.line) == (loader, 4)


async def test_local_import_is_a_code_dep_and_a_same_size_edit_is_not_hidden_by_a_pyc(
    workers: Workers,
) -> None:
    helper = workers.write("helpers/names.py", 'VALUE = "aaa"\n')
    workers.write("helpers/__init__.py", "")
    loader = workers.write(
        "src/a.vmd.py",
        """
        from helpers.names import VALUE
        def load(ctx):
            return VALUE
        """,
    )
    # A .pyc that CPython would trust after a same-size edit within the same second.
    py_compile.compile(helper, doraise=True)
    before = os.stat(helper)
    assert (await workers.run(loader)).code == "aaa"

    Path(helper).write_text('VALUE = "bbb"\n')
    os.utime(helper, ns=(before.st_atime_ns, before.st_mtime_ns))
    await workers.pool.replace(loader)
    done = await workers.run(loader)
    assert done.code == "bbb"
    init = str(workers.root / "helpers" / "__init__.py")
    assert list(done.code_deps)[0] == loader
    assert {init, helper} <= set(done.code_deps)
    assert done.code_deps[helper] is not None
    assert done.code_deps[helper][1] == len('VALUE = "bbb"\n')


async def test_installed_packages_are_not_code_deps_even_inside_a_root(
    make_workers: Callable[..., Workers],
) -> None:
    # The repository holding the .venv is a root, so its site-packages lie under a root.
    harness = make_workers(extra_roots=[str(Path(sys.prefix).parent)])
    loader = harness.write(
        "a.vmd.py",
        """
        import idna
        def load(ctx):
            return "ok"
        """,
    )
    done = await harness.run(loader)
    assert done.ok, done.error
    assert list(done.code_deps) == [loader]


async def test_data_files_read_are_captured_with_their_signature(workers: Workers) -> None:
    workers.write("data.txt", "hello")
    workers.write("raw.bin", "x")
    loader = workers.write(
        "src/a.vmd.py",
        """
        import os
        from pathlib import Path
        def load(ctx):
            text = Path("data.txt").read_text()  # relative to the root (the cwd)
            os.close(os.open(str(ctx.path.parent.parent / "raw.bin"), os.O_RDONLY))
            Path("out.txt").write_text(text)  # written, not a dependency
            try:
                open("missing.txt")
            except FileNotFoundError:
                pass
            return text
        """,
    )
    done = await workers.run(loader)
    assert done.ok, done.error
    root = workers.root
    assert set(done.data_deps) == {str(root / p) for p in ("data.txt", "raw.bin", "missing.txt")}
    assert done.data_deps[str(root / "data.txt")] is not None
    assert done.data_deps[str(root / "missing.txt")] is None


async def test_files_read_at_import_or_in_setup_are_instance_deps_not_data_deps(
    workers: Workers,
) -> None:
    workers.write("config.json", "{}")
    workers.write("seed.txt", "s")
    workers.write("rows.txt", "r")
    loader = workers.write(
        "a.vmd.py",
        """
        from pathlib import Path
        CONFIG = Path("config.json").read_text()
        def setup(ctx):
            Path("seed.txt").read_text()
        def load(ctx):
            return Path("rows.txt").read_text()
        """,
    )
    done = await workers.run(loader)
    assert done.ok, done.error
    root = workers.root
    assert set(done.instance_deps) == {str(root / "config.json"), str(root / "seed.txt")}
    assert set(done.data_deps) == {str(root / "rows.txt")}


async def test_a_file_the_loader_writes_is_not_its_input_even_when_read_back(
    workers: Workers,
) -> None:
    loader = workers.write(
        "a.vmd.py",
        """
        from pathlib import Path
        def load(ctx):
            cache = Path("cache.json")
            hits = int(cache.read_text()) if cache.exists() else 0
            cache.write_text(str(hits + 1))
            return cache.read_text()
        """,
    )
    first = await workers.run(loader)
    second = await workers.run(loader)
    assert (first.code, second.code) == ("1", "2")
    assert str(workers.root / "cache.json") not in second.data_deps


async def test_missing_import_records_where_the_module_could_appear(workers: Workers) -> None:
    loader = workers.write(
        "src/a.vmd.py",
        """
        try:
            import not_written_yet
        except ImportError:
            not_written_yet = None
        def load(ctx):
            return str(not_written_yet)
        """,
    )
    done = await workers.run(loader)
    assert done.ok, done.error
    for folder in (workers.root / "src", workers.root):
        for candidate in ("not_written_yet.py", "not_written_yet/__init__.py"):
            assert done.code_deps[str(folder / candidate)] is None


async def test_exception_points_at_the_deepest_project_frame_and_keeps_deps(
    workers: Workers,
) -> None:
    workers.write("data.csv", "a,b")
    helper = workers.write(
        "helper.py",
        """
        def boom(text):
            raise ValueError("bad row: " + text)
        """,
    )
    loader = workers.write(
        "a.vmd.py",
        """
        import helper
        def load(ctx):
            text = open("data.csv").read()
            helper.boom(text)
        """,
    )
    done = await workers.run(loader)
    assert not done.ok and done.error is not None
    assert done.error.message == "ValueError: bad row: a,b"
    assert (done.error.file, done.error.line) == (helper, 3)
    assert 'helper.py", line 3, in boom' in done.error.traceback
    assert "vmd/loader.py" not in done.error.traceback
    assert list(done.code_deps) == [loader, helper]
    assert list(done.data_deps) == [str(workers.root / "data.csv")]


async def test_import_error_still_reports_deps_captured_so_far(workers: Workers) -> None:
    helper = workers.write("helper.py", "import json\nCONFIG = json.load(open('config.json'))\n")
    workers.write("config.json", "{not json")
    loader = workers.write("a.vmd.py", "import helper\ndef load(ctx):\n    return ''\n")
    done = await workers.run(loader)
    assert not done.ok and done.error is not None
    assert done.error.message.startswith("JSONDecodeError")
    assert (done.error.file, done.error.line) == (helper, 2)
    assert list(done.code_deps) == [loader, helper]
    assert list(done.instance_deps) == [str(workers.root / "config.json")]


async def test_a_loader_that_failed_to_import_is_imported_again_on_the_next_run(
    workers: Workers,
) -> None:
    loader = workers.write(
        "a.vmd.py",
        """
        TEXT = open("config.txt").read()
        def load(ctx):
            return TEXT
        """,
    )
    first = await workers.run(loader)
    assert not first.ok and first.error is not None
    assert first.error.message.startswith("FileNotFoundError")
    assert (first.error.file, first.error.line) == (loader, 2)
    assert first.instance_deps == {str(workers.root / "config.txt"): None}
    workers.write("config.txt", "configured")
    assert (await workers.run(loader)).code == "configured"


async def test_syntax_error_in_the_loader_points_at_its_line(workers: Workers) -> None:
    loader = workers.write("a.vmd.py", "import vmd\n\nx = = 1\ndef load(ctx):\n    return ''\n")
    done = await workers.run(loader)
    assert not done.ok and done.error is not None
    assert done.error.message.startswith("SyntaxError:")
    assert (done.error.file, done.error.line) == (loader, 3)
    assert list(done.code_deps) == [loader]


async def test_syntax_error_in_a_helper_points_at_the_helper(workers: Workers) -> None:
    helper = workers.write("helper.py", "def f(:\n    pass\n")
    loader = workers.write("a.vmd.py", "import helper\ndef load(ctx):\n    return ''\n")
    done = await workers.run(loader)
    assert done.error is not None
    assert (done.error.file, done.error.line) == (helper, 1)
    assert list(done.code_deps) == [loader, helper]


async def test_bad_return_value_is_an_error_at_def_load(workers: Workers) -> None:
    loader = workers.write(
        "a.vmd.py",
        """
        import vmd

        async def load(ctx):
            return 42
        """,
    )
    done = await workers.run(loader)
    assert not done.ok and done.error is not None
    assert done.error.message.startswith("TypeError: load() returned int;")
    assert (done.error.file, done.error.line) == (loader, 4)


async def test_a_str_subclass_is_served_as_plain_code(workers: Workers) -> None:
    """markupsafe.Markup and friends are str subclasses: the README asks only for a str."""
    loader = workers.write(
        "a.vmd.py",
        """
        class Markup(str):
            pass

        def load(ctx):
            return {"code": Markup("export default 1;"), "map": Markup('{"version": 3}')}
        """,
    )
    done = await workers.run(loader)
    assert done.ok, done.error
    assert (done.code, done.map) == ("export default 1;", '{"version": 3}')


@pytest.mark.parametrize(
    ("result", "what"),
    [("'export default \\ud800'", "code"), ("{'code': '', 'map': {'x': object()}}", "a map")],
)
async def test_output_that_cannot_be_sent_is_an_error_naming_the_part(
    workers: Workers, result: str, what: str
) -> None:
    loader = workers.write("a.vmd.py", f"def load(ctx):\n    return {result}\n")
    done = await workers.run(loader)
    assert not done.ok and done.error is not None
    assert done.error.message.startswith(f"TypeError: load() returned {what} that cannot be sent")
    assert (done.error.file, done.error.line) == (loader, 1)


async def test_an_exception_whose_str_fails_is_still_the_loaders_error(workers: Workers) -> None:
    loader = workers.write(
        "a.vmd.py",
        """
        class Odd(Exception):
            def __str__(self):
                raise RuntimeError("no words")

        def load(ctx):
            raise Odd()
        """,
    )
    done = await workers.run(loader)
    assert not done.ok and done.error is not None
    assert done.error.message == "Odd: <str() of the exception failed>"
    assert (done.error.file, done.error.line) == (loader, 7)


async def test_loader_without_load_is_an_error_at_line_1(workers: Workers) -> None:
    loader = workers.write("a.vmd.py", "import vmd\n\nx = 1\n")
    done = await workers.run(loader)
    assert not done.ok and done.error is not None
    assert "defines no load(ctx) function" in done.error.message
    assert (done.error.file, done.error.line) == (loader, 1)


async def test_print_and_raw_writes_to_fd_1_go_to_on_log_not_the_protocol(
    workers: Workers,
) -> None:
    loader = workers.write(
        "a.vmd.py",
        """
        import os, sys
        print("imported")
        def load(ctx):
            print("from print")
            os.write(1, b"from fd 1\\n")
            sys.stdout.write("no newline")
            return "export default 1;"
        """,
    )
    done = await workers.run(loader)
    assert (done.ok, done.code) == (True, "export default 1;")
    expected = ["imported", "from print", "from fd 1", "no newline"]
    await workers.until(lambda: len(workers.logs) >= len(expected))
    assert workers.logs == [(loader, line) for line in expected]
