"""The daemon's memory as a page asks for ever more distinct query ids (`?n=1` … `?n=N`).

One light loader file; the ids are loaded in `vmd/loadMany` batches of 500. The daemon's own
RSS (workers not counted: one per loader file whatever the ids) is sampled every 2,000 ids,
for each `maxQueryIds` in `--bounds` (0: no bound), daemons side by side in one run.

    .venv/bin/python -m bench.bench_query_ids [--ids 20000] [--bounds 0,5000]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.rpc import Peer

LOADER = '''
import vmd
def load(ctx):
    return vmd.json_module({"n": int(ctx.query["n"])})
'''
BATCH = 500
EVERY = 2000


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ids", type=int, default=20_000)
    ap.add_argument("--bounds", default="0,5000")
    args = ap.parse_args()
    bounds = [int(b) for b in args.bounds.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        loader = root / "page.vmd.py"
        loader.write_text(LOADER)
        peers = {b: Peer(root, options={"maxQueryIds": b}) for b in bounds}
        samples: dict[int, list[tuple[int, int]]] = {b: [] for b in bounds}
        for peer in peers.values():
            peer.initialize()
            peer.request("vmd/load", {"id": f"{loader}?n=0"})
        for start in range(0, args.ids, BATCH):
            ids = [f"{loader}?n={n}" for n in range(start, start + BATCH)]
            for b, peer in peers.items():  # side by side: each batch to every daemon in turn
                peer.request("vmd/loadMany", {"ids": ids})
                peer.notifications.clear()
                if (start + BATCH) % EVERY == 0:
                    samples[b].append((start + BATCH, rss_kb(peer.proc.pid)))
        for peer in peers.values():
            peer.close()
    for b in bounds:
        first_n, first_kb = samples[b][0]
        last_n, last_kb = samples[b][-1]
        per_id = (last_kb - first_kb) * 1024 / (last_n - first_n)
        trail = ", ".join(f"{n}: {kb / 1024:.1f}" for n, kb in samples[b])
        print(f"maxQueryIds={b}: daemon RSS MB by ids loaded: {trail}")
        print(f"  from {first_n} to {last_n} ids: {(last_kb - first_kb) / 1024:+.1f} MB, "
              f"{per_id:.0f} bytes per id")


if __name__ == "__main__":
    main()
