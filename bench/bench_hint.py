"""Write → hint → fresh `vmd/load`, side by side for two vmd source trees (an A/B of the daemon).

    .venv/bin/python -m bench.bench_hint [--a TREE] [--b TREE] [--edits 150] [--gap 0.1]

What the Vite plugin does on a save: the watched file is written, then a
`workspace/didChangeWatchedFiles` hint and a `vmd/load` are sent at once; timed from the hint to
the fresh answer, and a cached `vmd/load` after the same idle time (the round trip alone, the
floor under it). Two daemons run at once, one per tree (a folder holding a `vmd` package, put
first on `PYTHONPATH`; default: this checkout), each with its own project, and edits alternate
between them, so both see the same machine. Without Vite and Node in the way it isolates the
daemon and its worker, but these machines still swing it: A/A runs read 0.97-1.07, so take
several runs, in both orders, before believing a change worth less than ~5%.
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
import json, vmd
watch = ["../data/value.json"]
def load(ctx):
    return vmd.json_module(json.loads((ctx.path.parent.parent / "data" / "value.json").read_text()))
"""


class Side:
    """One tree's daemon and project."""

    def __init__(self, tree: str, root: Path) -> None:
        self.tree = tree
        (root / "data").mkdir(parents=True)
        (root / "src").mkdir()
        self.value = root / "data" / "value.json"
        self.value.write_text("0")
        (root / "src" / "mod.vmd.py").write_text(LOADER)
        self.id = str(root / "src" / "mod.vmd.py")
        self.peer = Peer(root, env={**os.environ, "PYTHONPATH": tree})
        self.peer.initialize()
        self.peer.request("vmd/load", {"id": self.id})
        self.times: list[float] = []
        self.cached: list[float] = []

    def edit(self, value: int) -> None:
        self.value.write_text(str(value))
        hint = {"changes": [{"uri": self.value.as_uri(), "type": 2}]}
        t = time.perf_counter()
        self.peer.notify("workspace/didChangeWatchedFiles", hint)
        code = self.peer.request("vmd/load", {"id": self.id})["code"]
        self.times.append((time.perf_counter() - t) * 1000)
        assert f"({value})" in code or f'"{value}"' in code, code
        self.peer.notifications.clear()

    def load_cached(self) -> None:
        """The floor under `edit`: one round trip to the daemon, nothing to run."""
        t = time.perf_counter()
        self.peer.request("vmd/load", {"id": self.id})
        self.cached.append((time.perf_counter() - t) * 1000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--a", default=str(REPO), help="tree A (holds the vmd package)")
    ap.add_argument("--b", default=str(REPO), help="tree B")
    ap.add_argument("--edits", type=int, default=150, help="edits per tree")
    ap.add_argument("--gap", type=float, default=0.1, help="seconds between edits, as saves come")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sides = [Side(args.a, Path(tmp).resolve() / "a"), Side(args.b, Path(tmp).resolve() / "b")]
        try:
            for i in range(1, 2 * args.edits + 1):
                time.sleep(args.gap)
                sides[i % 2].edit(i)
                time.sleep(args.gap)
                sides[i % 2].load_cached()
        finally:
            for side in sides:
                side.peer.close()
    print(f"hint -> fresh vmd/load, {args.edits} edits each, alternating, one every {args.gap}s")
    for name, side in zip("AB", sides, strict=True):
        print(
            f"{name} ({side.tree}): p50 {median(side.times):.3f} ms, "
            f"p90 {percentile(side.times, 0.9):.3f} ms; a cached vmd/load after the same idle "
            f"time: p50 {median(side.cached):.3f} ms"
        )
    print(f"B / A at p50: {median(sides[1].times) / median(sides[0].times):.3f}")


if __name__ == "__main__":
    main()
