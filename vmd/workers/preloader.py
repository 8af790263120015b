"""The preloader (`python -m vmd.workers.preloader FD`): a process that has imported the worker's
code and the modules loaders were seen to import, and forks a fresh worker per request.

A spawned worker pays for its interpreter, msgspec and vmd's modules (~70 ms of CPU here) and
then for its loader's libraries (pandas: ~0.5 s), again after every code change. A worker forked
from here has them already: only what is project-local is imported from source in the worker,
so every freshness guarantee of a spawned worker holds (project code is never preloaded).

The daemon sends the module list on stdin, then `Fork` requests on the socket FD with the
worker's three pipe ends attached. Each worker is forked twice (the middle process exits at
once), so it is re-parented to the daemon, which is a child subreaper: the daemon waits for it,
its `PR_SET_PDEATHSIG` points at the daemon, and it outlives this process. Forking is refused,
and this process exits, when a Python thread is alive here or a preloaded module's file changed
on disk (`pip install -U`): the daemon then spawns, and builds a new preloader.
"""

from __future__ import annotations

import atexit
import functools
import gc
import importlib
import importlib.util
import os
import socket
import sys
import threading
import time
from typing import Any

import vmd.jsmodule  # noqa: F401 - what nearly every loader calls: its workers need not import it
from vmd.workers import capture, ipc, modules
from vmd.workers import main as worker_main
from vmd.workers.capture import Locality

_REPARENT_WAIT = 5.0  # a worker waits this long to become the daemon's child, then gives up
NAME = b"vmd-preloader"  # its process name (/proc/PID/comm); forked workers get theirs back
# File times come from a coarse clock (a tick behind): a file this much older than the start
# counts as changed during the preload too.
_RACE_MARGIN_NS = 50_000_000
_MAX_FAILED = 1000  # names reported as failed (the report is one socket message)


class _Preloader:
    """What was imported here, and the state a forked worker must get back."""

    def __init__(self, sock: socket.socket, plan: ipc.Preload) -> None:
        self.sock = sock
        self.plan = plan
        self.daemon = int(os.environ.get("VMD_DAEMON_PID") or os.getppid())
        self.started = time.time_ns()
        # As a spawned worker starts: put back in every forked worker, whatever imports did.
        self.cwd = os.getcwd()
        self.path = list(sys.path)
        self.environ = dict(os.environ)
        self.base = set(sys.modules)  # the worker's own modules: never evicted
        self.loaded = ipc.Loaded(pid=os.getpid(), base=sorted(self.base))
        self.files: dict[str, tuple[int, int, int]] = {}
        self.extras: list[str] = []  # imported here beyond the worker's own modules
        self.name = _name()  # a spawned worker's process name

    def preload(self) -> None:
        """Import each module that is findable and not project code; stop at one that starts
        a Python thread (forking with a thread alive is unsafe, so this process is done)."""
        locality = Locality(self.plan.roots)
        threads = threading.active_count()
        for name in self.plan.modules:
            if name in sys.modules:
                continue
            if not _importable(name, locality):
                self._failed(name)
                continue
            try:
                importlib.import_module(name)
            except BaseException:  # SystemExit and KeyboardInterrupt from an import too
                self._failed(name)
            finally:
                self._restore()
            if threading.active_count() > threads:
                self.loaded.threaded.append(name)
                self.loaded.unsafe = f"importing {name} started a Python thread"
                return
        capture.interpreter_dirs()  # what every worker's Locality needs: found once, here
        gc.collect()
        gc.freeze()  # forked workers share these objects' pages instead of copying them
        self.files = _signatures()
        self.extras = [m for m in sys.modules if m not in self.base]
        # A file replaced after its module was imported but before the signatures were taken
        # would pass every later check with the old code in memory: start over instead.
        now = time.time_ns()
        for path, (mtime, _, _) in self.files.items():
            if self.started - _RACE_MARGIN_NS <= mtime <= now:
                self.loaded.unsafe = f"{path} changed while the preloader was importing"
                return

    def _failed(self, name: str) -> None:
        if len(self.loaded.failed) < _MAX_FAILED:
            self.loaded.failed.append(name)

    def serve(self) -> None:
        """Answer Fork requests until the daemon closes the socket."""
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.sock, 1 << 16, 3)
            except OSError:
                return
            if not data:
                return
            request = ipc.to_preloader_decoder.decode(data)
            refused = self._refusal()
            pid = 0
            if not refused and len(fds) == 3 and not request.check:
                worker_main.flush()
                pid = self._fork(fds)
            for fd in fds:
                os.close(fd)
            if not _send(self.sock, ipc.Forked(seq=request.seq, pid=pid, refused=refused)):
                return
            if refused:
                return

    def _refusal(self) -> str:
        if threading.active_count() > 1:
            return "a Python thread is running in the preloader"
        for path, sig in self.files.items():
            try:
                st = os.stat(path)
            except OSError:
                return f"{path} is gone"
            if (st.st_mtime_ns, st.st_size, st.st_ino) != sig:
                return f"{path} changed on disk"
        return ""

    def _fork(self, fds: list[int]) -> int:
        """Fork twice: the worker's parent exits at once, so the worker becomes the daemon's."""
        read, write = os.pipe()
        middle = os.fork()
        if middle == 0:
            try:
                os.close(read)
                worker = os.fork()
                if worker == 0:
                    os.close(write)
                    self._become_worker(fds)
                os.write(write, worker.to_bytes(8, "little"))
            finally:
                os._exit(0)
        os.close(write)
        got = ipc.read_exact(read, 8)
        os.close(read)
        os.waitpid(middle, 0)
        return int.from_bytes(got, "little") if got else 0

    def _become_worker(self, fds: list[int]) -> None:
        """In the forked worker: the state a spawned worker starts with, then its main()."""
        code = 70
        try:
            self.sock.close()
            os.setsid()  # its own process group, as spawned workers have (timeouts kill it)
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
            for fd in fds:
                if fd > 2:
                    os.close(fd)
            deadline = time.monotonic() + _REPARENT_WAIT
            while os.getppid() != self.daemon:  # the middle process is exiting
                if time.monotonic() > deadline:
                    os._exit(0)
                time.sleep(0.0001)
            # No _restore(): serving changes nothing of it, and preload() put it back.
            _set_name(self.name)
            sys.argv = [worker_main.__file__]
            atexit._clear()
            _reseed()
            modules.preloaded = frozenset(self.extras)
            worker_main.main()
            code = 0
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            worker_main.flush()
            os._exit(code)

    def _restore(self) -> None:
        """Undo what an import may have changed that a spawned worker would not have."""
        if os.getcwd() != self.cwd:
            os.chdir(self.cwd)
        sys.path[:] = self.path
        if os.environ != self.environ:
            os.environ.clear()
            os.environ.update(self.environ)


