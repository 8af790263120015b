"""A loader that raises, hangs, crashes or prints cannot hurt the daemon or other modules."""

from __future__ import annotations

import asyncio

from harness import Daemon, Project, StartDaemon, exported

OK = "def load(ctx):\n    return 'export default \"ok\";'\n"


async def test_raising_loader_answers_an_error_at_its_line_and_others_keep_loading(
    project: Project, daemon: Daemon
) -> None:
    loader = project.write(
        "src/bad.vmd.py",
        """
        def load(ctx):
            x = 1
            raise ValueError("no users today")
        """,
    )
    good = project.write("src/good.vmd.py", OK)
    error = await daemon.load_error(loader)
    assert error.code == -32010
    assert error.data["id"] == loader
    assert error.data["kind"] == "error"
    assert error.data["message"] == "ValueError: no users today"
    assert (error.data["file"], error.data["line"]) == (loader, 4)
    assert "ValueError: no users today" in error.data["traceback"]
    assert "Traceback" in error.data["traceback"]
    assert (await daemon.load(good))["code"] == 'export default "ok";'
    # A failing module keeps answering the same error until something it depends on changes.
    again = await daemon.load_error(loader)
    assert (again.code, again.data["line"]) == (-32010, 4)


async def test_error_raised_in_a_helper_points_at_the_helper_line(
    project: Project, daemon: Daemon
) -> None:
    helper = project.write(
        "src/lib/rows.py",
        """
        def parse(text):
            return int(text)
        """,
    )
    loader = project.write(
        "src/a.vmd.py",
        """
        from lib.rows import parse

        def load(ctx):
            return str(parse("not a number"))
        """,
    )
    error = await daemon.load_error(loader)
    assert (error.data["file"], error.data["line"]) == (helper, 3)
    assert error.data["message"].startswith("ValueError: invalid literal for int()")


async def test_fixing_a_broken_loader_recovers_it_without_any_client_action(
    project: Project, daemon: Daemon
) -> None:
    loader = project.write("src/a.vmd.py", "def load(ctx):\n    return 1 / 0\n")
    error = await daemon.load_error(loader)
    assert error.data["message"] == "ZeroDivisionError: division by zero"
    mark = daemon.mark()
    project.write("src/a.vmd.py", "def load(ctx):\n    return 'export default 1 / 1;'\n")
    change = await daemon.changed(loader, since=mark)
    assert change["reason"] == "code"
    assert (await daemon.load(loader))["code"] == "export default 1 / 1;"


async def test_fixing_the_helper_recovers_the_module(project: Project, daemon: Daemon) -> None:
    project.write("src/helpers.py", "def value():\n    raise KeyError('x')\n")
    loader = project.write(
        "src/a.vmd.py",
        """
        import vmd
        from helpers import value

        def load(ctx):
            return vmd.json_module(value())
        """,
    )
    await daemon.load_error(loader)
    mark = daemon.mark()
    project.write("src/helpers.py", "def value():\n    return 'fixed'\n")
    await daemon.changed(loader, since=mark)
    assert exported(await daemon.load(loader)) == "fixed"


async def test_timeout_kills_the_run_and_others_are_served_meanwhile(
    project: Project, start_daemon: StartDaemon
) -> None:
    # Long enough for the good load to be answered first, on any machine.
    daemon = await start_daemon(options={"timeoutMs": 2000})
    loader = project.write(
        "src/spin.vmd.py",
        """
        def load(ctx):
            print("spinning", flush=True)
            while True:
                pass
        """,
    )
    good = project.write("src/good.vmd.py", OK)
    # good has its worker: its load below waits for no process to start, only for its run.
    assert (await daemon.load(good + "?first"))["code"] == 'export default "ok";'
    spinning = asyncio.ensure_future(daemon.load_error(loader))
    await daemon.wait_for(
        lambda m: m["method"] == "window/logMessage" and "spinning" in m["params"]["message"]
    )
    assert (await daemon.load(good))["code"] == 'export default "ok";'
    assert not spinning.done()  # the good load did not wait for the spinning one
    error = await spinning
    assert error.code == -32011
    assert error.data["kind"] == "timeout"
    assert (error.data["file"], error.data["line"]) == (loader, 4)
    mark = daemon.mark()
    project.write("src/spin.vmd.py", OK)
    await daemon.changed(loader, since=mark)
    assert (await daemon.load(loader))["code"] == 'export default "ok";'


async def test_os_exit_in_a_loader_is_a_crash_and_the_daemon_recovers(
    project: Project, daemon: Daemon
) -> None:
    loader = project.write("src/a.vmd.py", "import os\n\ndef load(ctx):\n    os._exit(3)\n")
    good = project.write("src/good.vmd.py", OK)
    error = await daemon.load_error(loader)
    assert error.code == -32012
    assert error.data["kind"] == "crash"
    assert "exited with code 3" in error.data["message"]
    assert error.data["file"] == loader
    assert (await daemon.load(good))["version"] == 1
    mark = daemon.mark()
    project.write("src/a.vmd.py", OK + "# fixed\n")
    await daemon.changed(loader, since=mark)
    assert (await daemon.load(loader))["code"] == 'export default "ok";'


async def test_segfault_in_a_loader_is_a_crash_located_in_the_loader(
    project: Project, daemon: Daemon
) -> None:
    loader = project.write(
        "src/a.vmd.py",
        """
        import os, signal

        def load(ctx):
            os.kill(os.getpid(), signal.SIGSEGV)
        """,
    )
    good = project.write("src/good.vmd.py", OK)
    error = await daemon.load_error(loader)
    assert error.code == -32012
    assert error.data["kind"] == "crash"
    assert "SIGSEGV" in error.data["message"]
    assert (error.data["file"], error.data["line"]) == (loader, 5)
    assert (await daemon.load(good))["version"] == 1
    mark = daemon.mark()
    project.write("src/a.vmd.py", OK)
    await daemon.changed(loader, since=mark)
    assert (await daemon.load(loader))["code"] == 'export default "ok";'


async def test_loader_output_becomes_log_messages_and_never_corrupts_the_stream(
    project: Project, daemon: Daemon
) -> None:
    loader = project.write(
        "src/noisy.vmd.py",
        """
        import os, sys

        def load(ctx):
            print("hello from print")
            os.write(1, b"Content-Length: 5\\r\\n\\r\\n{}{}}raw fd 1\\n")
            print("to stderr", file=sys.stderr)
            return "export default 'quiet';"
        """,
    )
    mark = daemon.mark()
    assert (await daemon.load(loader))["code"] == "export default 'quiet';"
    for text in ("hello from print", "raw fd 1", "to stderr"):
        log = await daemon.wait_for(
            lambda m, t=text: m["method"] == "window/logMessage" and t in m["params"]["message"],
            since=mark,
        )
        assert log["params"]["type"] == 4
        assert "noisy.vmd.py" in log["params"]["message"]
    # The stream is intact: more requests work and nothing unexpected arrived.
    assert (await daemon.reload(loader))["version"] == 2
    assert daemon.orphans == []
