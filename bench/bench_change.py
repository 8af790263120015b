"""Watched-file write -> `vmd/changed`, and write -> fresh `vmd/load`, over many edits.

    .venv/bin/python -m bench.bench_change [--edits 200]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench.rpc import Peer, median, percentile

LOADER = '''
import json, vmd
watch = ["data/*.json"]
def load(ctx):
    value = json.loads((ctx.path.parent / "data" / "value.json").read_text())
    return vmd.json_module(value)
'''


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--edits", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "data").mkdir()
        value = root / "data" / "value.json"
        value.write_text("0")
        (root / "mod.vmd.py").write_text(LOADER)
        id = str(root / "mod.vmd.py")
        peer = Peer(root)
        peer.initialize()
        peer.request("vmd/load", {"id": id})
        to_changed: list[float] = []
        to_fresh: list[float] = []
        for i in range(1, args.edits + 1):
            time.sleep(0.02)  # let the previous edit settle: we measure single saves
            t = time.perf_counter()
            value.write_text(json.dumps(i))
            peer.wait_for("vmd/changed")
            to_changed.append((time.perf_counter() - t) * 1000)
            result = peer.request("vmd/load", {"id": id})
            to_fresh.append((time.perf_counter() - t) * 1000)
            assert json.dumps(i) in result["code"], (i, result["code"])
        # A load racing the watcher: written and asked for at once, never stale.
        racing: list[float] = []
        for i in range(args.edits + 1, args.edits + 51):
            time.sleep(0.02)
            t = time.perf_counter()
            value.write_text(json.dumps(i))
            result = peer.request("vmd/load", {"id": id})
            racing.append((time.perf_counter() - t) * 1000)
            assert json.dumps(i) in result["code"]
            peer.notifications.clear()
        peer.close()
    print(f"write -> vmd/changed: p50 {median(to_changed):.2f} ms, p90 "
          f"{percentile(to_changed, 0.9):.2f} ms ({len(to_changed)} edits)")
    print(f"write -> fresh vmd/load (after vmd/changed): p50 {median(to_fresh):.2f} ms, p90 "
          f"{percentile(to_fresh, 0.9):.2f} ms")
    print(f"write -> fresh vmd/load (load sent at once, racing the watcher): p50 "
          f"{median(racing):.2f} ms, p90 {percentile(racing, 0.9):.2f} ms")


if __name__ == "__main__":
    main()
