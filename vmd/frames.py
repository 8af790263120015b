"""Where in the user's code something happened: the deepest frame of a traceback in files that
count (the loader and its project-local imports).

Used by the worker (live tracebacks), the pool (a crashed worker's faulthandler report) and the
diagnostics (the loader's own line in a helper's traceback). Imports only the stdlib: workers
import it at start-up.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

# One frame line of a Python traceback (`  File "x.py", line 3, in f`) or of a faulthandler
# report (`  File "x.py", line 3 in f`).
_FRAME = re.compile(r'\s*File "(.+)", line (\d+)')

Frame = tuple[str, int]  # (file, 1-based line)


def parse(text: str) -> list[Frame]:
    """The frames named in a traceback's text, in the order written."""
    out: list[Frame] = []
    for line in text.splitlines():
        match = _FRAME.match(line)
        if match:
            out.append((match[1], int(match[2])))
    return out


def deepest(frames: Iterable[Frame], counts: Callable[[str], bool]) -> Frame | None:
    """The innermost of `frames` (given outermost first, as Python prints a traceback) whose
    file `counts`, or None."""
    found = None
    for frame in frames:
        if counts(frame[0]):
            found = frame
    return found
