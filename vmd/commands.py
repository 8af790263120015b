"""What `vmd load`, `vmd watch` and `vmd check` do, once `vmd.cli` has parsed their arguments.

Each starts its own daemon through `vmd.async_client`, so what they show is exactly what the Vite
adapter and editors get.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import posixpath
import signal
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from vmd import globs
from vmd.errors import Refused, VmdError
from vmd.protocol import DEFAULT_INCLUDE, ChangedParams, LoaderErrorData, LoadResult

if TYPE_CHECKING:
    from vmd.async_client import AsyncClient

SKIP_DIRS = frozenset({"node_modules", ".git", ".venv", "__pycache__"})

# How many loaders `vmd check` asks the daemon for at once (the daemon bounds its workers).
_CHECK_CONCURRENCY = 8

# The daemon a command starts shares the terminal's stderr: only its problems belong there.
_DAEMON_LOG_LEVEL = "warning"

_json_encoder = msgspec.json.Encoder()


# -- load / watch ----------------------------------------------------------------------------


def module_id(text: str, query: Iterable[str] = ()) -> str:
    """The module id for a path given on the command line: absolute, keeping its `?query`,
    with `query` items (encoded `key=value`, see `query_item`) appended."""
    path, sep, qs = text.partition("?")
    parts = [p for p in (qs, *query) if p]
    return os.path.abspath(path) + ("?" + "&".join(parts) if parts else sep)


def _unencodable(id: str) -> str | None:
    """Why `id` cannot travel in the protocol (JSON is UTF-8), or None when it can."""
    try:
        id.encode("utf-8")
    except UnicodeEncodeError:
        return f"{_shown(id)}: a file name that is not valid UTF-8 cannot be a module id"
    return None


def _unnameable(path: str) -> str | None:
    """Why the loader file `path` can never be a module id, or None when it can be one."""
    if why := _unencodable(path):
        return why
    if "?" in path or "#" in path:  # an id's query starts at `?`; `#` is refused outright
        return f"{_shown(path)}: a file name with '?' or '#' cannot be a module id"
    return None


def _shown(path: str) -> str:
    """`path` printable whatever bytes its name has (undecodable ones as \\x escapes)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def load(args: argparse.Namespace) -> int:
    id = module_id(args.id, args.query or ())
    if why := _unencodable(id):
        print(f"vmd: {why}", file=sys.stderr)
        return 2
    return asyncio.run(_load_async(args.root, id, args.mode, args.json))


async def _load_async(root: str, id: str, mode: str, as_json: bool) -> int:
    from vmd.async_client import AsyncClient, ConnectionClosed, ProtocolError

    try:
        async with await AsyncClient.start(
            root, mode=mode, log_level=_DAEMON_LOG_LEVEL, on_log=_print_log
        ) as client:
            result = await client.load(id)
    except VmdError as exc:
        _print_error(exc)
        if as_json:
            _print_json({"error": _error_data(exc)})
        return 1
    except (ProtocolError, ConnectionClosed) as exc:
        print(f"vmd: {exc}", file=sys.stderr)
        return 1
    if as_json:
        _print_json(result)
    else:
        _print_code(result)
    return 0


def watch(args: argparse.Namespace) -> int:
    id = module_id(args.id, args.query or ())
    if why := _unencodable(id):
        print(f"vmd: {why}", file=sys.stderr)
        return 2
    return asyncio.run(_watch_async(args.root, id, every=args.all))


async def _watch_async(root: str, id: str, *, every: bool) -> int:
    from vmd.async_client import AsyncClient, ConnectionClosed, ProtocolError

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with await AsyncClient.start(
            root, log_level=_DAEMON_LOG_LEVEL, on_log=_print_log
        ) as client:
            changes = client.changes()  # before the first load: no change may slip between
            stopped = asyncio.ensure_future(stop.wait())
            try:
                # Ctrl-C stops the first load too (a loader may take until its timeout).
                screen = _Screen(every=every)
                first = asyncio.ensure_future(_show(client, id, None, screen))
                await asyncio.wait({first, stopped}, return_when=asyncio.FIRST_COMPLETED)
                if not first.done():
                    first.cancel()
                    return 0
                while not stop.is_set():
                    nxt = asyncio.ensure_future(changes.__anext__())
                    await asyncio.wait({nxt, stopped}, return_when=asyncio.FIRST_COMPLETED)
                    if not nxt.done():
                        nxt.cancel()
                        break
                    try:
                        change = nxt.result()
                    except StopAsyncIteration:
                        print("vmd: the daemon has stopped", file=sys.stderr)
                        return 1
                    if change.id == id:
                        await _show(client, id, change, screen)
            finally:
                stopped.cancel()
    except (ProtocolError, ConnectionClosed) as exc:
        if stop.is_set():
            return 0
        print(f"vmd: {exc}", file=sys.stderr)
        return 1
    return 0


@dataclass
class _Screen:
    """What `vmd watch` printed last, to tell what is new."""

    every: bool  # --all: print every new version, even with the code already on screen
    version: int | None = None
    code: str | None = None  # None when an error was printed after it


