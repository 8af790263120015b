"""`memoryLimitMb`: a loader that runs away with memory fails with a `MemoryError` located in
its own code; its process is replaced, and the daemon and other modules carry on."""

from __future__ import annotations

import os
import resource
from pathlib import Path

from harness import Project, StartDaemon, exported

# `?grow` makes it allocate 4 GB, 16 MB at a time (line 8), unless a limit stops it first.
RUNAWAY = """\
import os
import vmd

def load(ctx):
    if "grow" in ctx.query:
        held = []
        for _ in range(256):
            held.append(bytearray(16 << 20))
    return vmd.json_module(os.getpid())
"""

NUMPY = """\
import numpy as np
import vmd

def load(ctx):
    table = np.ones((200_000, 1_000))
    return vmd.json_module(float(table.sum()))
"""

LIGHT = "import vmd\n\ndef load(ctx):\n    return vmd.json_module('light')\n"


def data_limit_mb(pid: int) -> int | None:
    """The soft data size limit of process `pid` in MB (None: unlimited)."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max data size"):
            soft = line.split()[3]
            return None if soft == "unlimited" else int(soft) >> 20
    raise AssertionError("no data size limit line")


async def test_a_runaway_loader_fails_with_a_located_memory_error_and_others_carry_on(
    project: Project, start_daemon: StartDaemon
) -> None:
    loader = project.write("src/runaway.vmd.py", RUNAWAY)
    light = project.write("src/light.vmd.py", LIGHT)
    daemon = await start_daemon(options={"memoryLimitMb": 400})
    before = exported(await daemon.load(loader))
    error = await daemon.load_error(f"{loader}?grow")
    assert error.message == (
        f"{loader}:8: MemoryError: the loader went over its memory limit of 400 MB (memoryLimitMb)"
    )
    assert error.data["file"] == loader and error.data["line"] == 8
    assert "held.append" in error.data["traceback"]
    # The daemon and the other modules carry on; the loader's next run gets a fresh process.
    assert exported(await daemon.load(light)) == "light"
    await daemon.invalidate(id=loader)
    after = exported(await daemon.load(loader))
    assert after != before


async def test_a_numpy_allocation_over_the_limit_is_a_memory_error_at_its_line(
    project: Project, start_daemon: StartDaemon
) -> None:
    loader = project.write("src/table.vmd.py", NUMPY)
    daemon = await start_daemon(options={"memoryLimitMb": 600})
    error = await daemon.load_error(loader)  # 200,000 x 1,000 float64: 1.6 GB
    assert error.message.startswith(
        f"{loader}:5: MemoryError: the loader went over its memory limit of 600 MB (memoryLimitMb)"
        ": Unable to allocate 1.49 GiB")
    assert error.data["file"] == loader and error.data["line"] == 5
    # Given more room (a smaller table), the same daemon serves it.
    project.write("src/table.vmd.py", NUMPY.replace("200_000", "20_000"))
    assert exported(await daemon.load(loader)) == 20_000_000.0


async def test_the_default_limit_is_a_quarter_of_the_machine_s_memory_and_0_means_none(
    project: Project, start_daemon: StartDaemon
) -> None:
    loader = project.write("src/runaway.vmd.py", RUNAWAY)
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        text = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        total = min(total, int(text)) if text.isdigit() else total
    except OSError:
        pass
    hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
    expected = total // 4 >> 20 if hard == resource.RLIM_INFINITY else min(total // 4, hard) >> 20
    default = await start_daemon()
    pid = exported(await default.load(loader))
    assert data_limit_mb(pid) == expected
    unlimited = await start_daemon(options={"memoryLimitMb": 0})
    pid = exported(await unlimited.load(loader))
    assert data_limit_mb(pid) == (None if hard == resource.RLIM_INFINITY else hard >> 20)


async def test_a_negative_limit_is_reported_and_the_default_used(
    project: Project, start_daemon: StartDaemon
) -> None:
    loader = project.write("src/runaway.vmd.py", RUNAWAY)
    daemon = await start_daemon(options={"memoryLimitMb": -5})
    pid = exported(await daemon.load(loader))
    warnings = [n["message"] for n in daemon.notifications("window/logMessage") if n["type"] == 2]
    assert any("memoryLimitMb" in w for w in warnings), warnings
    assert data_limit_mb(pid) is not None
