"""Loaders that import heavy libraries (pandas, numpy, polars, duckdb): issue 14's baseline.

Every figure comes from a real `python -m vmd serve` in a temporary project, started with the
interpreter given by `--python` (a regular install of vmd with the libraries: see
BENCHMARKS.md), next to a comparison measured in the same run by a plain Python process of that
interpreter that has the library imported (`REFERENCE` below):

- edit of a loader → fresh module (write the loader with a new constant, wait for
  `vmd/changed`, `vmd/load`, check the new output), per library; comparison: fork from a process
  with the library imported, the child compiles the loader from source and runs it;
- edit of the pandas loader's CSV → fresh module; comparison: `load()` again in one process;
- 20 pandas loaders, cold, in one `vmd/loadMany` (a daemon in build mode, then one in serve
  mode: serve keeps a warm spare and so more processes): wall time, peak and final PSS / RSS
  of the daemon's tree; comparison: one process that imports pandas once and runs the 20;
- maxWorkers 4 and the 20 pandas loaders visited round-robin (each visit: its CSV changes and
  it is loaded again, so the run needs a worker, and its worker has been evicted);
- where a worker start's time goes: interpreter, `vmd.workers.main`, the library.

Each section stops at `--section-limit` seconds, whatever its counts say.

`--variants on,off` measures each section with the preloader on (`VMD_PRELOAD=1` in the
daemon's environment) and off (`VMD_PRELOAD=0`: every worker spawned), alternating in one run,
and prints both and the ratio on / off next to the comparison: edit, CSV edit and re-visit run
one daemon per variant side by side (each in its own project) and alternate edit by edit, the
variant going first swapping every time, with `--settle` s before each (so one daemon's
background work after an answer, a spare starting, does not fall into the other's figure); the
20-loader rows alternate fresh daemons round by round, `--many-rounds` rounds. Without
`--variants` the daemon's environment is left as it is (one daemon, as before).

    .venv/bin/python -m bench.bench_heavy --python /tmp/vmd-heavy/bin/python [--edits 20]
        [--loaders 20] [--rounds 2] [--only start,edit,csv,many,evict] [--json out.json]
        [--variants on,off] [--many-rounds 3] [--settle 0.05]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.proctree import PeakSampler, TreeMemory, tree_memory
from bench.rpc import Peer, median, percentile

ROWS = 2_000

# One loader per library: reads data.csv beside it, returns EDIT and what it read. `{edit}` is
# the constant an edit changes; the output's `"edit":N,` is how a fresh module is recognised.
LOADERS = {
    "pandas": '''
import pandas as pd, vmd
watch = ["{csv}"]
EDIT = {edit}
def load(ctx):
    df = pd.read_csv(ctx.path.parent / "{csv}")
    return vmd.json_module({{"edit": EDIT, "first": int(df["score"].iloc[0]), "rows": len(df),
                            "mean": float(df["score"].mean())}})
''',
    "numpy": '''
import numpy as np, vmd
watch = ["{csv}"]
EDIT = {edit}
def load(ctx):
    a = np.loadtxt(ctx.path.parent / "{csv}", delimiter=",", skiprows=1, usecols=(0, 2))
    return vmd.json_module({{"edit": EDIT, "first": int(a[0, 1]), "rows": len(a),
                            "mean": float(a[:, 1].mean())}})
''',
    "polars": '''
import polars as pl, vmd
watch = ["{csv}"]
EDIT = {edit}
def load(ctx):
    df = pl.read_csv(ctx.path.parent / "{csv}")
    return vmd.json_module({{"edit": EDIT, "first": int(df["score"][0]), "rows": df.height,
                            "mean": float(df["score"].mean())}})
''',
    "duckdb": '''
import duckdb, vmd
watch = ["{csv}"]
EDIT = {edit}
def load(ctx):
    path = str(ctx.path.parent / "{csv}")
    rows, mean = duckdb.sql(f"select count(*), avg(score) from read_csv('{{path}}')").fetchall()[0]
    return vmd.json_module({{"edit": EDIT, "rows": rows, "mean": mean}})
''',
}

# The comparison process, run with --python in the project folder. `serve LIB`: import LIB,
# then answer one JSON line per command on stdin: `["fork", path]` forks a child that compiles
# the loader from source and runs it (the physical limit of a preloaded fork), `["again",
# path]` runs load() again in this process (compiling the loader the first time only).
# `many LIB path...`: import LIB, run every loader once, print timings and its own memory.
REFERENCE = r'''
import json, os, sys, time
from pathlib import Path
from types import SimpleNamespace
t0 = time.perf_counter()
__import__(sys.argv[2])
import vmd
vmd.json_module  # the lazy export, imported now as a worker's first run would
t_import = time.perf_counter() - t0

def compile_loader(path):
    ns = {"__name__": "loader", "__file__": path}
    exec(compile(Path(path).read_text(), path, "exec"), ns)
    return ns

def run(ns, path):
    ctx = SimpleNamespace(id=path, path=Path(path), query={}, mode="serve", watched_files=[],
                          events=[], data=None, reload=lambda data=None: None)
    return ns["load"](ctx)

def memory():
    kb = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("Pss", "Rss"):
                kb[key] = int(rest.split()[0])
    return kb

if sys.argv[1] == "many":
    t = time.perf_counter()
    for path in sys.argv[3:]:
        run(compile_loader(path), path)
    print(json.dumps({"import_s": t_import, "run_s": time.perf_counter() - t, **memory()}))
    sys.exit(0)

loaded = {}
print(json.dumps({"ready": True, "import_s": t_import}), flush=True)
for line in sys.stdin:
    cmd, path = json.loads(line)
    t = time.perf_counter()
    if cmd == "fork":
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            code = run(compile_loader(path), path)
            os.write(w, code.encode())
            os._exit(0)
        os.close(w)
        chunks = []
        while chunk := os.read(r, 1 << 16):
            chunks.append(chunk)
        os.close(r)
        ms = (time.perf_counter() - t) * 1000
        os.waitpid(pid, 0)
        code = b"".join(chunks).decode()
    else:
        if path not in loaded:
            loaded[path] = compile_loader(path)
        code = run(loaded[path], path)
        ms = (time.perf_counter() - t) * 1000
    print(json.dumps({"ms": ms, "code": code}), flush=True)
'''


def write_csv(path: Path, first: int, rows: int = ROWS) -> None:
    lines = ["id,name,score", f"0,user 0,{first}"]
    lines += [f"{i},user {i},{i % 97}" for i in range(1, rows)]
    path.write_text("\n".join(lines) + "\n")


def write_loader(path: Path, lib: str, edit: int, csv: str = "data.csv") -> None:
    path.write_text(LOADERS[lib].format(edit=edit, csv=csv))


def marker(key: str, value: int) -> str:
    # json_module's output is JSON inside a JS string literal: quotes arrive escaped.
    return f'\\"{key}\\":{value},'


class Reference:
    """The comparison process in `serve` mode: a plain interpreter with `lib` imported."""

    def __init__(self, python: str, root: Path, lib: str) -> None:
        script = root / "_reference.py"
        script.write_text(REFERENCE)
        self.proc = subprocess.Popen(
            [python, str(script), "serve", lib], cwd=root, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        assert self.proc.stdin and self.proc.stdout
        self.import_s = json.loads(self.proc.stdout.readline())["import_s"]

    def ask(self, cmd: str, path: Path) -> tuple[float, str]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps([cmd, str(path)]) + "\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline())
        return answer["ms"], answer["code"]

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


PRELOAD = {"on": "1", "off": "0"}  # --variants: VMD_PRELOAD in the daemon's environment


def serve(python: str, root: Path, options: dict[str, Any] | None = None,
          variant: str | None = None) -> Peer:
    # The daemon runs in the project folder, so the checkout this bench runs from is not on its
    # sys.path: it is the --python interpreter's installed vmd that is measured.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if variant is not None:
        env["VMD_PRELOAD"] = PRELOAD[variant]
    peer = Peer(root, options, python=python, env=env)
    peer.initialize()
    return peer


def wait_changed(peer: Peer, id: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        msg = peer.wait_for("vmd/changed", max(0.1, deadline - time.monotonic()))
        if msg["params"]["id"] == id:
            return


def fresh_after(peer: Peer, id: str, write: Callable[[], None], want: str) -> float:
    """ms from `write()` to a `vmd/load` of `id` that carries `want`."""
    peer.notifications.clear()
    t = time.perf_counter()
    write()
    wait_changed(peer, id)
    code = peer.request("vmd/load", {"id": id})["code"]
    took = (time.perf_counter() - t) * 1000
    assert want in code, (want, code[:300])
    return took


def stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": median(values), "p90": percentile(values, 0.9),
            "min": min(values), "max": max(values)}


def show(name: str, values: list[float], ref: list[float] | None = None) -> None:
    s = stats(values)
    if not s["n"]:
        print(f"{name}: no samples")
        return
    line = f"{name}: p50 {s['p50']:.1f} ms, p90 {s['p90']:.1f} ms ({s['n']} edits)"
    if ref:
        line += f"; comparison p50 {median(ref):.1f} ms; ratio {s['p50'] / median(ref):.1f}×"
    print(line, flush=True)


def tag(variant: str | None) -> str:
    return "" if variant is None else f" [preload {variant}]"


def turns(variants: list[str | None], i: int) -> list[str | None]:
    """The variants in the order of turn `i`: the one going first changes every turn."""
    k = i % len(variants)
    return variants[k:] + variants[:k]


def show_ratio(name: str, figures: dict[str | None, list[float]]) -> float | None:
    """`name: on/off p50 ratio 0.05` when both variants were measured."""
    on, off = figures.get("on"), figures.get("off")
    if not on or not off:
        return None
    ratio = median(on) / median(off)
    print(f"{name}: preload on / off, p50: {ratio:.3f}", flush=True)
    return ratio


def bench_edit(python: str, lib: str, edits: int, limit: float, csv_too: bool,
               variants: list[str | None], settle: float) -> dict[str, Any]:
    """Loader edit → fresh (and, if `csv_too`, CSV edit → fresh), one daemon per variant, the
    variants alternating edit by edit, each edit followed by the comparison process's."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        projects: dict[str | None, tuple[Path, Path]] = {}
        for v in variants:
            root = Path(tmp) / (v or "vmd")
            root.mkdir()
            write_csv(root / "data.csv", first=0)
            write_loader(root / f"{lib}_data.vmd.py", lib, edit=0)
            projects[v] = (root / f"{lib}_data.vmd.py", root / "data.csv")
        ref_loader = projects[variants[0]][0]  # the comparison compiles this one's source
        ref = Reference(python, ref_loader.parent, lib)
        peers: dict[str | None, Peer] = {}
        try:
            for v in variants:
                peers[v] = serve(python, projects[v][0].parent, variant=v)
                t = time.perf_counter()
                peers[v].request("vmd/load", {"id": str(projects[v][0])})
                out[f"first_load_ms{'_' + v if v else ''}"] = (time.perf_counter() - t) * 1000
            deadline = time.monotonic() + limit
            vmd_ms: dict[str | None, list[float]] = {v: [] for v in variants}
            ref_ms: list[float] = []
            for i in range(1, edits + 1):
                if time.monotonic() > deadline:
                    break
                for v in turns(variants, i):
                    loader = projects[v][0]
                    time.sleep(settle)  # single saves, each after the previous one settled
                    vmd_ms[v].append(fresh_after(
                        peers[v], str(loader), lambda p=loader, i=i: write_loader(p, lib, i),
                        marker("edit", i)))
                ms, code = ref.ask("fork", ref_loader)
                assert marker("edit", i) in code, code[:300]
                ref_ms.append(ms)
            for v in variants:
                key = "edit" if v is None else f"edit_{v}"
                out[key] = stats(vmd_ms[v])
                show(f"{lib}: loader edit → fresh vmd/load{tag(v)}", vmd_ms[v], ref_ms)
            out["edit_ref"] = stats(ref_ms)
            out["edit_on_off"] = show_ratio(f"{lib}: loader edit → fresh", vmd_ms)
            if csv_too:
                vmd_ms, ref_ms = {v: [] for v in variants}, []
                ref.ask("again", ref_loader)  # the comparison's first run is not an edit
                deadline = time.monotonic() + limit
                for i in range(1, edits + 1):
                    if time.monotonic() > deadline:
                        break
                    value = 1000 + i
                    for v in turns(variants, i):
                        time.sleep(settle)
                        vmd_ms[v].append(fresh_after(
                            peers[v], str(projects[v][0]),
                            lambda c=projects[v][1], x=value: write_csv(c, x),
                            marker("first", value)))
                    ms, code = ref.ask("again", ref_loader)
                    assert marker("first", value) in code, code[:300]
                    ref_ms.append(ms)
                for v in variants:
                    key = "csv" if v is None else f"csv_{v}"
                    out[key] = stats(vmd_ms[v])
                    show(f"{lib}: CSV edit → fresh vmd/load{tag(v)}", vmd_ms[v], ref_ms)
                out["csv_ref"] = stats(ref_ms)
                out["csv_on_off"] = show_ratio(f"{lib}: CSV edit → fresh", vmd_ms)
        finally:
            for peer in peers.values():
                peer.close()
            ref.close()
    return out


