"""The few typed errors vmd raises, each carrying the module id, file and line.

Each kind has its JSON-RPC code (defined, with every other code, in `vmd.protocol`).
"""

from __future__ import annotations

from vmd.protocol import (
    LOADER_CRASHED,
    LOADER_FAILED,
    LOADER_TIMEOUT,
    REFUSED,
    ErrorKind,
    LoaderErrorData,
)

_CODES: dict[str, int] = {
    "error": LOADER_FAILED,
    "timeout": LOADER_TIMEOUT,
    "crash": LOADER_CRASHED,
    "refused": REFUSED,
}


class VmdError(Exception):
    """An error about one module, sent to clients as a JSON-RPC error with `data`."""

    kind: ErrorKind = "error"

    def __init__(
        self, message: str, *, id: str, file: str, line: int = 1, traceback: str = ""
    ) -> None:
        super().__init__(message)
        self.message = message
        self.id = id
        self.file = file
        self.line = line
        self.traceback = traceback

    @property
    def code(self) -> int:
        """The JSON-RPC error code for this kind of failure."""
        return _CODES[self.kind]

    def to_data(self) -> LoaderErrorData:
        """The error's JSON-RPC `data` object."""
        return LoaderErrorData(
            id=self.id,
            message=self.message,
            file=self.file,
            line=self.line,
            kind=self.kind,
            traceback=self.traceback,
        )

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class LoaderError(VmdError):
    """The loader (or its setup, watch function or imports) raised."""

    kind: ErrorKind = "error"


class LoaderTimeout(VmdError):
    """The run took longer than `timeoutMs`; its worker was killed."""

    kind: ErrorKind = "timeout"


class LoaderCrashed(VmdError):
    """The worker process running the loader died (segfault, os._exit, killed)."""

    kind: ErrorKind = "crash"


class Refused(VmdError):
    """The id names no loader vmd may run: outside the root, not included, missing..."""

    kind: ErrorKind = "refused"


def from_data(data: LoaderErrorData) -> VmdError:
    """Rebuild the typed error from its wire form (used by the Python client)."""
    cls = {"error": LoaderError, "timeout": LoaderTimeout, "crash": LoaderCrashed}.get(
        data.kind, Refused
    )
    return cls(data.message, id=data.id, file=data.file, line=data.line, traceback=data.traceback)
