"""Watched-file write -> `vmd/changed`, and write -> fresh `vmd/load`, over many edits; then
edits of the loader itself -> fresh `vmd/load` (the loader's worker is replaced).

    .venv/bin/python -m bench.bench_change [--edits 200] [--loader-edits 50] [--variants on,off]

`--variants on,off` runs one daemon with the preloader on (`VMD_PRELOAD=1` in its environment)
and one with it off (`VMD_PRELOAD=0`), each in its own project, and alternates every edit
between them (the one going first swaps every edit); each figure is printed for both, with the
ratio on / off of the p50s. Without it, one daemon with the environment as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from bench.rpc import Peer, median, percentile

LOADER = '''
import json, vmd
watch = ["data/*.json"]
EDIT = {edit}
def load(ctx):
    value = json.loads((ctx.path.parent / "data" / "value.json").read_text())
    return vmd.json_module({{"edit": EDIT, "value": value}})
'''
PRELOAD = {"on": "1", "off": "0"}


def marker(edit: int) -> str:
    return f'\\"edit\\":{edit},'  # json_module's JSON sits in a JS string: quotes escaped


class Project:
    def __init__(self, root: Path, variant: str | None) -> None:
        self.variant = variant
        (root / "data").mkdir(parents=True)
        self.value = root / "data" / "value.json"
        self.value.write_text("0")
        self.loader = root / "mod.vmd.py"
        self.loader.write_text(LOADER.format(edit=0))
        self.id = str(self.loader)
        env = None
        if variant is not None:
            env = {**os.environ, "VMD_PRELOAD": PRELOAD[variant]}
        self.peer = Peer(root, env=env)
        self.peer.initialize()
        self.peer.request("vmd/load", {"id": self.id})
        self.figures: dict[str, list[float]] = {
            "changed": [], "fresh": [], "racing": [], "loader_changed": [], "loader": []}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--edits", type=int, default=200)
    ap.add_argument("--loader-edits", type=int, default=50)
    ap.add_argument("--variants", default="", help="on,off: preloading on and off, alternating")
    args = ap.parse_args()
    variants: list[str | None] = [v for v in args.variants.split(",") if v] or [None]
    with tempfile.TemporaryDirectory() as tmp:
        projects = [Project(Path(tmp) / (v or "vmd"), v) for v in variants]

        def turns(i: int) -> list[Project]:
            k = i % len(projects)
            return projects[k:] + projects[:k]

        for i in range(1, args.edits + 1):
            for p in turns(i):
                time.sleep(0.02)  # let the previous edit settle: we measure single saves
                t = time.perf_counter()
                p.value.write_text(json.dumps(i))
                p.peer.wait_for("vmd/changed")
                p.figures["changed"].append((time.perf_counter() - t) * 1000)
                result = p.peer.request("vmd/load", {"id": p.id})
                p.figures["fresh"].append((time.perf_counter() - t) * 1000)
                assert f'\\"value\\":{i}}}' in result["code"], (i, result["code"])
        # A load racing the watcher: written and asked for at once, never stale.
        for i in range(args.edits + 1, args.edits + 51):
            for p in turns(i):
                time.sleep(0.02)
                t = time.perf_counter()
                p.value.write_text(json.dumps(i))
                result = p.peer.request("vmd/load", {"id": p.id})
                p.figures["racing"].append((time.perf_counter() - t) * 1000)
                assert f'\\"value\\":{i}}}' in result["code"]
                p.peer.notifications.clear()
        # The loader itself edited: its worker is replaced (a spare, or forked when preloading).
        time.sleep(0.3)
        for i in range(1, args.loader_edits + 1):
            for p in turns(i):
                time.sleep(0.15)  # the replaced worker's exit and the next spare's start
                p.peer.notifications.clear()
                t = time.perf_counter()
                p.loader.write_text(LOADER.format(edit=i))
                while True:
                    msg = p.peer.wait_for("vmd/changed")
                    if msg["params"]["id"] == p.id:
                        break
                p.figures["loader_changed"].append((time.perf_counter() - t) * 1000)
                result = p.peer.request("vmd/load", {"id": p.id})
                p.figures["loader"].append((time.perf_counter() - t) * 1000)
                assert marker(i) in result["code"], (i, result["code"][:200])
        for p in projects:
            p.peer.close()
    names = {
        "changed": "write -> vmd/changed",
        "fresh": "write -> fresh vmd/load (after vmd/changed)",
        "racing": "write -> fresh vmd/load (load sent at once, racing the watcher)",
        "loader_changed": "loader edit -> vmd/changed",
        "loader": "loader edit -> fresh vmd/load (after vmd/changed)",
    }
    for key, name in names.items():
        for p in projects:
            values = p.figures[key]
            if not values:
                continue
            label = "" if p.variant is None else f" [preload {p.variant}]"
            print(f"{name}{label}: p50 {median(values):.2f} ms, p90 "
                  f"{percentile(values, 0.9):.2f} ms ({len(values)} edits)")
        by = {p.variant: p.figures[key] for p in projects}
        if by.get("on") and by.get("off"):
            print(f"  preload on / off, p50: {median(by['on']) / median(by['off']):.3f}")


if __name__ == "__main__":
    main()