def make_many(root: Path, n: int) -> list[str]:
    ids = []
    for k in range(n):
        write_csv(root / f"data{k:02d}.csv", first=k)
        loader = root / f"page{k:02d}.vmd.py"
        write_loader(loader, "pandas", edit=k, csv=f"data{k:02d}.csv")
        ids.append(str(loader))
    return ids


def mb(tree: TreeMemory) -> dict[str, Any]:
    return {"pss_mb": tree.pss_kb / 1024, "rss_mb": tree.rss_kb / 1024,
            "processes": len(tree.processes), "summary": tree.summary()}


def bench_many(python: str, n: int, mode: str, variant: str | None = None) -> dict[str, Any]:
    """n pandas loaders, cold, in one vmd/loadMany; then one process running the same n."""
    out: dict[str, Any] = {"mode": mode, "variant": variant}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ids = make_many(root, n)
        t0 = time.perf_counter()
        peer = serve(python, root, {"mode": mode}, variant)
        try:
            t = time.perf_counter()
            with PeakSampler(peer.proc.pid) as sampler:
                results = peer.request("vmd/loadMany", {"ids": ids})["results"]
            done = time.perf_counter()
            after = tree_memory(peer.proc.pid)
            bad = [r for r in results if "result" not in r or r["result"] is None]
            assert not bad, bad[:1]
            for k, r in enumerate(results):
                assert marker("edit", k) in r["result"]["code"]
            out["loadmany_s"] = done - t
            out["spawn_to_served_s"] = done - t0
            out["peak"], out["after"] = mb(sampler.peak), mb(after)
        finally:
            peer.close()
        script = root / "_reference.py"
        script.write_text(REFERENCE)
        t = time.perf_counter()
        line = subprocess.run([python, str(script), "many", "pandas", *ids], cwd=root,
                              capture_output=True, text=True, check=True, timeout=120).stdout
        ref = json.loads(line)
        out["ref_s"] = time.perf_counter() - t
        out["ref_import_s"], out["ref_run_s"] = ref["import_s"], ref["run_s"]
        out["ref_pss_mb"], out["ref_rss_mb"] = ref["Pss"] / 1024, ref["Rss"] / 1024
    print(f"{n} pandas loaders, one vmd/loadMany ({mode} mode{tag(variant)}): "
          f"{out['loadmany_s']:.2f} s "
          f"(spawn → all served {out['spawn_to_served_s']:.2f} s); one process importing "
          f"pandas once and running the {n}: {out['ref_s']:.2f} s (import {out['ref_import_s']:.2f}"
          f" s, loads {out['ref_run_s']:.2f} s), PSS {out['ref_pss_mb']:.1f} MB / RSS "
          f"{out['ref_rss_mb']:.1f} MB; ratio {out['loadmany_s'] / out['ref_s']:.1f}×", flush=True)
    print(f"  peak during: {out['peak']['summary']}")
    print(f"  right after: {out['after']['summary']}", flush=True)
    return out


