"""A worker's memory limit (`memoryLimitMb`): a runaway loader meets `MemoryError` in its own
code, reported with file and line, before the kernel's OOM killer picks a victim (perhaps the
editor or the dev server).

The limit is the process's data size (`RLIMIT_DATA`: the private writable memory it maps, a
little above what it has resident), not its address space: libraries that reserve address
space without writing to it (V8, Go, allocators' arenas) are not charged for it.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable

from vmd.workers.ipc import ErrorInfo

_MB = 1 << 20


def default_limit_mb() -> int:
    """A quarter of the memory this machine (or the container's cgroup) has: far above what a
    loader needs, below what one may take from everything else. 0 when it cannot be told."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            text = f.read().strip()
        if text.isdigit():
            total = min(total, int(text))
    except OSError:
        pass
    return max(1, total // 4 // _MB)


def apply(limit_mb: int) -> None:
    """Limit this process's data size to `limit_mb` MB (0: leave it as it is). Never above the
    hard limit the daemon was started with."""
    if limit_mb <= 0:
        return
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    soft = limit_mb * _MB
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def error_info(exc: MemoryError, locate: Callable[[BaseException], ErrorInfo], loader: str,
               limit_mb: int) -> ErrorInfo:
    """The `MemoryError` of a run that met the limit, located like any error. The finished
    frames' locals are dropped first: they may hold what filled the memory, and formatting the
    traceback needs a little."""
    import traceback

    traceback.clear_frames(exc.__traceback__)
    try:
        info = locate(exc)
    except MemoryError:  # still full (a module-level object holds it): where, roughly
        info = ErrorInfo(message="MemoryError", file=loader, line=1)
    text = info.message.removeprefix("MemoryError").removeprefix(": ")
    info.message = (f"MemoryError: the loader went over its memory limit of {limit_mb} MB"
                    f" (memoryLimitMb){': ' + text if text else ''}")
    return info