async def _show(
    client: AsyncClient, id: str, change: ChangedParams | None, screen: _Screen
) -> None:
    """Load `id` and print it, after a header line when a `change` caused it, unless it is
    not new: several notifications can end in one run, and a run can give the same code."""
    try:
        result = await client.load(id)
    except VmdError as exc:
        if change is not None:
            # A failed run has no version to show (vmd/changed names the stale one).
            print(f"// error ({change.reason})", flush=True)
        _print_error(exc)
        screen.code = None  # the error is on screen now: the next good version is news
        return
    if result.version == screen.version:
        return
    screen.version = result.version
    if result.code == screen.code and not screen.every:
        return
    screen.code = result.code
    if change is not None:
        print(f"// version {result.version} ({change.reason})")
    _print_code(result)


def _print_log(params: dict[str, object]) -> None:
    """What loaders print (the daemon's `window/logMessage` of type Log) goes to stderr, next
    to the errors: stdout carries only the module. The daemon logs its own warnings there."""
    if params.get("type") == 4:
        print(params.get("message", ""), file=sys.stderr, flush=True)


def _print_code(result: LoadResult) -> None:
    sys.stdout.write(result.code if result.code.endswith("\n") else result.code + "\n")
    sys.stdout.flush()


def _print_json(value: object) -> None:
    sys.stdout.write(msgspec.json.format(_json_encoder.encode(value), indent=2).decode() + "\n")
    sys.stdout.flush()


def _error_data(exc: VmdError | None) -> LoaderErrorData | None:
    """`exc` as the daemon sent it, printable: a file name that is not UTF-8 is escaped."""
    if exc is None:
        return None
    return msgspec.structs.replace(exc.to_data(), id=_shown(exc.id), file=_shown(exc.file))


def _print_error(exc: VmdError) -> None:
    print(str(exc), file=sys.stderr)
    if exc.traceback:
        sys.stderr.write(exc.traceback if exc.traceback.endswith("\n") else exc.traceback + "\n")
    sys.stderr.flush()


# -- check -----------------------------------------------------------------------------------


def find_loaders(root: str, paths: list[str], include: list[str]) -> list[str]:
    """Every loader under `paths` (default: the root) matching `include` (globs relative to
    the root), skipping node_modules, .git, .venv and __pycache__; files named explicitly are
    always included (the daemon says why if it refuses one). Absolute paths, sorted."""
    root = os.path.abspath(root).replace(os.sep, "/")
    patterns = [globs.absolute(p, root) for p in include]
    found: set[str] = set()
    for start in paths or [root]:
        start = os.path.abspath(start)
        if os.path.isfile(start):
            found.add(start)
            continue
        for folder, dirs, files in os.walk(start):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
            for name in files:
                path = posixpath.join(folder.replace(os.sep, "/"), name)
                if any(globs.matches(p, path) for p in patterns):
                    found.add(path)
    return sorted(found)


def check(args: argparse.Namespace) -> int:
    include = args.include or list(DEFAULT_INCLUDE)
    for path in args.paths:
        if not os.path.exists(path):
            print(f"vmd: {path}: no such file or folder", file=sys.stderr)
            return 2
    loaders = find_loaders(args.root, args.paths, include)
    if not loaders:
        print(f"vmd: no loaders found (include: {', '.join(include)})", file=sys.stderr)
        return 2
    return asyncio.run(_check_async(args.root, loaders, args.include, args.verbose, args.json))


async def _check_async(
    root: str, loaders: list[str], include: list[str] | None, verbose: bool, as_json: bool
) -> int:
    from vmd.async_client import AsyncClient, ConnectionClosed, ProtocolError

    base = os.path.abspath(root)
    limit = asyncio.Semaphore(_CHECK_CONCURRENCY)

    async def one(client: AsyncClient, path: str) -> VmdError | None:
        if why := _unnameable(path):  # reported like a refusal; the others still run
            return Refused(why, id=path, file=path, line=1)
        async with limit:
            try:
                await client.load(path)
            except VmdError as exc:
                return exc
        return None

    try:
        async with await AsyncClient.start(
            root, mode="build", include=include, log_level=_DAEMON_LOG_LEVEL, on_log=_print_log
        ) as client:
            outcomes = await asyncio.gather(*(one(client, path) for path in loaders))
    except (ProtocolError, ConnectionClosed) as exc:
        print(f"vmd: {exc}", file=sys.stderr)
        return 1
    for path, error in zip(loaders, outcomes, strict=True):
        if as_json:
            line = {"id": _shown(path), "ok": error is None, "error": _error_data(error)}
            sys.stdout.write(_json_encoder.encode(line).decode() + "\n")
            continue
        rel = _relative(path, base)
        if error is None:
            print(f"ok   {rel}")
            continue
        where = _relative(error.file, base)
        location = f"{rel}:{error.line}" if error.file == path else f"{rel}: {where}:{error.line}"
        print(f"FAIL {location}: {error.message}")
        if verbose and error.traceback:
            sys.stdout.write(_indent(error.traceback))
    sys.stdout.flush()
    return 1 if any(error is not None for error in outcomes) else 0


def _relative(path: str, base: str) -> str:
    rel = os.path.relpath(path, base)
    return _shown(path if rel.startswith("..") else rel.replace(os.sep, "/"))


def _indent(text: str) -> str:
    return "".join(f"    {line}\n" for line in text.splitlines())
