"""The `vmd` command line: argument parsing on top of `vmd.client` (and `vmd.bootstrap` for serve).

Every command but `serve` starts its own daemon through the Python client, so what the CLI shows
is exactly what the Vite adapter and editors get.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import posixpath
import signal
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

import msgspec

from vmd import globs
from vmd.errors import Refused, VmdError
from vmd.protocol import ChangedParams, LoaderErrorData, LoadResult

if TYPE_CHECKING:
    from vmd.client import AsyncClient

DEFAULT_INCLUDE = ["**/*.vmd.py"]
SKIP_DIRS = frozenset({"node_modules", ".git", ".venv", "__pycache__"})

# How many loaders `vmd check` asks the daemon for at once (the daemon bounds its workers).
_CHECK_CONCURRENCY = 8

# The daemon a command starts shares the terminal's stderr: only its problems belong there.
_DAEMON_LOG_LEVEL = "warning"

_FORMATTER = argparse.RawDescriptionHelpFormatter

_json_encoder = msgspec.json.Encoder()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: parse `argv` (default `sys.argv[1:]`) and exit."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        sys.exit(2)
    try:
        code = args.run(args)
    except KeyboardInterrupt:  # Ctrl-C during load or check: the daemon went down with us
        code = 130
    except BrokenPipeError:
        # `vmd watch … | head -1`: the reader is gone, which is how such a pipe ends.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vmd",
        formatter_class=_FORMATTER,
        description="vmd turns Python loaders (*.vmd.py) into JavaScript modules.",
        epilog="examples:\n"
        "  vmd load src/users.vmd.py\n"
        "  vmd watch 'src/users.vmd.py?type=admin'\n"
        "  vmd check\n"
        "  vmd serve   # the daemon, for clients speaking the protocol on stdio\n",
    )
    from vmd import __version__

    parser.add_argument("--version", action="version", version=f"vmd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        formatter_class=_FORMATTER,
        help="run the daemon on stdin/stdout",
        description="Run the vmd daemon, speaking JSON-RPC 2.0 with LSP framing on stdin/stdout.\n"
        "Clients (the Vite plugin, editors, vmd.client) start it; it exits when its client "
        "goes away. Logs go to stderr.",
        epilog="examples:\n  vmd serve\n  vmd serve --log-level debug\n",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="what the daemon logs to stderr (default: info)",
    )
    serve.set_defaults(run=_serve)

    load = sub.add_parser(
        "load",
        formatter_class=_FORMATTER,
        help="print the module a loader generates",
        description="Run a loader once and print the JavaScript module it generates.\n"
        "On a loader error, print file:line: message and the traceback to stderr and exit 1.",
        epilog="examples:\n"
        "  vmd load src/users.vmd.py\n"
        "  vmd load 'src/users.vmd.py?type=admin'\n"
        "  vmd load src/users.vmd.py --query type=admin --json\n"
        "  vmd load src/users.vmd.py --mode build --root ..\n"
        "\n"
        "--json prints the result object (id, code, map, version, watchFiles, dependencies,\n"
        "watchDirs). When the loader fails it prints the daemon's error data instead, as\n"
        "vmd check --json does, and exits 1 (the error also goes to stderr as usual):\n"
        '  {"error": {"id": ID, "message": M, "file": F, "line": L, "kind": K, "traceback": T}}\n'
        "If the daemon itself fails, stdout stays empty: the reason is on stderr.\n",
    )
    _add_id_arguments(load)
    load.add_argument(
        "--json",
        action="store_true",
        help="print the whole result (code, map, version...), or the error, as JSON (see below)",
    )
    load.add_argument(
        "--mode",
        default="serve",
        choices=["serve", "build"],
        help="ctx.mode for the loader (default: serve)",
    )
    load.set_defaults(run=_load)

    watch = sub.add_parser(
        "watch",
        formatter_class=_FORMATTER,
        help="print a module, then again whenever it changes",
        description="Print the module a loader generates, then each new version of it (or the\n"
        "error) as its inputs change, until Ctrl-C or SIGTERM (exit 0). A version whose\n"
        "code is the one printed last is not printed again, unless --all.",
        epilog="examples:\n"
        "  vmd watch src/users.vmd.py\n"
        "  vmd watch src/users.vmd.py --query type=admin\n"
        "  vmd watch src/users.vmd.py --all | grep '^// '\n"
        "\n"
        "what it prints on stdout:\n"
        "  CODE                  the module: first, then after each // version line\n"
        "  // version N (WHY)    version N of the module follows; WHY is what made it stale:\n"
        "                        watch (a file it watches or read), code (the loader or a\n"
        "                        module it imports), reload (ctx.reload) or invalidate\n"
        "  // error (WHY)        the run WHY caused failed; the error follows on stderr\n"
        "and on stderr:\n"
        "  FILE:LINE: MESSAGE    a failed load, then its traceback (the first load has no\n"
        "                        // error line before it)\n"
        "  anything the loader prints\n"
        "  vmd: MESSAGE          why it stopped: the daemon stopped or could not start\n"
        "                        (exit 1), or ID cannot be a module id (exit 2)\n",
    )
    _add_id_arguments(watch)
    watch.add_argument(
        "--all",
        action="store_true",
        help="print every new version, even when its code is the same as the last one printed",
    )
    watch.set_defaults(run=_watch)

    check = sub.add_parser(
        "check",
        formatter_class=_FORMATTER,
        help="load every loader in build mode and report failures",
        description="Find every loader under the root (or the given files and folders), load each "
        "in build mode and print `ok   path` or `FAIL path:line: message`.\n"
        "node_modules, .git, .venv and __pycache__ are skipped. Exit status: 0 if all loaded, "
        "1 if any failed, 2 if no loader was found.",
        epilog="examples:\n"
        "  vmd check\n"
        "  vmd check src/data\n"
        "  vmd check --include 'src/**/*.vmd.py' --include 'tools/*.vmd.py'\n"
        "  vmd check --json | jq -r 'select(.ok | not) | .id'\n"
        "\n"
        "--json prints one JSON object per loader, one per line (JSON Lines), sorted by path:\n"
        '  {"id": ID, "ok": true, "error": null}\n'
        '  {"id": ID, "ok": false, "error": {"id": ID, "message": M, "file": F, "line": L,\n'
        '                                    "kind": K, "traceback": T}}\n'
        "ID and F are absolute paths; K is error, timeout, crash or refused; T is the Python\n"
        "traceback (empty when there is none). The exit status is the same as without --json.\n",
    )
    check.add_argument("paths", nargs="*", metavar="PATH", help="files or folders to check")
    check.add_argument(
        "--root",
        default=".",
        type=existing_folder,
        help="the workspace root (default: the current directory)",
    )
    check.add_argument(
        "--include",
        action="append",
        metavar="GLOB",
        help="loader glob relative to the root; repeatable (default: **/*.vmd.py)",
    )
    check.add_argument("-v", "--verbose", action="store_true", help="print tracebacks of failures")
    check.add_argument(
        "--json", action="store_true", help="print one JSON object per loader (see below)"
    )
    check.set_defaults(run=_check)
    return parser


def _add_id_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "id",
        metavar="ID",
        help="the loader's path (relative to the current directory), ?query allowed",
    )
    parser.add_argument(
        "--query",
        action="append",
        type=query_item,
        metavar="KEY=VALUE",
        help="add KEY=VALUE to the id's query string, percent-encoded, so the loader's "
        "ctx.query gets the value as written (spares quoting `?` in shells); repeatable",
    )
    parser.add_argument(
        "--root",
        default=".",
        type=existing_folder,
        help="the workspace root (default: the current directory)",
    )


def _serve(args: argparse.Namespace) -> int:
    from vmd.bootstrap import serve  # only `serve` pays for the daemon's imports

    code = serve(log_level=args.log_level)
    # Workers are stopped and every answer is written: skip the interpreter's teardown
    # (~20 ms of the end of every `vite build`, which waits for the daemon to exit).
    logging.shutdown()
    sys.stderr.flush()
    os._exit(code)


# -- load / watch ----------------------------------------------------------------------------


def existing_folder(text: str) -> str:
    """A `--root` that is a folder, or a usage error saying what it is instead."""
    if not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"{text}: no such folder")
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text}: not a folder")
    return text


def query_item(text: str) -> str:
    """A `--query KEY=VALUE` as it goes into the id: percent-encoded, so `c++` or `a&b` reach
    `ctx.query` as written instead of being read as query syntax."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return f"{quote(key, safe='')}={quote(value, safe='')}"


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


def _load(args: argparse.Namespace) -> int:
    id = module_id(args.id, args.query or ())
    if why := _unencodable(id):
        print(f"vmd: {why}", file=sys.stderr)
        return 2
    return asyncio.run(_load_async(args.root, id, args.mode, args.json))


async def _load_async(root: str, id: str, mode: str, as_json: bool) -> int:
    from vmd.client import AsyncClient, ConnectionClosed, ProtocolError

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


def _watch(args: argparse.Namespace) -> int:
    id = module_id(args.id, args.query or ())
    if why := _unencodable(id):
        print(f"vmd: {why}", file=sys.stderr)
        return 2
    return asyncio.run(_watch_async(args.root, id, every=args.all))


async def _watch_async(root: str, id: str, *, every: bool) -> int:
    from vmd.client import AsyncClient, ConnectionClosed, ProtocolError

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


def _check(args: argparse.Namespace) -> int:
    include = args.include or DEFAULT_INCLUDE
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
    from vmd.client import AsyncClient, ConnectionClosed, ProtocolError

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
