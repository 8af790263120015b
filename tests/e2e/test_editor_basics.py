"""What an editor sees: diagnostics for loader errors and progress for slow loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import Daemon, Project, StartDaemon, eventually

OK = "def load(ctx):\n    return 'export default 1;'\n"


def diagnostics_for(daemon: Daemon, file: str, since: int = 0) -> list[dict[str, Any]]:
    """Every publishDiagnostics on `file` since `since`."""
    uri = Path(file).as_uri()
    return [p for p in daemon.notifications("textDocument/publishDiagnostics", since=since)
            if p["uri"] == uri]


async def published(daemon: Daemon, file: str, *, since: int, empty: bool) -> dict[str, Any]:
    uri = Path(file).as_uri()
    msg = await daemon.wait_for(
        lambda m: m["method"] == "textDocument/publishDiagnostics"
        and m["params"]["uri"] == uri
        and (not m["params"]["diagnostics"]) == empty,
        since=since,
    )
    return msg["params"]  # type: ignore[no-any-return]


async def test_failing_loader_publishes_a_diagnostic_at_its_line_cleared_after_the_fix(
    project: Project, daemon: Daemon
) -> None:
    loader = project.write(
        "src/a.vmd.py",
        """
        def load(ctx):

            raise RuntimeError("bad input")
        """,
    )
    mark = daemon.mark()
    await daemon.load_error(loader)
    params = await published(daemon, loader, since=mark, empty=False)
    (diag,) = params["diagnostics"]
    assert diag["range"]["start"]["line"] == 3  # 0-based: the raise is on line 4
    assert diag["severity"] == 1
    assert "RuntimeError: bad input" in diag["message"]
    mark = daemon.mark()
    project.write("src/a.vmd.py", OK)
    await daemon.changed(loader, since=mark)
    await published(daemon, loader, since=mark, empty=True)
    assert (await daemon.load(loader))["code"] == "export default 1;"


async def test_a_root_opened_through_a_symlink_gets_diagnostics_under_that_spelling(
    project: Project, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    """Editors keep the path they opened (macOS /tmp is /private/tmp): squiggles must land there."""
    link = tmp_path / "link"
    link.symlink_to(project.root)
    daemon = await start_daemon(root=link)
    project.write("src/a.vmd.py", "def load(ctx):\n    raise RuntimeError('bad')\n")
    loader = str(link / "src" / "a.vmd.py")
    mark = daemon.mark()
    await daemon.load_error(loader)
    params = await published(daemon, loader, since=mark, empty=False)
    assert params["diagnostics"][0]["range"]["start"]["line"] == 1


async def test_error_in_a_helper_is_shown_on_the_helper_and_on_the_loader(
    project: Project, daemon: Daemon
) -> None:
    helper = project.write("src/helpers.py", "def value():\n    return {}['missing']\n")
    loader = project.write(
        "src/a.vmd.py",
        """
        from helpers import value

        def load(ctx):
            return value()
        """,
    )
    mark = daemon.mark()
    await daemon.load_error(loader)
    on_helper = await published(daemon, helper, since=mark, empty=False)
    assert [d["range"]["start"]["line"] for d in on_helper["diagnostics"]] == [1]
    on_loader = await published(daemon, loader, since=mark, empty=False)
    assert [d["range"]["start"]["line"] for d in on_loader["diagnostics"]] == [4]
    assert "KeyError" in on_loader["diagnostics"][0]["message"]
    # Fixing the helper clears both.
    mark = daemon.mark()
    project.write("src/helpers.py", "def value():\n    return 'export default 2;'\n")
    await daemon.changed(loader, since=mark)
    await published(daemon, helper, since=mark, empty=True)
    await published(daemon, loader, since=mark, empty=True)


async def test_successful_load_publishes_no_diagnostics(project: Project, daemon: Daemon) -> None:
    loader = project.write("src/a.vmd.py", OK)
    failing = project.write("src/failing.vmd.py", "def load(ctx):\n    raise ValueError\n")
    await daemon.load(loader)
    # Diagnostics are published in order of the runs that end: once a failure after it has
    # its diagnostics published, the success's, had there been any, are out too.
    await daemon.load_error(failing)
    await published(daemon, failing, since=0, empty=False)
    await daemon.roundtrip()
    assert all(not d["diagnostics"] for d in diagnostics_for(daemon, loader))


async def test_slow_load_reports_work_done_progress(
    project: Project, start_daemon: StartDaemon
) -> None:
    daemon = await start_daemon(
        options={"progressDelayMs": 50},
        capabilities={"window": {"workDoneProgress": True}},
    )
    loader = project.write(
        "src/slow.vmd.py",
        "import time\n\ndef load(ctx):\n    time.sleep(0.4)\n    return ''\n",
    )
    mark = daemon.mark()
    await daemon.load(loader)
    create = await daemon.wait_for(
        lambda m: m["method"] == "window/workDoneProgress/create", since=mark
    )
    token = create["params"]["token"]
    progress = [p["value"] for p in daemon.notifications("$/progress", since=mark)
                if p["token"] == token]
    assert [v["kind"] for v in progress] == ["begin", "end"]
    assert "slow.vmd.py" in progress[0].get("message", "") + progress[0]["title"]
    # create came first: no $/progress on the token before the client accepted it
    order = [m for m in daemon.messages[mark:]
             if m["method"] in ("window/workDoneProgress/create", "$/progress")]
    assert order[0]["method"] == "window/workDoneProgress/create"


async def test_fast_load_reports_no_progress(project: Project, start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(
        options={"progressDelayMs": 5000},  # milliseconds, in fact, even on a busy machine
        capabilities={"window": {"workDoneProgress": True}},
    )
    loader = project.write("src/a.vmd.py", OK)
    mark = daemon.mark()
    await daemon.load(loader)  # progress, had there been any, would have come before this
    assert daemon.notifications("$/progress", since=mark) == []
    assert not any(m["method"] == "window/workDoneProgress/create"
                   for m in daemon.messages[mark:])


async def test_slow_load_without_the_client_capability_sends_no_progress(
    project: Project, start_daemon: StartDaemon
) -> None:
    daemon = await start_daemon(options={"progressDelayMs": 20})
    loader = project.write(
        "src/slow.vmd.py", "import time\n\ndef load(ctx):\n    time.sleep(0.2)\n    return ''\n"
    )
    mark = daemon.mark()
    await daemon.load(loader)
    assert daemon.notifications("$/progress", since=mark) == []


async def test_bad_option_is_reported_as_a_warning_and_the_default_used(
    project: Project, start_daemon: StartDaemon
) -> None:
    daemon = await start_daemon(options={"timeoutMs": "fast", "someOtherTool": 1})
    warning = await daemon.wait_for(lambda m: m["method"] == "window/logMessage")
    assert warning["params"]["type"] == 2
    assert "timeoutMs" in warning["params"]["message"]
    assert not any("someOtherTool" in p["message"]
                   for p in daemon.notifications("window/logMessage"))
    loader = project.write("src/a.vmd.py", OK)
    assert (await daemon.load(loader))["version"] == 1


async def test_many_failing_queries_of_one_loader_publish_its_diagnostics_a_few_times(
    project: Project, daemon: Daemon
) -> None:
    """Not once per query: each publish carries the file's whole list, so that would send
    n * (n + 1) / 2 diagnostics for n failing queries (125,000 for a build of 500)."""
    loader = project.write(
        "src/page.vmd.py", "def load(ctx):\n    raise ValueError('no page ' + ctx.query['n'])\n"
    )
    ids = [f"{loader}?n={n}" for n in range(200)]
    mark = daemon.mark()
    answer = await daemon.call("vmd/loadMany", {"ids": ids})
    assert all(o["error"]["code"] == -32010 for o in answer["results"])
    await daemon.wait_for(
        lambda m: m["method"] == "textDocument/publishDiagnostics"
        and len(m["params"]["diagnostics"]) == 200,
        since=mark,
    )
    assert len(diagnostics_for(daemon, loader, since=mark)) < 100


async def test_problems_of_runs_that_ended_before_a_shutdown_are_still_published(
    project: Project, start_daemon: StartDaemon
) -> None:
    """A build client shuts the daemon down as soon as it has its answers: the diagnostics,
    gathered for a moment before they are sent, must not be dropped with the session."""
    daemon = await start_daemon(options={"mode": "build"})
    loader = project.write("src/bad.vmd.py", "def load(ctx):\n    raise ValueError('bad')\n")
    mark = daemon.mark()
    answer = await daemon.call("vmd/loadMany", {"ids": [f"{loader}?n=1", f"{loader}?n=2"]})
    assert all("error" in outcome for outcome in answer["results"])
    assert await daemon.shutdown() == 0
    await eventually(lambda: diagnostics_for(daemon, loader, since=mark))
    (params,) = diagnostics_for(daemon, loader, since=mark)
    assert len(params["diagnostics"]) == 2
