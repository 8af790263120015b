"""Memory of the daemon and all its workers over many loader edits.

Each edit rewrites a loader that builds a 50,000-row dataset, one edit every `--interval` s;
after each edit the fresh module is loaded. RSS is summed over the daemon and every process
below it (from /proc), sampled after a warm-up and at the end.

    .venv/bin/python -m bench.bench_memory [--edits 2000] [--interval 0.3]
        [--loader light|pandas] [--python PY] [--preload on|off]

`--loader pandas` edits a loader that imports pandas and builds a 50,000-row DataFrame at
import instead; `--python` is then an interpreter with vmd (a regular install) and pandas (the
daemon runs in the temporary project, so it is that interpreter's vmd that is measured).
`--preload on|off` sets `VMD_PRELOAD=1|0` in the daemon's environment (else it is left as it
is). The tree's PSS (`bench/proctree.py`) is printed next to its RSS: forked workers share the
preloader's pages, which an RSS sum counts once per process.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.proctree import descendants, tree_memory
from bench.rpc import Peer

LOADER = '''
import vmd
ROWS = [{{"id": i, "name": f"user {{i}}", "score": i * 0.5, "tags": ["a", "b"]}}
        for i in range(50_000)]
EDIT = {edit}
def load(ctx):
    return vmd.json_module({{"edit": EDIT, "rows": len(ROWS)}})
'''

PANDAS_LOADER = '''
import pandas as pd, vmd
DF = pd.DataFrame({{"id": range(50_000), "name": [f"user {{i}}" for i in range(50_000)],
                   "score": [i * 0.5 for i in range(50_000)]}})
EDIT = {edit}
def load(ctx):
    return vmd.json_module({{"edit": EDIT, "rows": len(DF), "mean": float(DF["score"].mean())}})
'''
PRELOAD = {"on": "1", "off": "0"}


def tree_pss_kb(pid: int) -> int:
    return tree_memory(pid).pss_kb


def tree_rss_kb(pid: int) -> tuple[int, int]:
    """(total RSS in KiB, process count) of `pid` and all its descendants."""
    total, count = 0, 0
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        count += 1
        except OSError:
            continue
    return total, count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--edits", type=int, default=2000)
    ap.add_argument("--interval", type=float, default=0.3)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--loader", default="light", choices=["light", "pandas"])
    ap.add_argument("--python", default=sys.executable, help="the daemon's interpreter")
    ap.add_argument("--preload", choices=sorted(PRELOAD), help="VMD_PRELOAD in the daemon's env")
    args = ap.parse_args()
    source = LOADER if args.loader == "light" else PANDAS_LOADER
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if args.preload:
        env["VMD_PRELOAD"] = PRELOAD[args.preload]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        loader = root / "big.vmd.py"
        loader.write_text(source.format(edit=0))
        id = str(loader)
        peer = Peer(root, python=args.python, env=env)
        peer.initialize()
        peer.request("vmd/load", {"id": id})
        baseline = None
        samples = []
        start = time.monotonic()
        for edit in range(1, args.edits + 1):
            slot = start + edit * args.interval
            loader.write_text(source.format(edit=edit))
            while True:
                result = peer.request("vmd/load", {"id": id})
                if f'\\"edit\\":{edit},' in result["code"]:
                    break
                time.sleep(0.005)
            if edit == args.warmup:
                baseline = tree_rss_kb(peer.proc.pid)
                baseline_pss = tree_pss_kb(peer.proc.pid)
            if edit % 100 == 0:
                samples.append((edit, tree_rss_kb(peer.proc.pid), tree_pss_kb(peer.proc.pid)))
            time.sleep(max(0.0, slot - time.monotonic()))
        final = tree_rss_kb(peer.proc.pid)
        final_pss = tree_pss_kb(peer.proc.pid)
        final_tree = tree_memory(peer.proc.pid).summary()
        peer.close()
    assert baseline is not None
    for edit, (kb, n), pss in samples:
        print(f"  after edit {edit:5d}: RSS {kb / 1024:7.1f} MB, PSS {pss / 1024:7.1f} MB in "
              f"{n} processes")
    print(f"daemon + workers after {args.warmup} edits: {baseline[0] / 1024:.1f} MB "
          f"({baseline[1]} processes); after {args.edits}: {final[0] / 1024:.1f} MB "
          f"({final[1]} processes); growth {(final[0] - baseline[0]) / 1024:+.1f} MB")
    print(f"PSS after {args.warmup} edits: {baseline_pss / 1024:.1f} MB; after {args.edits}: "
          f"{final_pss / 1024:.1f} MB; growth {(final_pss - baseline_pss) / 1024:+.1f} MB")
    print(f"at the end: {final_tree}")


if __name__ == "__main__":
    main()
