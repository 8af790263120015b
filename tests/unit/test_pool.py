"""WorkerPool: process lifecycle, timeouts, crashes, replacement, eviction, dying with the daemon.

Every test drives real worker processes (see tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from vmd.errors import LoaderCrashed, LoaderTimeout
from vmd.workers import ipc, process, spawn

if TYPE_CHECKING:
    from conftest import Workers

PID_LOADER = """
import os
def load(ctx):
    if ctx.query.get("crash") == "exit":
        os._exit(3)
    if ctx.query.get("crash") == "segv":
        import signal
        os.kill(os.getpid(), signal.SIGSEGV)
    return str(os.getpid())
"""

# Spins with ?hang=1; the spinning line is line 5.
HANGING_LOADER = """
import os
def load(ctx):
    if ctx.query.get("hang"):
        while True:
            pass
    return str(os.getpid())
"""


def gated_loader(started: Path, go: Path) -> str:
    """A loader whose ?slow=1 run creates `started`, then holds until `go` exists."""
    return f"""
import os, time
def load(ctx):
    if ctx.query.get("slow"):
        open({str(started)!r}, "w").close()
        while not os.path.exists({str(go)!r}):
            time.sleep(0.01)
    return str(os.getpid())
"""


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting for a reaper that may never come counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _children() -> list[int]:
    """Pids of this process's children (live or zombie)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == os.getpid():
                        out.append(int(entry))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return out


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


async def test_runs_reuse_the_worker_of_their_loader(workers: Workers) -> None:
    loader = workers.write("a.vmd.py", PID_LOADER)
    first = await workers.run(loader)
    assert first.ok
    assert (await workers.run(loader, "x=1")).code == first.code
    assert int(first.code) != os.getpid()


