"""The daemon as a child subreaper: what a process under it leaves behind is its to wait for.

A worker forked by the preloader is the preloader's child; whatever a worker's loader started
and left behind is re-parented to the nearest subreaper, the daemon, when the worker dies, and
so are the workers of a preloader that died (they die with it). `reap_strays` waits for a
loader's leftovers, so none stays a zombie; `vmd.workers.generation` waits for the workers.
"""

from __future__ import annotations

import os
import sys

_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37
_subreaper = False


def become_subreaper() -> bool:
    """Make this process a child subreaper (Linux); whether it is one now."""
    global _subreaper
    if _subreaper or not sys.platform.startswith("linux"):
        return _subreaper
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        _subreaper = libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except Exception:
        _subreaper = False
    return _subreaper


def is_subreaper() -> bool:
    """Whether `become_subreaper` succeeded in this process."""
    return _subreaper


def reap_strays() -> int:
    """Wait for every exited child that is not a process group leader: a loader's leftovers,
    re-parented here when their worker died. Group leaders are the daemon's own (workers,
    preloaders, a dead preloader's workers), which their owners wait for. Returns how many
    were reaped."""
    reaped = 0
    for pid in _children():
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rpartition(b")")[2].split()
        except OSError:
            continue
        state, pgrp = fields[0], int(fields[2])
        if state == b"Z" and pgrp != pid:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    reaped += 1
            except ChildProcessError:
                pass
    return reaped


def _children() -> list[int]:
    pids: list[int] = []
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return pids
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/children", "rb") as f:
                pids.extend(int(p) for p in f.read().split())
        except OSError:
            continue
    return pids
