"""Cached `vmd/load` of a module watching thousands of files, side by side for two trees.

    .venv/bin/python -m bench.bench_wide [--a TREE] [--b TREE] [--files 20000] [--loads 300]

One loader watches `data/*.txt` over `--files` files; once it is loaded, `--loads` cached
loads go one at a time (after each, a 2 ms pause), then as many loads each right after a
same-size write of one of the files, which must return the new content (a stale answer is
counted, and must stay 0). Two daemons, one per tree (a folder holding a `vmd` package put
first on PYTHONPATH; default: this checkout), alternate load by load.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench.rpc import Peer, median, percentile

REPO = Path(__file__).resolve().parent.parent
LOADER = """
import vmd
watch = ["data/*.txt"]
def load(ctx):
    return vmd.json_module((ctx.path.parent / "data" / "a.txt").read_text())
"""


class Side:
    def __init__(self, tree: str, root: Path, files: int) -> None:
        data = root / "data"
        data.mkdir(parents=True)
        for n in range(files):
            (data / f"f{n:05d}.txt").write_text("-")
        (data / "a.txt").write_text("v00000")
        (root / "wide.vmd.py").write_text(LOADER)
        self.id = str(root / "wide.vmd.py")
        self.a = data / "a.txt"
        env = {**os.environ, "PYTHONPATH": tree}
        self.peer = Peer(root, env=env)
        self.peer.initialize()
        self.peer.request("vmd/load", {"id": self.id})
        self.cached: list[float] = []
        self.racing: list[float] = []
        self.stale = 0

    def load(self) -> tuple[float, str]:
        t = time.perf_counter()
        code = self.peer.request("vmd/load", {"id": self.id})["code"]
        return (time.perf_counter() - t) * 1000, code


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--a", default=str(REPO))
    ap.add_argument("--b", default=str(REPO))
    ap.add_argument("--files", type=int, default=20_000)
    ap.add_argument("--loads", type=int, default=300)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sides = [Side(tree, Path(tmp) / name, args.files)
                 for name, tree in (("a", args.a), ("b", args.b))]
        time.sleep(1.0)  # the watchers are live
        for i in range(args.loads):
            for side in sides if i % 2 else sides[::-1]:
                took, _ = side.load()
                side.cached.append(took)
                time.sleep(0.002)
        for i in range(1, args.loads + 1):
            text = f"v{i:05d}"
            for side in sides if i % 2 else sides[::-1]:
                side.a.write_text(text)
                took, code = side.load()
                side.racing.append(took)
                side.stale += text not in code
        for side in sides:
            side.peer.close()
    print(f"{args.files} watched files, {args.loads} loads each")
    for name, side, tree in zip("ab", sides, (args.a, args.b), strict=True):
        print(f"{name} ({tree}): cached p50 {median(side.cached):.2f} ms, p90 "
              f"{percentile(side.cached, 90):.2f} ms; right after a write p50 "
              f"{median(side.racing):.2f} ms; stale answers {side.stale}")


if __name__ == "__main__":
    main()
