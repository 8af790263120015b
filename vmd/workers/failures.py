"""How a run that ended without an answer is reported: a timeout at the loader's line where
it was stuck, a crash with how the process ended and where faulthandler saw it."""

from __future__ import annotations

import signal
from collections.abc import Callable

from vmd import frames
from vmd.errors import LoaderCrashed, LoaderTimeout
from vmd.workers import ipc

# How long a timed-out run may take to say where it is stuck. Its reader thread needs the GIL
# and a CPU: on a machine whose every core is busy (a build, a CI runner) that took up to
# ~200 ms, so 150 ms lost the file and line. Only a main thread holding the GIL in C code
# never answers, and that worker is killed right after anyway.
STACK_WAIT = 2.0

def timed_out(stack: ipc.Stack | None, loader: str, id: str, timeout_ms: int) -> LoaderTimeout:
    """The error for a run killed after `timeout_ms`; `stack`: where it was, if it said."""
    return LoaderTimeout(
        # The file and line say where; the id is in the error's data.
        f"timed out after {timeout_ms} ms",
        id=id,
        file=stack.file if stack else loader,
        line=stack.line if stack else 1,
        traceback=stack.traceback if stack else "",
    )


def crashed(
    returncode: int | None,
    fault: list[str] | None,
    loader: str,
    id: str,
    is_local: Callable[[str], bool],
) -> LoaderCrashed:
    """The error for a worker that died during a run, located at the deepest project frame
    of its faulthandler report (`fault`), else at the loader."""
    if returncode is None:
        how = "closed its pipe"
    elif returncode < 0:
        try:
            how = f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            how = f"was killed by signal {-returncode}"
    else:
        how = f"exited with code {returncode}"
    # faulthandler writes the most recent call first.
    parsed = frames.parse("\n".join(reversed(fault or ())))
    file, line = frames.deepest(parsed, is_local) or (loader, 1)
    return LoaderCrashed(
        f"the worker process running {id} {how}",
        id=id,
        file=file,
        line=line,
        traceback="\n".join(fault or ()),
    )