def bench_many_rounds(python: str, n: int, modes: list[str], variants: list[str | None],
                      rounds: int) -> dict[str, Any]:
    """`bench_many` for every mode and variant, `rounds` times, the variants alternating (the
    one going first changes every round); medians per mode and variant, and on / off."""
    runs: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for r in range(rounds):
        for mode in modes:
            for v in turns(variants, r):
                runs.setdefault((mode, v), []).append(bench_many(python, n, mode, v))
    out: dict[str, Any] = {}
    for mode in modes:
        summary: dict[str, Any] = {}
        for v in variants:
            rs = runs[(mode, v)]
            summary[v or "vmd"] = s = {
                "runs": rs,
                "loadmany_s": median([x["loadmany_s"] for x in rs]),
                "ref_s": median([x["ref_s"] for x in rs]),
                "ratio_ref": median([x["loadmany_s"] / x["ref_s"] for x in rs]),
                "peak_pss_mb": median([x["peak"]["pss_mb"] for x in rs]),
                "peak_rss_mb": median([x["peak"]["rss_mb"] for x in rs]),
                "peak_processes": median([x["peak"]["processes"] for x in rs]),
                "after_pss_mb": median([x["after"]["pss_mb"] for x in rs]),
                "after_rss_mb": median([x["after"]["rss_mb"] for x in rs]),
                "ref_pss_mb": median([x["ref_pss_mb"] for x in rs]),
            }
            each = ", ".join(f"{x['loadmany_s']:.2f}" for x in rs)
            print(f"{mode} mode{tag(v)}, median of {len(rs)}: loadMany {s['loadmany_s']:.2f} s "
                  f"({each}); one process "
                  f"{s['ref_s']:.2f} s; ratio {s['ratio_ref']:.2f}× (median of the runs' "
                  f"ratios); peak PSS / RSS {s['peak_pss_mb']:.0f} / {s['peak_rss_mb']:.0f} MB "
                  f"in {s['peak_processes']:.0f} processes; right after "
                  f"{s['after_pss_mb']:.0f} / {s['after_rss_mb']:.0f} MB", flush=True)
        if "on" in summary and "off" in summary:
            on, off = summary["on"], summary["off"]
            summary["on_off"] = on["loadmany_s"] / off["loadmany_s"]
            summary["on_off_peak_pss"] = on["peak_pss_mb"] / off["peak_pss_mb"]
            print(f"{mode} mode: preload on / off: loadMany {summary['on_off']:.3f}, peak PSS "
                  f"{summary['on_off_peak_pss']:.3f}", flush=True)
        out[mode] = summary
    return out


