"""The preloader (`python -m vmd.workers.preloader FD`): a process that has imported the worker's
code and the modules loaders were seen to import, and forks a fresh worker per request.

A spawned worker pays for its interpreter, msgspec and vmd's modules (~70 ms of CPU here) and
then for its loader's libraries (pandas: ~0.5 s), again after every code change. A worker forked
from here has them already: only what is project-local is imported from source in the worker,
so every freshness guarantee of a spawned worker holds (project code is never preloaded).

The daemon sends the module list on stdin, then `Fork` requests on the socket FD with the
worker's three pipe ends attached. This process is the worker's parent: it waits for each
worker and reports its exit code (`Exited`), and its workers' `PR_SET_PDEATHSIG` points here,
as this process's points at the daemon, so no worker outlives the daemon. (Forking twice, to
make the daemon the parent, cost ~2 ms of CPU per worker here.) Forking is refused when
a Python thread is alive here or a preloaded module's file changed on disk (`pip install -U`):
the daemon then spawns, and builds a new preloader; this one forks no more and exits once its
workers have, as it does when the daemon closes the socket.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import importlib.util
import os
import select
import signal
import socket
import sys
import threading
import time
from typing import Any

import vmd.jsmodule  # noqa: F401 - what nearly every loader calls: its workers need not import it
from vmd.workers import capture, ipc, modules
from vmd.workers import main as worker_main
from vmd.workers.capture import Locality
from vmd.workers.lifeline import die_with_daemon, prctl

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
        self.pid = os.getpid()
        self.children: set[int] = set()  # forked and not yet waited for
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
        capture.warm(self.plan.roots)  # what every worker's Capture needs: found once, here
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
        """Answer Fork requests until the daemon closes the socket or a fork is refused, and
        report each worker's exit; then wait for the workers still running, and return."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        self._wake = (wake_r, wake_w)
        signal.signal(signal.SIGCHLD, _on_child)  # a handler, so the wakeup fd hears of it
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        refused = ""
        while True:
            readable, _, _ = select.select([self.sock.fileno(), wake_r], [], [])
            if wake_r in readable:
                _drain(wake_r)
                if not self._report_exits():
                    break
            if self.sock.fileno() in readable:
                try:
                    data, fds, _, _ = socket.recv_fds(self.sock, 1 << 16, 3)
                except OSError:
                    break
                if not data:
                    break
                request = ipc.to_preloader_decoder.decode(data)
                refused = refused or self._refusal()
                pid = 0
                if not refused and len(fds) == 3 and not request.check:
                    worker_main.flush()
                    pid = self._fork(fds)
                for fd in fds:
                    os.close(fd)
                if not _send(self.sock, ipc.Forked(seq=request.seq, pid=pid, refused=refused)):
                    break
            if refused and not self.children:
                return
        while self.children:  # the daemon is gone or done with us: outlive no worker's wait
            try:
                pid, _ = os.waitpid(-1, 0)
            except ChildProcessError:
                return
            self.children.discard(pid)

    def _report_exits(self) -> bool:
        """Wait for every worker that exited and report it; False when the daemon is gone."""
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                break
            if pid == 0:
                break
            if pid in self.children:
                self.children.discard(pid)
                code = os.waitstatus_to_exitcode(status)
                if not _send(self.sock, ipc.Exited(pid=pid, code=code)):
                    return False
        return True

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
        pid = os.fork()
        if pid == 0:
            self._become_worker(fds)
        self.children.add(pid)
        return pid

    def _become_worker(self, fds: list[int]) -> None:
        """In the forked worker: the state a spawned worker starts with, then its main()."""
        code = 70
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for fd in self._wake:
                os.close(fd)
            self.sock.close()
            os.setsid()  # its own process group, as spawned workers have (timeouts kill it)
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
            for fd in fds:
                if fd > 2:
                    os.close(fd)
            # No _restore(): serving changes nothing of it, and preload() put it back.
            _set_name(self.name)
            sys.argv = [worker_main.__file__]
            atexit._clear()
            _reseed()
            modules.preloaded = frozenset(self.extras)
            worker_main.main(parent=self.pid)
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


def _send(sock: socket.socket, msg: ipc.FromPreloader) -> bool:
    """Send one message; False when the daemon is gone (then this process just exits)."""
    try:
        sock.send(ipc.encode(msg))
    except OSError:
        return False
    return True


def _on_child(signum: int, frame: Any) -> None:
    """SIGCHLD: nothing here; the wakeup fd wakes the serve loop."""


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


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

        prctl()(15, ctypes.c_char_p(name[:15]), 0, 0, 0)
    except Exception:
        pass


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
    die_with_daemon()
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
