"""Cached `vmd/load` throughput (64 in flight) and sequential latency; spawn → initialize and
spawn → first module served (a cold start: what every `vite build` begins with).

    .venv/bin/python -m bench.bench_load [--requests 100000] [--inflight 64] [--python PY]

`--python` picks the interpreter whose installed vmd is started (start-up depends on how vmd is
installed: an editable install adds an import hook that costs ~50 ms here).

`--variants on,off`: every figure with the preloader on (`VMD_PRELOAD=1` in the daemon's
environment) and off (`VMD_PRELOAD=0`), alternating in one run: one daemon per variant for the
cached loads (throughput rounds alternate, the sequential requests alternate in blocks of 100),
and the cold starts alternate start by start; both are printed, with the ratio on / off.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.rpc import Peer, median, percentile

LOADER = '''
import vmd
watch = ["data/*.json"]
def load(ctx):
    return vmd.json_module({"files": ctx.watched_files, "rows": list(range(50))})
'''


def make_project(root: Path) -> str:
    (root / "data").mkdir(parents=True)
    (root / "data" / "a.json").write_text("{}")
    (root / "mod.vmd.py").write_text(LOADER)
    return str(root / "mod.vmd.py")


def throughput(peer: Peer, id: str, total: int, inflight: int) -> float:
    req = peer.encode_request("vmd/load", {"id": id})
    # Same bytes each time: ids may repeat for this measurement (answers are counted, not matched).
    peer.send_many([req] * inflight)
    sent, got = inflight, 0
    t = time.perf_counter()
    while got < total:
        answers = peer.read_responses()
        got += len(answers)
        more = min(len(answers), total - sent)
        if more > 0:
            peer.send_many([req] * more)
            sent += more
    return total / (time.perf_counter() - t)


def latency(peer: Peer, id: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        peer.request("vmd/load", {"id": id})
        out.append((time.perf_counter() - t) * 1000)
    return out


PRELOAD = {"on": "1", "off": "0"}


def env_for(variant: str | None) -> dict[str, str] | None:
    return None if variant is None else {**os.environ, "VMD_PRELOAD": PRELOAD[variant]}


def startup(n: int, root: Path, id: str, python: str,
            variant: str | None = None) -> tuple[list[float], list[float]]:
    ready, served = [], []
    for _ in range(n):
        t = time.perf_counter()
        peer = Peer(root, python=python, env=env_for(variant))
        peer.initialize()
        ready.append((time.perf_counter() - t) * 1000)
        peer.request("vmd/load", {"id": id})
        served.append((time.perf_counter() - t) * 1000)
        peer.close()
    return ready, served


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--inflight", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--starts", type=int, default=15)
    ap.add_argument("--python", default=sys.executable, help="interpreter for start-up runs")
    ap.add_argument("--variants", default="", help="on,off: preloading on and off, alternating")
    args = ap.parse_args()
    variants: list[str | None] = [v for v in args.variants.split(",") if v] or [None]

    def turns(i: int) -> list[str | None]:
        k = i % len(variants)
        return variants[k:] + variants[:k]

    rates: dict[str | None, list[float]] = {v: [] for v in variants}
    lat: dict[str | None, list[float]] = {v: [] for v in variants}
    boot: dict[str | None, list[float]] = {v: [] for v in variants}
    first: dict[str | None, list[float]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        roots = {v: Path(tmp) / (v or "vmd") for v in variants}
        ids = {v: make_project(root) for v, root in roots.items()}
        peers = {}
        for v in variants:
            peers[v] = Peer(roots[v], env=env_for(v))
            peers[v].initialize()
            peers[v].request("vmd/load", {"id": ids[v]})
        for r in range(args.rounds):
            for v in turns(r):
                rates[v].append(throughput(peers[v], ids[v], args.requests, args.inflight))
        for block in range(20):
            for v in turns(block):
                lat[v] += latency(peers[v], ids[v], 100)
        for peer in peers.values():
            peer.close()
        for i in range(args.starts):
            for v in turns(i):
                b, f = startup(1, roots[v], ids[v], args.python, v)
                boot[v] += b
                first[v] += f
    for v in variants:
        label = "" if v is None else f" [preload {v}]"
        print(f"cached vmd/load, {args.inflight} in flight{label}: median "
              f"{median(rates[v]):,.0f} req/s (rounds: {', '.join(f'{r:,.0f}' for r in rates[v])})")
        print(f"cached vmd/load, sequential{label}: p50 {median(lat[v]):.3f} ms, "
              f"p99 {percentile(lat[v], 0.99):.3f} ms, mean {statistics.mean(lat[v]):.3f} ms")
        print(f"spawn -> initialize answered{label}: p50 {median(boot[v]):.1f} ms, "
              f"max {max(boot[v]):.1f} ms over {len(boot[v])} starts")
        print(f"spawn -> first module served{label}: p50 {median(first[v]):.1f} ms, "
              f"max {max(first[v]):.1f} ms")
    if "on" in variants and "off" in variants:
        def ratio(d: dict[str | None, list[float]]) -> float:
            return median(d["on"]) / median(d["off"])
        print(f"preload on / off: throughput {ratio(rates):.3f}, sequential p50 {ratio(lat):.3f}, "
              f"initialize p50 {ratio(boot):.3f}, first module p50 {ratio(first):.3f}")


if __name__ == "__main__":
    main()