def bench_evict(python: str, n: int, rounds: int, max_workers: int, limit: float,
                variants: list[str | None], settle: float) -> dict[str, Any]:
    """maxWorkers `max_workers`, n pandas loaders visited round-robin after a cold load each;
    one daemon per variant, the variants alternating visit by visit."""
    out: dict[str, Any] = {"max_workers": max_workers}
    with tempfile.TemporaryDirectory() as tmp:
        roots = {v: Path(tmp) / (v or "vmd") for v in variants}
        ids = {}
        peers: dict[str | None, Peer] = {}
        try:
            for v, root in roots.items():
                root.mkdir()
                ids[v] = make_many(root, n)
                peers[v] = serve(python, root, {"maxWorkers": max_workers}, v)
                for id in ids[v]:
                    peers[v].request("vmd/load", {"id": id})
            visits: dict[str | None, list[float]] = {v: [] for v in variants}
            deadline = time.monotonic() + limit
            turn = 0
            for r in range(1, rounds + 1):
                for k in range(n):
                    if time.monotonic() > deadline:
                        break
                    value = 1000 * r + k
                    turn += 1
                    for v in turns(variants, turn):
                        csv = roots[v] / f"data{k:02d}.csv"
                        time.sleep(settle)
                        visits[v].append(fresh_after(
                            peers[v], ids[v][k], lambda c=csv, x=value: write_csv(c, x),
                            marker("first", value)))
            for v in variants:
                key = "" if v is None else f"_{v}"
                out[f"revisit{key}"] = stats(visits[v])
                out[f"after{key}"] = mb(tree_memory(peers[v].proc.pid))
                # For contrast: a visit that needs no run is served from memory.
                t = time.perf_counter()
                peers[v].request("vmd/load", {"id": ids[v][0]})
                out[f"cached_ms{key}"] = (time.perf_counter() - t) * 1000
        finally:
            for peer in peers.values():
                peer.close()
    for v in variants:
        key = "" if v is None else f"_{v}"
        s = out[f"revisit{key}"]
        print(f"maxWorkers {max_workers}, {n} pandas loaders round-robin{tag(v)}, re-visit (CSV "
              f"changed, worker evicted) → fresh: p50 {s['p50']:.1f} ms, p90 {s['p90']:.1f} ms "
              f"({s['n']} visits); cached re-visit {out[f'cached_ms{key}']:.2f} ms", flush=True)
        print(f"  after: {out[f'after{key}']['summary']}", flush=True)
    out["on_off"] = show_ratio("re-visit after eviction", visits)
    return out


