"""Memory of the daemon and all its workers over many loader edits.

Each edit rewrites a loader that builds a 50,000-row dataset, one edit every `--interval` s;
after each edit the fresh module is loaded. RSS is summed over the daemon and every process
below it (from /proc), sampled after a warm-up and at the end.

    .venv/bin/python -m bench.bench_memory [--edits 2000] [--interval 0.3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.proctree import descendants
from bench.rpc import Peer

LOADER = '''
import vmd
ROWS = [{{"id": i, "name": f"user {{i}}", "score": i * 0.5, "tags": ["a", "b"]}}
        for i in range(50_000)]
EDIT = {edit}
def load(ctx):
    return vmd.json_module({{"edit": EDIT, "rows": len(ROWS)}})
'''


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
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        loader = root / "big.vmd.py"
        loader.write_text(LOADER.format(edit=0))
        id = str(loader)
        peer = Peer(root)
        peer.initialize()
        peer.request("vmd/load", {"id": id})
        baseline = None
        samples = []
        start = time.monotonic()
        for edit in range(1, args.edits + 1):
            slot = start + edit * args.interval
            loader.write_text(LOADER.format(edit=edit))
            while True:
                result = peer.request("vmd/load", {"id": id})
                if f'\\"edit\\":{edit},' in result["code"]:
                    break
                time.sleep(0.005)
            if edit == args.warmup:
                baseline = tree_rss_kb(peer.proc.pid)
            if edit % 100 == 0:
                samples.append((edit, tree_rss_kb(peer.proc.pid)))
            time.sleep(max(0.0, slot - time.monotonic()))
        final = tree_rss_kb(peer.proc.pid)
        peer.close()
    assert baseline is not None
    for edit, (kb, n) in samples:
        print(f"  after edit {edit:5d}: {kb / 1024:7.1f} MB in {n} processes")
    print(f"daemon + workers after {args.warmup} edits: {baseline[0] / 1024:.1f} MB "
          f"({baseline[1]} processes); after {args.edits}: {final[0] / 1024:.1f} MB "
          f"({final[1]} processes); growth {(final[0] - baseline[0]) / 1024:+.1f} MB")


if __name__ == "__main__":
    main()
