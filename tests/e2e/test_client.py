"""vmd.client against a real daemon (`python -m vmd serve`) over stdio."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from vmd.client import AsyncClient, Client, ConnectionClosed
from vmd.errors import LoaderError, Refused
from vmd.protocol import LoadResult

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "project"
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def exported(result: LoadResult) -> object:
    """The value a `json_module` result exports."""
    prefix, suffix = "export default JSON.parse(", ");\n"
    assert result.code.startswith(prefix) and result.code.endswith(suffix), result.code
    return json.loads(json.loads(result.code[len(prefix) : -len(suffix)]))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = Path(os.path.realpath(tmp_path)) / "project"
    shutil.copytree(FIXTURE, root)
    return root


@pytest.fixture
async def client(project: Path) -> AsyncIterator[AsyncClient]:
    c = await AsyncClient.start(project, env=ENV, python=sys.executable)
    yield c
    await c.close()


async def test_load_returns_the_generated_module_with_absolute_dependencies(
    project: Path, client: AsyncClient
) -> None:
    loader = str(project / "src" / "hello.vmd.py")
    result = await client.load(loader + "?kind=admin")
    assert result.id == loader + "?kind=admin"
    assert result.version == 1
    assert exported(result) == {
        "query": {"kind": "admin"},
        "data": None,
        "texts": {"data/a.txt": "one"},
        "mode": "serve",
    }
    assert result.watch_files == [str(project / "src" / "data" / "a.txt")]
    assert loader in result.dependencies


async def test_second_load_of_an_unchanged_module_keeps_its_version(
    project: Path, client: AsyncClient
) -> None:
    loader = str(project / "src" / "hello.vmd.py")
    first = await client.load(loader)
    again = await client.load(loader)
    assert (again.version, again.code) == (first.version, first.code)


async def test_reload_reruns_with_data(project: Path, client: AsyncClient) -> None:
    loader = str(project / "src" / "hello.vmd.py")
    first = await client.load(loader)
    result = await client.reload(loader, {"n": 1})
    assert result.version > first.version
    assert exported(result)["data"] == {"n": 1}  # type: ignore[index]


async def test_invalidate_by_id_and_by_path_returns_the_dropped_ids(
    project: Path, client: AsyncClient
) -> None:
    loader = str(project / "src" / "hello.vmd.py")
    await client.load(loader)
    await client.load(loader + "?x=1")
    assert await client.invalidate(id=loader) == [loader]
    data = str(project / "src" / "data" / "a.txt")
    # `loader` has nothing cached any more: only the other id is dropped.
    assert await client.invalidate(path=data) == [loader + "?x=1"]
    assert (await client.load(loader)).version > 1
    assert sorted(await client.invalidate(path=data)) == [loader]


async def test_changes_reports_an_edit_of_a_watched_file(
    project: Path, client: AsyncClient
) -> None:
    loader = str(project / "src" / "hello.vmd.py")
    changes = client.changes()
    first = await client.load(loader)
    (project / "src" / "data" / "a.txt").write_text("two")
    change = await asyncio.wait_for(changes.__anext__(), 10)
    assert (change.id, change.version, change.reason) == (loader, first.version, "watch")
    assert [(e.type, e.path) for e in change.events] == [
        ("change", str(project / "src" / "data" / "a.txt"))
    ]
    result = await client.load(loader)
    assert result.version > first.version
    assert exported(result)["texts"] == {"data/a.txt": "two"}  # type: ignore[index]
    await changes.aclose()


async def test_loader_error_raises_the_typed_error_at_the_helper_line(
    project: Path, client: AsyncClient
) -> None:
    loader = str(project / "src" / "broken.vmd.py")
    with pytest.raises(LoaderError) as info:
        await client.load(loader)
    error = info.value
    assert error.id == loader
    assert (error.file, error.line) == (str(project / "src" / "helpers.py"), 2)
    assert "the helper exploded" in error.message
    assert "ValueError: the helper exploded" in error.traceback


async def test_load_many_gives_each_id_its_result_or_its_typed_error_in_order(
    project: Path, client: AsyncClient, tmp_path: Path
) -> None:
    hello = str(project / "src" / "hello.vmd.py")
    broken = str(project / "src" / "broken.vmd.py")
    outside = tmp_path / "outside.vmd.py"
    outside.write_text("def load(ctx):\n    return 'export default 1;'\n")
    ids = [hello + "?kind=admin", broken, str(outside), hello]
    first, failed, refused, last = await client.load_many(ids)
    assert isinstance(first, LoadResult) and first.id == ids[0]
    assert isinstance(last, LoadResult) and last.id == hello
    assert isinstance(failed, LoaderError)
    assert (failed.file, failed.line) == (str(project / "src" / "helpers.py"), 2)
    assert isinstance(refused, Refused) and refused.id == str(outside)
    assert await client.load_many([]) == []


async def test_loader_outside_the_root_is_refused(tmp_path: Path, client: AsyncClient) -> None:
    outside = tmp_path / "outside.vmd.py"
    outside.write_text("def load(ctx):\n    return 'export default 1;'\n")
    with pytest.raises(Refused):
        await client.load(str(outside))


async def test_daemon_death_fails_later_calls_with_the_reason(client: AsyncClient) -> None:
    client.process.kill()
    with pytest.raises(ConnectionClosed, match="SIGKILL"):
        await client.load("/nowhere.vmd.py")


async def test_close_shuts_the_daemon_down_cleanly(project: Path) -> None:
    c = await AsyncClient.start(project, env=ENV)
    await c.load(str(project / "src" / "hello.vmd.py"))
    await c.close()
    assert c.process.returncode == 0


def test_a_script_using_the_client_gets_no_daemon_chatter_on_its_stderr(project: Path) -> None:
    script = (
        "from vmd.client import Client\n"
        f"with Client.start({str(project)!r}) as client:\n"
        f"    print(client.load({str(project / 'src' / 'hello.vmd.py')!r}).version)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=ENV, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "1\n", "")


def test_sync_client_loads_reloads_and_hears_changes(project: Path) -> None:
    loader = str(project / "src" / "hello.vmd.py")
    with Client(project, env=ENV) as client:
        changes = client.changes()
        assert client.load(loader).version == 1
        assert exported(client.reload(loader, [1, 2]))["data"] == [1, 2]  # type: ignore[index]
        change = changes.get(timeout=10)
        assert (change.id, change.reason) == (loader, "reload")
        with pytest.raises(LoaderError):
            client.load(str(project / "src" / "broken.vmd.py"))
    assert client.closed


def test_polling_changes_with_a_short_timeout_loses_none(project: Path) -> None:
    loader = str(project / "src" / "hello.vmd.py")
    with Client(project, env=ENV) as client:
        client.load(loader)
        changes = client.changes()
        count = 300

        def reload_many() -> None:
            for n in range(count):
                client.reload(loader, n)

        thread = threading.Thread(target=reload_many)
        thread.start()
        versions: list[int] = []
        while len(versions) < count:
            try:
                versions.append(changes.get(timeout=0.0005).version)
            except TimeoutError:
                if not thread.is_alive() and len(versions) < count:
                    versions.append(changes.get(timeout=10).version)
        thread.join()
    assert versions == list(range(1, count + 1))


def test_calling_the_client_from_its_own_callback_fails_fast_instead_of_hanging(
    project: Path,
) -> None:
    (project / "src" / "talk.vmd.py").write_text("def load(ctx):\n    print('hi')\n    return ''\n")
    raised: list[BaseException] = []

    def on_log(params: dict[str, object]) -> None:
        try:
            client.load(str(project / "src" / "hello.vmd.py"))
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            raised.append(exc)

    with Client(project, env=ENV, on_log=on_log) as client:
        client.load(str(project / "src" / "talk.vmd.py"))
        assert client.load(str(project / "src" / "hello.vmd.py")).version == 1  # not stuck
    assert raised and isinstance(raised[0], RuntimeError)
    assert "from one of its callbacks" in str(raised[0])


async def test_closing_fails_requests_in_flight_as_closed_not_as_loader_crashes(
    project: Path,
) -> None:
    (project / "src" / "slow.vmd.py").write_text(
        "import time\n\ndef load(ctx):\n    print('asleep', flush=True)\n"
        "    time.sleep(30)\n    return ''\n"
    )
    asleep = asyncio.Event()

    def on_log(params: dict[str, object]) -> None:
        if "asleep" in str(params["message"]):
            asleep.set()

    client = await AsyncClient.start(project, env=ENV, on_log=on_log)
    pending = asyncio.ensure_future(client.load(str(project / "src" / "slow.vmd.py")))
    await asyncio.wait_for(asleep.wait(), 10)  # the loader is asleep in its worker
    closing = asyncio.ensure_future(client.close())
    await asyncio.sleep(0)
    with pytest.raises(ConnectionClosed):
        await client.load(str(project / "src" / "hello.vmd.py"))  # after close began
    with pytest.raises(ConnectionClosed, match="the vmd client was closed"):
        await pending
    await closing


async def test_a_load_given_up_on_stops_the_run_in_the_daemon(project: Path) -> None:
    (project / "src" / "slow.vmd.py").write_text(
        "import os, time\n\ndef load(ctx):\n    print('asleep', os.getpid(), flush=True)\n"
        "    time.sleep(30)\n    return ''\n"
    )
    pids: list[int] = []
    asleep = asyncio.Event()

    def on_log(params: dict[str, object]) -> None:
        if "asleep" in (message := str(params["message"])):
            pids.append(int(message.split()[-1]))
            asleep.set()

    async with await AsyncClient.start(project, env=ENV, on_log=on_log) as client:
        pending = asyncio.ensure_future(client.load(str(project / "src" / "slow.vmd.py")))
        await asyncio.wait_for(asleep.wait(), 10)
        pending.cancel()  # what a timeout around the call does
        with pytest.raises(asyncio.CancelledError):
            await pending
        for _ in range(200):  # the worker is killed, not left asleep for nobody
            if not os.path.exists(f"/proc/{pids[0]}"):
                break
            await asyncio.sleep(0.05)
        assert not os.path.exists(f"/proc/{pids[0]}")
        hello = await client.load(str(project / "src" / "hello.vmd.py"))
        assert hello.version == 1


def test_a_root_that_does_not_exist_yet_prints_no_traceback_and_works_once_it_does(
    tmp_path: Path,
) -> None:
    root = tmp_path / "later"
    script = (
        "import pathlib, time\n"
        "from vmd.client import Client\n"
        f"root = pathlib.Path({str(root)!r})\n"
        "with Client(root) as client:\n"
        "    time.sleep(1)  # the daemon tries its spare worker meanwhile\n"
        "    root.mkdir()\n"
        "    loader = root / 'a.vmd.py'\n"
        "    loader.write_text(\"def load(ctx):\\n    return 'export default 1'\\n\")\n"
        "    print(client.load(str(root / 'a.vmd.py')).code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=ENV, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout) == (0, "export default 1\n"), done.stderr
    assert "Traceback" not in done.stderr and "never retrieved" not in done.stderr