def bench_start(python: str, libs: list[str], repeat: int = 7) -> dict[str, float]:
    """Median wall time of a fresh interpreter doing each part of a worker's start."""
    snippets = {"python -c pass": "pass", "import vmd.workers.main": "import vmd.workers.main"}
    for lib in libs:
        snippets[f"import {lib}"] = f"import {lib}"
        snippets[f"import vmd.workers.main, {lib}"] = f"import vmd.workers.main, {lib}"
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        times: dict[str, list[float]] = {name: [] for name in snippets}
        for _ in range(repeat):  # interleaved, so a busy moment hits every snippet alike
            for name, code in snippets.items():
                t = time.perf_counter()
                subprocess.run([python, "-c", code], cwd=tmp, env=env, check=True, timeout=60)
                times[name].append((time.perf_counter() - t) * 1000)
        for name, values in times.items():
            out[name] = statistics.median(values)
            print(f"  {name}: {out[name]:.0f} ms (median of {repeat})", flush=True)
    return out


def available(python: str, lib: str) -> bool:
    return subprocess.run([python, "-c", f"import {lib}"], capture_output=True).returncode == 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter with vmd (regular install) and the libraries")
    ap.add_argument("--edits", type=int, default=20)
    ap.add_argument("--loaders", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2, help="round-robin rounds after eviction")
    ap.add_argument("--max-workers", type=int, default=4)
    ap.add_argument("--many-modes", default="build,serve",
                    help="modes of the 20-loader daemon, each measured in turn")
    ap.add_argument("--section-limit", type=float, default=180.0, help="seconds per section")
    ap.add_argument("--only", default="start,edit,csv,many,evict")
    ap.add_argument("--json", type=Path, help="write every figure here")
    ap.add_argument("--variants", default="",
                    help="on,off: preloading on and off (VMD_PRELOAD), alternating in one run")
    ap.add_argument("--many-rounds", type=int, default=1,
                    help="20-loader runs per mode and variant, alternating")
    ap.add_argument("--settle", type=float, default=0.05,
                    help="seconds before each edit or visit")
    args = ap.parse_args()
    variants: list[str | None] = [v for v in args.variants.split(",") if v] or [None]
    for v in variants:
        if v not in PRELOAD:
            sys.exit(f"--variants: {v!r} is not one of {', '.join(PRELOAD)}")
    only = set(args.only.split(","))
    libs = [lib for lib in LOADERS if available(args.python, lib)]
    missing = [lib for lib in LOADERS if lib not in libs]
    if "pandas" not in libs:
        sys.exit(f"{args.python} cannot import pandas: see the command in this file's docstring")
    if missing:
        print(f"not installed in {args.python}, skipped: {', '.join(missing)}")
    results: dict[str, Any] = {"python": args.python, "libs": libs, "variants": variants}
    if "start" in only:
        print("where a worker start's time goes (fresh interpreter each):")
        results["start"] = bench_start(args.python, libs)
    if "edit" in only or "csv" in only:
        for lib in libs:
            results[f"edit_{lib}"] = bench_edit(args.python, lib, args.edits, args.section_limit,
                                                csv_too=lib == "pandas" and "csv" in only,
                                                variants=variants, settle=args.settle)
    if "many" in only:
        modes = args.many_modes.split(",")
        if variants == [None] and args.many_rounds == 1:
            for mode in modes:
                results[f"many_{mode}"] = bench_many(args.python, args.loaders, mode)
        else:
            results["many"] = bench_many_rounds(args.python, args.loaders, modes, variants,
                                                args.many_rounds)
    if "evict" in only:
        results["evict"] = bench_evict(args.python, args.loaders, args.rounds, args.max_workers,
                                       args.section_limit, variants, args.settle)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
