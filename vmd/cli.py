"""The `vmd` command line: argument parsing only. `vmd.commands` runs load, watch and check
(each through its own daemon, started by the Python client); `vmd.bootstrap` is `serve`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from urllib.parse import quote

from vmd import commands, globs, protocol
from vmd.commands import find_loaders, module_id

__all__ = ["DEFAULT_INCLUDE", "find_loaders", "main", "module_id"]

# `vmd check`'s include globs when none are given (the daemon's default, as a list).
DEFAULT_INCLUDE = list(protocol.DEFAULT_INCLUDE)

_FORMATTER = argparse.RawDescriptionHelpFormatter


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
    load.set_defaults(run=commands.load)

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
    watch.set_defaults(run=commands.watch)

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
        type=include_glob,
        metavar="GLOB",
        help="loader glob relative to the root; repeatable (default: **/*.vmd.py)",
    )
    check.add_argument("-v", "--verbose", action="store_true", help="print tracebacks of failures")
    check.add_argument(
        "--json", action="store_true", help="print one JSON object per loader (see below)"
    )
    check.set_defaults(run=commands.check)
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


# -- argument types --------------------------------------------------------------------------


def existing_folder(text: str) -> str:
    """A `--root` that is a folder, or a usage error saying what it is instead."""
    if not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"{text}: no such folder")
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text}: not a folder")
    return text


def include_glob(text: str) -> str:
    """An `--include` glob that can be matched, or a usage error saying why not."""
    try:
        globs.compile(globs.absolute(text, "/"))
    except globs.GlobError as exc:
        raise argparse.ArgumentTypeError(f"invalid glob {text!r}: {exc.reason}") from None
    return text


def query_item(text: str) -> str:
    """A `--query KEY=VALUE` as it goes into the id: percent-encoded, so `c++` or `a&b` reach
    `ctx.query` as written instead of being read as query syntax."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return f"{quote(key, safe='')}={quote(value, safe='')}"