async def test_a_loader_with_a_worker_runs_while_another_loaders_worker_starts(
    workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = workers.write("a.vmd.py", PID_LOADER)
    b = workers.write("b.vmd.py", PID_LOADER)
    spare = workers.write("spare.vmd.py", PID_LOADER)
    assert (await workers.run(a)).ok  # a has its worker; a replacement spare is starting
    # Hold back every worker process started from now on.
    release = asyncio.Event()
    held: list[str] = []
    real_start = spawn.start_worker

    async def held_start(cwd: str) -> asyncio.subprocess.Process:
        held.append(cwd)
        await release.wait()
        return await real_start(cwd)

    monkeypatch.setattr(spawn, "start_worker", held_start)
    assert (await workers.run(spare)).ok  # takes that spare; its replacement is held
    b_run = asyncio.ensure_future(workers.run(b))
    # b's assignment waits for the held spare and has started (and held) the next one: b's
    # first run waits for a worker.
    await workers.until(lambda: len(held) == 2)
    assert not b_run.done()
    # a's runs do not queue behind b's assignment (if they did, this would wait for ever).
    assert (await asyncio.wait_for(workers.run(a, "again=1"), 10)).ok
    assert not b_run.done()
    release.set()
    assert (await b_run).ok


# Run as a worker's command line: the process notes that it started, then waits (up to a
# deadline far beyond any start-up) until `want` workers have, before becoming a worker.
START_RENDEZVOUS = """
import os, runpy, time
starts, want = {starts!r}, {want}
open(os.path.join(starts, str(os.getpid())), "w").close()
deadline = time.monotonic() + 8
while len(os.listdir(starts)) < want and time.monotonic() < deadline:
    time.sleep(0.01)
with open(os.path.join(starts, str(os.getpid()) + ".saw"), "w") as f:
    f.write(str(len([n for n in os.listdir(starts) if n.isdigit()])))
runpy.run_module("vmd.workers.main", run_name="__main__", alter_sys=True)
"""


async def test_loaders_asking_at_once_get_their_workers_started_concurrently(
    make_workers: Callable[..., Workers], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Each worker process waits at start-up until all four have started: one started after
    # another (behind a lock) they would each wait out the deadline and see fewer.
    starts = tmp_path / "starts"
    starts.mkdir()
    real_command = spawn.worker_command

    def rendezvous() -> list[str]:
        return [*real_command()[:-2], "-c", START_RENDEZVOUS.format(starts=str(starts), want=4)]

    monkeypatch.setattr(spawn, "worker_command", rendezvous)
    harness = make_workers(max_workers=4, max_starts=4)
    loaders = [harness.write(f"{n}.vmd.py", PID_LOADER) for n in "abcd"]
    results = await asyncio.gather(*(harness.run(loader) for loader in loaders))
    pids = [d.code for d in results]
    assert len(set(pids)) == 4
    saw = {pid: (starts / f"{pid}.saw").read_text() for pid in pids}
    assert all(int(n) >= 4 for n in saw.values()), saw


LIVE_LOADER = """
import os, time
from pathlib import Path
live, seen, go = Path({live!r}), Path({seen!r}), Path({go!r})
(live / str(os.getpid())).touch()
(seen / str(os.getpid())).write_text(str(len(list(live.iterdir()))))
def setup(ctx):
    return lambda: (live / str(os.getpid())).unlink()
def load(ctx):
    while not go.exists():
        time.sleep(0.01)
    return str(os.getpid())
"""


async def test_max_workers_still_bounds_live_workers_under_concurrent_demand(
    make_workers: Callable[..., Workers], tmp_path: Path
) -> None:
    live, seen, go = tmp_path / "live", tmp_path / "seen", tmp_path / "go"
    live.mkdir()
    seen.mkdir()
    harness = make_workers(max_workers=2, max_starts=4)
    source = LIVE_LOADER.format(live=str(live), seen=str(seen), go=str(go))
    loaders = [harness.write(f"{n}.vmd.py", source) for n in "abcdef"]
    runs = asyncio.gather(*(harness.run(loader) for loader in loaders))
    await harness.until(lambda: len(list(live.iterdir())) == 2)  # both busy: the rest wait
    go.touch()
    results = await runs
    assert all(d.ok for d in results)
    assert len({d.code for d in results}) == 6
    # Every loader, as it started, saw at most two loaders alive, itself included: an evicted
    # one had run its cleanup (and exited) before another took its place.
    counts = {p.name: int(p.read_text()) for p in seen.iterdir()}
    assert len(counts) == 6 and max(counts.values()) <= 2, counts


async def test_a_loaders_runs_stay_in_order_while_other_loaders_workers_start(
    make_workers: Callable[..., Workers],
) -> None:
    harness = make_workers(max_workers=8, max_starts=2)  # starts queue for their turn
    ordered = harness.write(
        "a.vmd.py",
        """
        import os
        seen = []
        def load(ctx):
            seen.append(ctx.query["n"])
            return f"{os.getpid()} {','.join(seen)}"
        """,
    )
    others = [harness.write(f"{n}.vmd.py", PID_LOADER) for n in "bcdef"]
    runs = []
    for i in range(30):
        runs.append(harness.run(ordered, f"n={i}"))
        if i % 6 == 0:
            runs.append(harness.run(others[i // 6]))
    results = await asyncio.gather(*runs)
    mine = [d.code for d in results if " " in d.code]
    assert len({code.split()[0] for code in mine}) == 1  # one worker
    # Each run saw exactly the runs before it, in the order they were asked for.
    assert [code.split()[1] for code in mine] == [
        ",".join(str(j) for j in range(i + 1)) for i in range(30)
    ]
    assert len({d.code for d in results if " " not in d.code}) == 5


async def test_a_build_keeps_workers_warm_for_loaders_waiting_for_room_and_none_when_idle(
    make_workers: Callable[..., Workers], tmp_path: Path
) -> None:
    live, seen, go = tmp_path / "live", tmp_path / "seen", tmp_path / "go"
    live.mkdir()
    seen.mkdir()
    harness = make_workers(mode="build", max_workers=2, max_starts=2)
    await harness.pool.start()
    source = LIVE_LOADER.format(live=str(live), seen=str(seen), go=str(go))
    loaders = [harness.write(f"{n}.vmd.py", source) for n in "abcde"]
    runs = asyncio.gather(*(harness.run(loader) for loader in loaders))
    await harness.until(lambda: len(list(live.iterdir())) == 2)
    # Three loaders wait for room: a process each is started for two of them (max_starts),
    # ready when room is, beside the two at work.
    await harness.until(lambda: len(harness.pool.pids()) == 4)
    go.touch()
    assert all(d.ok for d in await runs)
    # Idle: no spare is kept in a build, only the workers of the last two loaders.
    await harness.until(lambda: harness.pool.settled and len(harness.pool.pids()) == 2)


async def test_concurrent_runs_on_one_worker_are_serialised(workers: Workers) -> None:
    loader = workers.write(
        "a.vmd.py",
        """
        import time
        busy = []
        def load(ctx):
            busy.append(1)
            time.sleep(0.02)
            n = len(busy)
            busy.pop()
            return str(n)
        """,
    )
    results = await asyncio.gather(*(workers.run(loader, f"n={i}") for i in range(5)))
    assert [d.code for d in results] == ["1"] * 5


async def test_runs_queued_on_one_worker_each_get_their_own_result_in_order(
    workers: Workers,
) -> None:
    loader = workers.write(
        "a.vmd.py",
        """
        import os
        seen = []
        def load(ctx):
            seen.append(ctx.query["n"])
            return f"{os.getpid()} {ctx.query['n']} {','.join(seen)}"
        """,
    )
    results = await asyncio.gather(*(workers.run(loader, f"n={i}") for i in range(50)))
    pids = {d.code.split()[0] for d in results}
    assert len(pids) == 1  # one worker, runs pipelined to it
    assert [d.code.split()[1] for d in results] == [str(i) for i in range(50)]
    assert results[-1].code.split()[2] == ",".join(str(i) for i in range(50))


async def test_a_queued_run_gets_the_full_timeout_from_when_it_starts(
    make_workers: Callable[..., Workers],
) -> None:
    # Each run is 0.6 s of the 1.5 s timeout short of timing out, however slow the machine;
    # the two together take longer than the timeout.
    harness = make_workers(timeout_ms=1500)
    loader = harness.write(
        "a.vmd.py",
        """
        import time
        def load(ctx):
            time.sleep(0.9)
            return ctx.query["n"]
        """,
    )
    results = await asyncio.gather(*(harness.run(loader, f"n={i}") for i in range(2)))
    assert [d.code for d in results] == ["0", "1"]  # 1.8 s in all, each under 1.5 s


async def test_runs_queued_behind_a_run_that_times_out_or_crashes_are_retried_elsewhere(
    make_workers: Callable[..., Workers],
) -> None:
    harness = make_workers(timeout_ms=1000)  # the runs that do not hang are well within it
    loader = harness.write(
        "a.vmd.py",
        """
        import os
        def load(ctx):
            if ctx.query.get("hang"):
                while True:
                    pass
            if ctx.query.get("crash"):
                os._exit(3)
            return "ok " + ctx.query["n"]
        """,
    )
    for bad, error in (("hang=1", LoaderTimeout), ("crash=1", LoaderCrashed)):
        outcomes = await asyncio.gather(
            harness.run(loader, f"n=0&{bad}"),
            *(harness.run(loader, f"n={i}") for i in range(1, 4)),
            return_exceptions=True,
        )
        assert isinstance(outcomes[0], error)
        assert [getattr(d, "code", d) for d in outcomes[1:]] == ["ok 1", "ok 2", "ok 3"]


async def test_timeout_kills_a_busy_loop_and_the_next_run_gets_a_fresh_worker(
    make_workers: Callable[..., Workers],
) -> None:
    # Long enough for the run to be in its loop when the clock runs out, on any machine.
    harness = make_workers(timeout_ms=1000)
    await harness.pool.start()
    loader = harness.write("a.vmd.py", HANGING_LOADER)
    before = await harness.run(loader)
    with pytest.raises(LoaderTimeout) as caught:
        await harness.run(loader, "hang=1")
    error = caught.value
    assert error.message == "timed out after 1000 ms"  # file and line say where
    assert (error.file, error.line) == (loader, 5)
    assert "in load" in error.traceback
    assert "<frozen runpy>" not in error.traceback  # how the worker started is not the loader's
    if sys.platform.startswith("linux"):
        assert not _alive(int(before.code))
    after = await harness.run(loader)
    assert after.ok and after.code != before.code


async def test_timeout_points_at_the_loop_even_when_the_worker_is_slow_to_say_where(
    make_workers: Callable[..., Workers], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A saturated machine: the worker gets no CPU for a while just as it is asked where it is.
    real_send = process.WorkerProcess.send

    def send_then_freeze(self: process.WorkerProcess, msg: ipc.ToWorker) -> bool:
        if isinstance(msg, ipc.Dump):
            os.kill(self.pid, signal.SIGSTOP)
            asyncio.get_running_loop().call_later(0.5, _signal, self.pid, signal.SIGCONT)
        return real_send(self, msg)

    monkeypatch.setattr(process.WorkerProcess, "send", send_then_freeze)
    harness = make_workers(timeout_ms=300)
    await harness.pool.start()
    loader = harness.write("a.vmd.py", HANGING_LOADER)
    assert (await harness.run(loader)).ok  # imported: the next run goes straight to its loop
    with pytest.raises(LoaderTimeout) as caught:
        await harness.run(loader, "hang=1")
    assert (caught.value.file, caught.value.line) == (loader, 5)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


async def test_timeout_of_an_async_load_points_at_where_it_is_stuck(
    make_workers: Callable[..., Workers],
) -> None:
    harness = make_workers(timeout_ms=1000)
    await harness.pool.start()
    loader = harness.write(
        "a.vmd.py",
        """
        async def load(ctx):
            n = 0
            while not ctx.query.get("warm"):
                n += 1
            return ""
        """,
    )
    # Imported, asyncio and its thread started: the timed run is in its loop long before the
    # clock runs out (a first run on a busy machine could still be starting asyncio).
    assert (await harness.run(loader, "warm=1")).ok
    with pytest.raises(LoaderTimeout) as caught:
        await harness.run(loader)
    assert caught.value.file == loader
    assert caught.value.line in (4, 5)


@linux_only
async def test_timeout_also_kills_processes_the_loader_spawned(
    make_workers: Callable[..., Workers],
) -> None:
    harness = make_workers(timeout_ms=1000)  # time to spawn and write child.pid, on any machine
    await harness.pool.start()
    loader = harness.write(
        "a.vmd.py",
        """
        import subprocess
        from pathlib import Path
        def load(ctx):
            child = subprocess.Popen(["sleep", "1000"])
            Path(ctx.path.parent, "child.pid").write_text(str(child.pid))
            while True:
                pass
        """,
    )
    with pytest.raises(LoaderTimeout):
        await harness.run(loader)
    child = int((harness.root / "child.pid").read_text())
    await harness.until(lambda: not _alive(child))


async def test_os_exit_is_a_crash_naming_the_exit_code_and_the_next_run_recovers(
    workers: Workers,
) -> None:
    loader = workers.write("a.vmd.py", PID_LOADER)
    before = await workers.run(loader)
    with pytest.raises(LoaderCrashed) as caught:
        await workers.run(loader, "crash=exit")
    assert "exited with code 3" in caught.value.message
    assert (caught.value.id, caught.value.file, caught.value.line) == (
        f"{loader}?crash=exit",
        loader,
        1,
    )
    after = await workers.run(loader)
    assert after.ok and after.code != before.code


async def test_segfault_is_a_crash_located_by_faulthandler_and_the_next_run_recovers(
    workers: Workers,
) -> None:
    loader = workers.write("a.vmd.py", PID_LOADER)
    with pytest.raises(LoaderCrashed) as caught:
        await workers.run(loader, "crash=segv")
    assert "SIGSEGV" in caught.value.message
    assert (caught.value.file, caught.value.line) == (loader, 8)
    assert "Fatal Python error" in caught.value.traceback
    assert (await workers.run(loader)).ok


@linux_only
async def test_a_worker_that_died_while_idle_is_replaced_on_the_next_run(
    workers: Workers,
) -> None:
    loader = workers.write("a.vmd.py", PID_LOADER)
    pid = int((await workers.run(loader)).code)
    os.kill(pid, signal.SIGKILL)
    # A run sent before the daemon has seen the death cannot be told from a crash it caused.
    await workers.until(lambda: pid not in workers.pool.pids())
    after = await workers.run(loader)
    assert after.ok and int(after.code) != pid


async def test_replace_lets_the_run_in_flight_finish_then_uses_a_fresh_worker(
    workers: Workers,
) -> None:
    started, go = workers.root / "started", workers.root / "go"
    loader = workers.write("a.vmd.py", gated_loader(started, go))
    slow = asyncio.create_task(workers.run(loader, "slow=1"))
    await workers.until(started.exists)  # the run is in flight in the worker
    # Returns while the run is still waiting for `go` (if it waited for the run: never).
    await asyncio.wait_for(workers.pool.replace(loader), 10)
    assert not slow.done()
    go.touch()
    old = await slow
    assert old.ok
    new = await workers.run(loader)
    assert new.ok and new.code != old.code


async def test_a_code_change_mid_run_with_no_room_left_evicts_an_idle_worker_not_waits(
    make_workers: Callable[..., Workers],
) -> None:
    harness = make_workers(max_workers=2)
    started, go = harness.root / "started", harness.root / "go"
    slow = harness.write("a.vmd.py", gated_loader(started, go))
    other = harness.write(
        "b.vmd.py",
        """
        from pathlib import Path
        def setup(ctx):
            return lambda: Path(str(ctx.path) + ".cleaned").write_text("x")
        def load(ctx):
            return "ok"
        """,
    )
    assert (await harness.run(other)).ok
    old_run = asyncio.create_task(harness.run(slow, "slow=1"))
    await harness.until(started.exists)
    harness.pool.code_changed(slow)
    # The old worker finishes its run on the old code, and still counts against the bound:
    # the fresh one takes the idle worker's room instead of waiting for that run.
    fresh = await asyncio.wait_for(harness.run(slow), 10)
    assert not old_run.done()
    await harness.until(Path(other + ".cleaned").exists)
    go.touch()
    assert (await old_run).code != fresh.code


async def test_max_workers_evicts_the_least_recently_used_and_runs_its_cleanup(
    make_workers: Callable[..., Workers],
) -> None:
    harness = make_workers(max_workers=2)
    await harness.pool.start()
    source = """
    from pathlib import Path
    def setup(ctx):
        return lambda: Path(str(ctx.path) + ".cleaned").write_text("x")
    def load(ctx):
        return "ok"
    """
    a, b, c = (harness.write(f"{n}.vmd.py", source) for n in "abc")
    await harness.run(a)
    await harness.run(b)
    await harness.run(a)  # b is now the least recently used
    await harness.run(c)
    await harness.until(Path(b + ".cleaned").exists)
    assert not Path(a + ".cleaned").exists()
    assert not Path(c + ".cleaned").exists()


async def test_close_runs_every_cleanup_and_leaves_no_process(
    make_workers: Callable[..., Workers],
) -> None:
    harness = make_workers()
    await harness.pool.start()
    loader = harness.write(
        "a.vmd.py",
        """
        from pathlib import Path
        def setup(ctx):
            return lambda: Path(ctx.path.parent, "closed-" + ctx.query["n"]).write_text("x")
        def load(ctx):
            return "ok"
        """,
    )
    await harness.run(loader, "n=1")
    await harness.run(loader, "n=2")
    await harness.pool.close()
    assert (harness.root / "closed-1").exists() and (harness.root / "closed-2").exists()
    if sys.platform.startswith("linux"):
        assert not [pid for pid in _children() if _alive(pid)]


@linux_only
async def test_replacing_a_loader_many_times_leaves_no_processes_behind(
    workers: Workers,
) -> None:
    loader = workers.write("a.vmd.py", PID_LOADER)
    pids = set()
    for _ in range(12):
        done = await workers.run(loader)
        pids.add(int(done.code))
        await workers.pool.replace(loader)
    assert len(pids) == 12
    await workers.until(lambda: not any(_alive(pid) for pid in pids))
    # Only the warm spare (and the one it is about to be replaced by) may remain.
    await workers.until(lambda: len(_children()) <= 2)
    await workers.until(lambda: workers.pool.settled)
    assert len(workers.pool.pids()) <= 2


@linux_only
async def test_workers_die_when_the_daemon_is_killed(tmp_path: Path) -> None:
    loader = tmp_path / "a.vmd.py"
    loader.write_text(textwrap.dedent(PID_LOADER))
    script = tmp_path / "daemon.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import asyncio
            from vmd.workers.pool import WorkerPool

            async def main() -> None:
                pool = WorkerPool(roots=[{str(tmp_path)!r}], mode="serve", timeout_ms=5000,
                                  max_workers=2, on_log=print, on_reload=print)
                await pool.start()
                done = await pool.run({str(loader)!r}, {str(loader)!r}, {{}}, [], None)
                print(done.code, flush=True)
                await asyncio.sleep(1000)

            asyncio.run(main())
            """
        )
    )
    repo = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")])}
    daemon = await asyncio.create_subprocess_exec(
        sys.executable, str(script), stdout=subprocess.PIPE, env=env
    )
    try:
        assert daemon.stdout is not None
        line = await asyncio.wait_for(daemon.stdout.readline(), 10)
        worker = int(line)
        assert _alive(worker)
    finally:
        daemon.kill()
        await daemon.wait()
    await asyncio.wait_for(_wait_dead(worker), 5)


async def _wait_dead(pid: int) -> None:
    while _alive(pid):
        await asyncio.sleep(0.01)
