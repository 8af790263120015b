"""Cached `vmd/load` throughput (64 in flight) and sequential latency; spawn → initialize and
spawn → first module served (a cold start: what every `vite build` begins with).

    .venv/bin/python -m bench.bench_load [--requests 100000] [--inflight 64] [--python PY]

`--python` picks the interpreter whose installed vmd is started (start-up depends on how vmd is
installed: an editable install adds an import hook that costs ~50 ms here).
"""

from __future__ import annotations

import argparse
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


def startup(n: int, root: Path, id: str, python: str) -> tuple[list[float], list[float]]:
    ready, served = [], []
    for _ in range(n):
        t = time.perf_counter()
        peer = Peer(root, python=python)
        peer.initialize()
        ready.append((time.perf_counter() - t) * 1000)
        peer.request("vmd/load", {"id": id})
        served.append((time.perf_counter() - t) * 1000)
        peer.close()
    return ready, served


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--inflight", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--python", default=sys.executable, help="interpreter for start-up runs")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        id = make_project(root)
        peer = Peer(root)
        peer.initialize()
        peer.request("vmd/load", {"id": id})
        rates = [throughput(peer, id, args.requests, args.inflight) for _ in range(args.rounds)]
        lat = latency(peer, id, 2000)
        peer.close()
        boot, first = startup(15, root, id, args.python)
    print(f"cached vmd/load, {args.inflight} in flight: median {median(rates):,.0f} req/s "
          f"(rounds: {', '.join(f'{r:,.0f}' for r in rates)})")
    print(f"cached vmd/load, sequential: p50 {median(lat):.3f} ms, "
          f"p99 {percentile(lat, 0.99):.3f} ms, mean {statistics.mean(lat):.3f} ms")
    print(f"spawn -> initialize answered: p50 {median(boot):.1f} ms, "
          f"max {max(boot):.1f} ms over {len(boot)} starts")
    print(f"spawn -> first module served: p50 {median(first):.1f} ms, max {max(first):.1f} ms")


if __name__ == "__main__":
    main()
