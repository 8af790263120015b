"""One light loader file asked for with many ids in one `vmd/loadMany` (a small `vite build`
over stdio), preloading on and off alternating: the wall time, which processes the daemon's
tree had (sampled every 5 ms, labelled as `bench/proctree.py` does) and the CPU of the children
the daemon reaped (preloaders it started and closed, workers that exited).

    .venv/bin/python -m bench.bench_idle_preload [--ids 500] [--rounds 3] [--mode build]

A process seen before the preloader renames itself is labelled `worker (forked)`: in a build
whose loader takes the early worker, every `worker (forked)` here is a preloader.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from bench.proctree import tree_memory
from bench.rpc import Peer, median

LOADER = """import json, vmd
watch = ["data.json"]
def load(ctx):
    data = json.loads((ctx.path.parent / "data.json").read_text())
    return vmd.json_module({"q": ctx.query.get("n"), **data})
"""


def one(root: Path, ids: list[str], mode: str, preload: str) -> tuple[float, Counter[str], int]:
    seen: dict[int, str] = {}
    stop = threading.Event()
    peer = Peer(root, {"mode": mode}, env={**os.environ, "VMD_PRELOAD": preload})

    def sample() -> None:
        while not stop.wait(0.005):
            for p in tree_memory(peer.proc.pid).processes:
                seen.setdefault(p.pid, p.label)

    thread = threading.Thread(target=sample)
    thread.start()
    peer.initialize()
    t = time.perf_counter()
    peer.request("vmd/loadMany", {"ids": ids})
    took = (time.perf_counter() - t) * 1000
    time.sleep(0.5)
    stop.set()
    thread.join()
    with open(f"/proc/{peer.proc.pid}/stat") as f:
        fields = [int(x) for x in f.read().rsplit(")", 1)[1].split()[11:15]]
    peer.close()
    reaped_ms = (fields[2] + fields[3]) * 1000 // os.sysconf("SC_CLK_TCK")
    return took, Counter(seen.values()), reaped_ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ids", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--mode", default="build", choices=["build", "serve"])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "data.json").write_text('{"a": 1}')
        (root / "l.vmd.py").write_text(LOADER)
        ids = [f"{root}/l.vmd.py?n={i}" for i in range(args.ids)]
        times: dict[str, list[float]] = {"on": [], "off": []}
        for r in range(args.rounds):
            for name in (["on", "off"] if r % 2 == 0 else ["off", "on"]):
                took, procs, reaped = one(root, ids, args.mode, "1" if name == "on" else "0")
                times[name].append(took)
                print(f"round {r + 1} [preload {name}]: loadMany {took:.0f} ms; processes seen "
                      f"{dict(procs)}; CPU of reaped children {reaped} ms", flush=True)
    on, off = median(times["on"]), median(times["off"])
    print(f"median: on {on:.0f} ms, off {off:.0f} ms; on / off {on / off:.3f}")


if __name__ == "__main__":
    main()
