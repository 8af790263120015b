"""A build of many loader files: N loaders x Q queries in one `vmd/loadMany`, build mode, each
round against a fresh daemon (what `vite build` does), reporting the wall time and how far apart
the loaders' workers started.

    .venv/bin/python -m bench.bench_many [--loaders 100] [--queries 5] [--rounds 3]
                                         [--max-workers N] [--mode build|serve]
                                         [--variants on,off]

Each loader notes, as it is imported, its pid, the time (CLOCK_MONOTONIC, shared by every
process) and its process's start time (from /proc, in clock ticks): the spacing of those is
how far apart workers started and got a loader. A thread samples the processes under the
daemon to find how many workers were alive at once (preloaders not counted; forked workers are
a preloader's children); the daemon's own CPU time is read from /proc before it is shut down,
and the whole tree's (daemon, preloaders, every worker) once it has exited and been reaped.
Linux only (it reads /proc).

`--python`: the interpreter the daemon runs on (a regular install of the vmd to measure; two
of them run alternately compare two versions side by side).

`--variants on,off`: every round once with the preloader on (`VMD_PRELOAD=1` in the daemon's
environment) and once off (`VMD_PRELOAD=0`), the one going first swapping every round; the
medians of each and the ratio on / off.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.proctree import descendants, label
from bench.rpc import Peer, median

LOADER = """\
import os, time
_at = time.monotonic()
with open("/proc/self/stat") as _f:
    _ticks = int(_f.read().rsplit(")", 1)[1].split()[19])
with open({marks!r} + "/" + {name!r}, "w") as _f:
    _f.write(f"{{os.getpid()}} {{_at}} {{_ticks}}")
import vmd
def load(ctx):
    return vmd.json_module({{"loader": {name!r}, "q": ctx.query.get("q")}})
"""


def _sample_alive(pid: int, stop: threading.Event, peak: list[int]) -> None:
    while not stop.wait(0.005):
        peak[0] = max(peak[0], sum(1 for p in descendants(pid) if label(p, pid) != "preloader"))


def _cpu_ms(pid: int) -> float:
    """CPU time of `pid` itself."""
    with open(f"/proc/{pid}/stat") as f:
        fields = [int(x) for x in f.read().rsplit(")", 1)[1].split()[11:13]]
    return (fields[0] + fields[1]) * 1000 / os.sysconf("SC_CLK_TCK")


def _reaped_cpu_ms() -> float:
    """CPU time of every process this one has reaped, and those they reaped, so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1000


PRELOAD = {"on": "1", "off": "0"}


def one_round(root: Path, ids: list[str], options: dict[str, object],
              variant: str | None = None, python: str = sys.executable) -> dict[str, float]:
    marks = root / "marks"
    for mark in marks.iterdir():
        mark.unlink()
    env = None if variant is None else {**os.environ, "VMD_PRELOAD": PRELOAD[variant]}
    reaped = _reaped_cpu_ms()
    t0 = time.perf_counter()
    peer = Peer(root, options, env=env, python=python)
    peer.initialize()
    stop, peak = threading.Event(), [0]
    sampler = threading.Thread(target=_sample_alive, args=(peer.proc.pid, stop, peak))
    sampler.start()
    t1 = time.perf_counter()
    peer.send_many([peer.encode_request("vmd/loadMany", {"ids": ids})])
    (answer,) = peer.read_responses()
    t2 = time.perf_counter()
    stop.set()
    sampler.join()
    daemon_cpu = _cpu_ms(peer.proc.pid)
    peer.close()
    tree_cpu = _reaped_cpu_ms() - reaped
    results = answer["result"]["results"]
    failed = [r for r in results if "error" in r]
    if failed:
        raise SystemExit(f"{len(failed)} loads failed, e.g. {failed[0]['error']}")
    rows = [mark.read_text().split() for mark in marks.iterdir()]
    imports = sorted(float(at) for _, at, _ in rows)
    ticks = sorted(int(t) for _, _, t in rows)
    tick = 1000 / os.sysconf("SC_CLK_TCK")

    def gaps(values: list[float]) -> list[float]:
        return [b - a for a, b in zip(values, values[1:], strict=False)]

    return {
        "load": (t2 - t1) * 1000,
        "total": (t2 - t0) * 1000,
        "import_gap": median(gaps(imports)) * 1000,
        "start_gap": median(gaps([float(t) for t in ticks])) * tick,
        "span": (imports[-1] - imports[0]) * 1000,
        "peak": peak[0],
        "daemon_cpu": daemon_cpu,
        "tree_cpu": tree_cpu,
        "workers": len({pid for pid, _, _ in rows}),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--loaders", type=int, default=100)
    ap.add_argument("--queries", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-workers", type=int, default=None, help="default: the daemon's")
    ap.add_argument("--mode", default="build", choices=["build", "serve"],
                    help="serve: a dev server's cold start (watchers, a warm spare)")
    ap.add_argument("--variants", default="", help="on,off: preloading on and off, alternating")
    ap.add_argument("--python", default=sys.executable, help="the daemon's interpreter")
    args = ap.parse_args()
    variants: list[str | None] = [v for v in args.variants.split(",") if v] or [None]
    options: dict[str, object] = {"mode": args.mode}
    if args.max_workers is not None:
        options["maxWorkers"] = args.max_workers
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        marks = root / "marks"
        marks.mkdir()
        for i in range(args.loaders):
            name = f"l{i:03d}"
            (root / f"{name}.vmd.py").write_text(LOADER.format(marks=str(marks), name=name))
        ids = [f"{root}/l{i:03d}.vmd.py?q={q}" for i in range(args.loaders)
               for q in range(args.queries)]
        rounds: dict[str | None, list[dict[str, float]]] = {v: [] for v in variants}
        for rnd in range(args.rounds):
            k = rnd % len(variants)
            for v in variants[k:] + variants[:k]:
                r = one_round(root, ids, options, v, args.python)
                rounds[v].append(r)
                label = "" if v is None else f" [preload {v}]"
                print(f"round {rnd + 1}{label}: {len(ids)} loads of {args.loaders} loaders in one "
                      f"vmd/loadMany: {r['load']:.0f} ms (spawn -> answer {r['total']:.0f} ms); "
                      f"workers started a median {r['start_gap']:.1f} ms apart (/proc), loaders "
                      f"imported {r['import_gap']:.1f} ms apart over {r['span']:.0f} ms; "
                      f"peak {r['peak']} worker processes alive; CPU: daemon "
                      f"{r['daemon_cpu']:.0f} ms, whole tree {r['tree_cpu']:.0f} ms",
                      flush=True)
        meds = {}
        for v in variants:
            med = meds[v] = {k: median([r[k] for r in rounds[v]]) for k in rounds[v][0]}
            label = "" if v is None else f" [preload {v}]"
            print(f"median of {args.rounds}{label}: loadMany {med['load']:.0f} ms, spawn -> answer "
                  f"{med['total']:.0f} ms, start gap {med['start_gap']:.1f} ms, import gap "
                  f"{med['import_gap']:.1f} ms, peak alive {med['peak']:.0f}, CPU of the tree "
                  f"{med['tree_cpu']:.0f} ms")
        if "on" in meds and "off" in meds:
            print(f"preload on / off: loadMany {meds['on']['load'] / meds['off']['load']:.3f}, "
                  f"spawn -> answer {meds['on']['total'] / meds['off']['total']:.3f}")

if __name__ == "__main__":
    main()
