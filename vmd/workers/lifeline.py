"""A worker's or preloader's tie to the daemon: it exits when the daemon does, even when the
daemon is killed and cannot stop it.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any


def die_with_daemon(parent: int | None = None) -> None:
    """Exit when the daemon does: PR_SET_PDEATHSIG on Linux (our `parent`, the daemon's pid if
    None, dies with it); if it already died before that took effect, our parent is no longer
    that pid. Elsewhere stdin EOF does the job."""
    if sys.platform.startswith("linux"):
        try:
            prctl()(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
        except Exception:
            pass
    daemon = os.environ.get("VMD_DAEMON_PID")
    if parent is None and daemon and daemon.isdigit():
        parent = int(daemon)
    if parent is not None and os.getppid() != parent:
        os._exit(0)


@functools.cache
def prctl() -> Any:
    """libc's prctl (Linux), looked up once: a preloader's workers have it from the preloader
    (looking it up again cost each ~0.2 ms)."""
    import ctypes

    return ctypes.CDLL(None, use_errno=True).prctl
