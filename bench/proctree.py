"""Memory of a process tree as PSS and RSS, from `/proc/PID/smaps_rollup` (Linux only).

RSS counts every page a process maps, so pages shared between processes (a forked worker's
copy of pandas, the interpreter's own text) are counted once per process and a tree's RSS sum
overstates what it costs the machine. PSS divides each shared page among the processes that
map it: the tree's PSS sum is what the tree really holds. Issue 14 asks for both side by side.

    .venv/bin/python -m bench.proctree PID      # the tree under PID, one line per process
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
from dataclasses import dataclass, field


@dataclass
class ProcessMemory:
    pid: int
    label: str
    pss_kb: int
    rss_kb: int


@dataclass
class TreeMemory:
    """One sample of a tree: every process found under the root, root first."""

    processes: list[ProcessMemory] = field(default_factory=list)

    @property
    def pss_kb(self) -> int:
        return sum(p.pss_kb for p in self.processes)

    @property
    def rss_kb(self) -> int:
        return sum(p.rss_kb for p in self.processes)

    def groups(self) -> dict[str, list[ProcessMemory]]:
        out: dict[str, list[ProcessMemory]] = {}
        for p in self.processes:
            out.setdefault(p.label, []).append(p)
        return out

    def summary(self) -> str:
        """`tree PSS 528.1 MB / RSS 826.0 MB in 17 processes (daemon 1: ...; worker 16: ...)`."""
        parts = []
        for label, procs in self.groups().items():
            pss = sum(p.pss_kb for p in procs) / 1024
            rss = sum(p.rss_kb for p in procs) / 1024
            each = ""
            if len(procs) > 1:
                each = (f", each median {statistics.median(p.pss_kb for p in procs) / 1024:.1f}"
                        f" / {statistics.median(p.rss_kb for p in procs) / 1024:.1f}")
            parts.append(f"{label} ×{len(procs)}: {pss:.1f} / {rss:.1f} MB{each}")
        return (f"tree PSS {self.pss_kb / 1024:.1f} MB / RSS {self.rss_kb / 1024:.1f} MB in "
                f"{len(self.processes)} processes ({'; '.join(parts)})")


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it, found through each process's parent in /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                # The command name (field 2) may hold spaces and parentheses: split after it.
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop(0)
        out.append(p)
        todo.extend(sorted(children.get(p, [])))
    return out


def smaps_kb(pid: int) -> tuple[int, int] | None:
    """(Pss, Rss) of one process in KiB, or None if it is gone (or not ours to read)."""
    pss = rss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1])
    except OSError:
        return None
    return pss, rss


def label(pid: int, root: int) -> str:
    """`daemon` for the root; `worker` (spawned), `worker (forked)` or `preloader`; else the
    `-m` module a process runs, or its program name. A preloader still importing vmd's modules
    has not renamed itself yet and reads as `worker (forked)`."""
    if pid == root:
        return "daemon"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return "?"
    if "-m" in argv[:-1]:
        module = argv[argv.index("-m") + 1]
        if module == "vmd.workers.preloader":
            # A forked worker keeps the preloader's command line; its process name is the
            # preloader's own (`vmd-preloader`) only in the preloader itself.
            try:
                with open(f"/proc/{pid}/comm", "rb") as f:
                    comm = f.read().strip()
            except OSError:
                return "?"
            return "preloader" if comm == b"vmd-preloader" else "worker (forked)"
        return "worker" if module == "vmd.workers.main" else module
    return os.path.basename(argv[0]) if argv else "?"


def tree_memory(root: int) -> TreeMemory:
    """PSS and RSS of `root` and all its descendants, each process labelled."""
    tree = TreeMemory()
    for pid in descendants(root):
        kb = smaps_kb(pid)
        if kb is not None:
            tree.processes.append(ProcessMemory(pid, label(pid, root), *kb))
    return tree


class PeakSampler:
    """Samples a tree every `interval` s in a thread; keeps the sample with the largest PSS.

    Reading smaps_rollup walks each process's page tables (about a millisecond for a process
    with pandas imported), so the interval is kept well above that.
    """

    def __init__(self, root: int, interval: float = 0.1) -> None:
        self.peak = TreeMemory()
        self.samples = 0
        self._root = root
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            sample = tree_memory(self._root)
            self.samples += 1
            if sample.pss_kb > self.peak.pss_kb:
                self.peak = sample


def main() -> None:
    root = int(sys.argv[1])
    tree = tree_memory(root)
    for p in tree.processes:
        print(f"{p.pid:8d}  {p.label:20s}  PSS {p.pss_kb / 1024:7.1f} MB  "
              f"RSS {p.rss_kb / 1024:7.1f} MB")
    print(tree.summary())


if __name__ == "__main__":
    main()
