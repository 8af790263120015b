"""Where a failure happened in the user's code, as the worker reports it: the deepest frame
in the loader or its project-local imports, and a traceback without the worker's own frames.

Imports only the stdlib and light vmd modules: every worker imports it at start-up.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Callable
from types import CodeType, FrameType, ModuleType
from typing import Any

from vmd import frames
from vmd.workers import capture, ipc

# Frames of the worker's own code: never the user's, left out of tracebacks.
_OWN_FILES = (__file__, capture.__file__, os.path.join(os.path.dirname(__file__), "main.py"))


class ContractError(TypeError):
    """The loader broke the Loader API (bad return value, no `load`...): located by us."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


def line_of(module: ModuleType | None, loader: str, name: str) -> int:
    """The line defining `name` in the loader (its `def` or assignment), else 1."""
    code = getattr(getattr(module, name, None), "__code__", None)
    if isinstance(code, CodeType) and os.path.abspath(code.co_filename) == loader:
        return code.co_firstlineno
    pattern = re.compile(rf"(?:async\s+def|def)\s+{name}\b|{name}\s*(?::[^=]*)?=(?!=)")
    try:
        with open(loader, encoding="utf-8", errors="replace") as f:
            for number, text in enumerate(f, 1):
                if pattern.match(text):
                    return number
    except OSError:
        pass
    return 1


def error_info(exc: BaseException, loader: str, is_local: Callable[[str], bool]) -> ipc.ErrorInfo:
    """`exc` located at the deepest frame in a file that `is_local` (else `loader`, line 1),
    with its traceback stripped of the worker's own frames."""
    import traceback

    name = type(exc).__name__
    if isinstance(exc, ContractError):
        message = f"TypeError: {exc}"
        return ipc.ErrorInfo(message=message, file=loader, line=exc.line, traceback=message + "\n")
    walked = ((f.f_code.co_filename, n) for f, n in traceback.walk_tb(exc.__traceback__))
    deepest = frames.deepest(walked, is_local)
    file, line = (os.path.abspath(deepest[0]), deepest[1]) if deepest else (loader, 1)
    if isinstance(exc, SyntaxError) and exc.filename and is_local(exc.filename):
        file, line = os.path.abspath(exc.filename), exc.lineno or 1
    try:
        text = str(exc)
    except Exception:  # the loader's exception cannot describe itself: still its error
        text = "<str() of the exception failed>"
    return ipc.ErrorInfo(
        message=_sendable(f"{name}: {text}" if text else name),
        file=_sendable(file),
        line=line,
        traceback=_sendable(format_exception(exc)),
    )


def _sendable(text: str) -> str:
    """`text` with lone surrogates escaped (`\\udcff`): a file name that is not UTF-8, as
    `os.listdir` gives it, cannot be sent as it is, and the error would be lost with it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def stack(loader: str, is_local: Callable[[str], bool], first: list[int | None]) -> ipc.Stack:
    """Where the loader is now: the deepest frame in a file that `is_local` of the threads
    `first` (the main thread, the asyncio thread), then of any other, for a timeout's error."""
    import traceback

    current = sys._current_frames()
    me = threading.get_ident()
    seen: set[int] = set()
    for ident in [*first, *current]:
        if ident is None or ident in seen or ident == me or ident not in current:
            continue
        seen.add(ident)
        frame: FrameType | None = current[ident]
        while frame is not None:
            if is_local(frame.f_code.co_filename):
                summary = _strip(traceback.extract_stack(frame))
                return ipc.Stack(
                    file=os.path.abspath(frame.f_code.co_filename),
                    line=frame.f_lineno,
                    traceback="Traceback (most recent call last):\n" + "".join(summary.format()),
                )
            frame = frame.f_back
    return ipc.Stack(file=loader, line=1, traceback="")


def format_exception(exc: BaseException) -> str:
    """`exc`'s traceback, without the worker's own frames."""
    import traceback

    te = traceback.TracebackException.from_exception(exc)
    te.stack = _strip(te.stack)
    return "".join(te.format())


def _internal(filename: str) -> bool:
    return (
        filename in _OWN_FILES
        or filename.startswith(("<frozen importlib", "<frozen runpy>"))
        or (os.sep + "concurrent" + os.sep + "futures" + os.sep) in filename
    )


def _strip(stack: Any) -> Any:
    import traceback

    return traceback.StackSummary.from_list([f for f in stack if not _internal(f.filename)])