def _send(sock: socket.socket, msg: ipc.Loaded | ipc.Forked) -> bool:
    """Send one message; False when the daemon is gone (then this process just exits)."""
    try:
        sock.send(ipc.encode(msg))
    except OSError:
        return False
    return True


def _importable(name: str, locality: Locality) -> bool:
    """Found outside the project (finding a top-level module imports nothing)."""
    top = name.partition(".")[0]
    if top in sys.modules:
        return True
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    places = [spec.origin] if spec.origin else list(spec.submodule_search_locations or ())
    return not any(
        p and os.path.isabs(p) and locality.is_local(os.path.abspath(p)) for p in places
    )


def _signatures() -> dict[str, tuple[int, int, int]]:
    """The file of every imported module, as stat sees it: a change means an upgrade."""
    out: dict[str, tuple[int, int, int]] = {}
    for module in list(sys.modules.values()):
        try:
            path = module.__file__
        except Exception:  # lazy or odd objects in sys.modules
            continue
        if not isinstance(path, str) or path in out:
            continue
        try:
            st = os.stat(path)
        except OSError:
            continue
        out[path] = (st.st_mtime_ns, st.st_size, st.st_ino)
    return out


def _set_name(name: bytes) -> None:
    """The process name `top` and `/proc/PID/comm` show (PR_SET_NAME, Linux)."""
    try:
        import ctypes

        _prctl()(15, ctypes.c_char_p(name[:15]), 0, 0, 0)
    except Exception:
        pass


@functools.cache
def _prctl() -> Any:
    """libc's prctl, looked up once here: every forked worker calls it."""
    import ctypes

    return ctypes.CDLL(None).prctl


def _name() -> bytes:
    try:
        with open("/proc/self/comm", "rb") as f:
            return f.read().strip()
    except OSError:
        return b"python"


def _reseed() -> None:
    """`random` reseeds itself at fork; numpy's legacy global generator does not."""
    np_random = sys.modules.get("numpy.random")
    if np_random is not None:
        try:
            np_random.seed()
        except Exception:
            pass


def main() -> None:
    """Entry point: read the plan, import, report, then fork on request."""
    sock = socket.socket(fileno=int(sys.argv[1]))
    worker_main.die_with_daemon()
    plan = ipc.preload_decoder.decode(sys.stdin.buffer.read())
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    if sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]
    preloader = _Preloader(sock, plan)
    _set_name(NAME)
    preloader.preload()
    if _send(sock, preloader.loaded) and not preloader.loaded.unsafe:
        preloader.serve()
    worker_main.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
