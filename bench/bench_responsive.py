"""Does heavy work for one module stall the daemon for everyone else? Side by side for two trees.

    .venv/bin/python -m bench.bench_responsive [--a TREE] [--b TREE]
        [--scenarios hover,big,prints] [--rounds 3]

A hog request is sent and not waited for; cached `vmd/load`s of a trivial loader (probes) are
then sent one at a time, each timed from its send to its answer, until the hog's answer has
arrived. On a daemon whose event loop stays free the probes keep their idle latency and there
are many of them; on one the hog blocks there are one or two and the last one's wait is about
the hog's own time. The hogs:

- `hover`: LSP `textDocument/hover` on `watch = ["/usr/**/*"]` (~120,000 files here), which
  the editor features expand to count the matches. The client announces `textDocument`
  capabilities so pygls is preloaded, and one hover off the glob is answered first, so the hog
  times the expansion, not pygls' import.
- `big`: `vmd/load` of a loader returning a 200 MB string module, with a new `?r=N` query each
  time so it really runs; the answer crosses the worker pipe, the daemon and stdout. One takes
  4-8 s here (a round of `big`, both trees, ~10 s), so the full 200 MB is kept.
- `prints`: `vmd/load` (new `?r=N` each time) of a loader printing 100,000 lines, which the
  daemon forwards to the client as `window/logMessage`s.

`baseline` is the same probes with no hog (its "hog ms" is the time spent probing). Each tree
(a folder holding a `vmd` package, put first on `PYTHONPATH`; default: this checkout) gets its
own daemon and project; within a round every scenario runs on A then B, the next round B then
A, so both see the same machine; the table shows medians over rounds. The probes share one
pipe with the hog's answer, so a probe answered after the 200 MB also pays for reading it.
`stall` is the longest probe wait over the hog's time: 1.00 with one probe means the event loop
was blocked for the whole hog (hover at 689f470, before it walked the glob in a thread). The
defaults take about a minute.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.rpc import Peer, median, percentile

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = ("hover", "big", "prints")
BIG_BYTES = 200_000_000
BASELINE_S = 0.5  # probing time of the no-hog row

LIGHT = "import vmd\ndef load(ctx):\n    return vmd.json_module(1)\n"
WIDE = 'watch = ["/usr/**/*"]\n\n\ndef load(ctx):\n    return "export default 0;\\n"\n'
HUGE = f"""
import json

def load(ctx):
    return "export default " + json.dumps("x" * {BIG_BYTES}) + ";"
"""
CHATTY = """
import vmd

def load(ctx):
    for i in range(100_000):
        print(f"line {i}")
    return vmd.json_module(ctx.query.get("r"))
"""
EDITOR_CAPS = {"textDocument": {"hover": {"contentFormat": ["markdown", "plaintext"]}}}


class Run:
    """One hog on one tree: the probes' latencies and when the hog's answer came."""

    def __init__(self) -> None:
        self.probes: list[float] = []
        self.hog_ms = 0.0

    @property
    def stall(self) -> float:
        """The longest probe wait, as a share of the hog's time: ~1 when the hog blocked all."""
        return max(self.probes) / self.hog_ms


class Side:
    """One tree's daemon and project."""

    def __init__(self, tree: str, root: Path) -> None:
        self.tree = tree
        root.mkdir(parents=True)
        for name, text in (("light", LIGHT), ("wide", WIDE), ("huge", HUGE), ("chatty", CHATTY)):
            (root / f"{name}.vmd.py").write_text(text)
        self.light = str(root / "light.vmd.py")
        self.wide_uri = (root / "wide.vmd.py").as_uri()
        self.huge = str(root / "huge.vmd.py")
        self.chatty = str(root / "chatty.vmd.py")
        self.peer = Peer(root, env={**os.environ, "PYTHONPATH": tree})
        self.peer.request("initialize", {
            "processId": os.getpid(),
            "rootUri": root.as_uri(),
            "capabilities": EDITOR_CAPS,
            "initializationOptions": {},
        })
        self.peer.notify("initialized", {})
        self.peer.request("vmd/load", {"id": self.light})
        # pygls ready (a hover off the glob answers at once) and the glob's answer checked.
        self.peer.request("textDocument/hover", self._hover_params(0))
        value = self.peer.request("textDocument/hover", self._hover_params(12))["contents"]["value"]
        matches = int(value.split(" matches ")[1].split()[0])
        assert matches > 10_000, value
        self.runs: dict[str, list[Run]] = {}

    def _hover_params(self, character: int) -> dict[str, Any]:
        return {"textDocument": {"uri": self.wide_uri},
                "position": {"line": 0, "character": character}}

    def hog(self, scenario: str, n: int) -> tuple[str, Any]:
        if scenario == "hover":
            return "textDocument/hover", self._hover_params(12)
        if scenario == "big":
            return "vmd/load", {"id": f"{self.huge}?r={n}"}
        return "vmd/load", {"id": f"{self.chatty}?r={n}"}

    def run(self, scenario: str, n: int) -> Run:
        out = Run()
        if scenario == "baseline":
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < BASELINE_S:
                out.probes.append(self._probe(None, out))
            out.hog_ms = (time.perf_counter() - t0) * 1000
        else:
            method, params = self.hog(scenario, n)
            t0 = time.perf_counter()
            self.peer.send_many([self.peer.encode_request(method, params)])
            hog = self.peer._next  # the id encode_request just used
            while not out.hog_ms:
                latency = self._probe(hog, out, t0)
                out.probes.append(latency)
        self.peer.notifications.clear()
        self.runs.setdefault(scenario, []).append(out)
        return out

    def _probe(self, hog: int | None, out: Run, t0: float = 0.0) -> float:
        """One cached load of light.vmd.py, timed; notes the hog's answer if it comes first."""
        peer = self.peer
        t = time.perf_counter()
        peer.send_many([peer.encode_request("vmd/load", {"id": self.light})])
        want = peer._next
        while True:
            msg = peer.read()
            if "method" in msg:
                if len(peer.notifications) > 10_000:
                    peer.notifications.clear()
                continue
            if msg.get("id") == hog:
                out.hog_ms = (time.perf_counter() - t0) * 1000
                _check_hog(msg)
            elif msg.get("id") == want:
                if "error" in msg:
                    raise RuntimeError(msg["error"])
                return (time.perf_counter() - t) * 1000


def _check_hog(msg: dict[str, Any]) -> None:
    if "error" in msg:
        raise RuntimeError(f"the hog failed: {msg['error']}")
    result = msg["result"]
    if "contents" in result:  # hover
        assert " matches " in result["contents"]["value"], result
    else:  # big (really sent back) or prints
        assert result["code"].startswith("export default"), result["code"][:200]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--a", default=str(REPO), help="tree A (holds the vmd package)")
    ap.add_argument("--b", default=str(REPO), help="tree B")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help="hogs to run, comma-separated")
    ap.add_argument("--rounds", type=int, default=3, help="rounds, A first then B first")
    args = ap.parse_args()
    scenarios = ["baseline"] + [s for s in args.scenarios.split(",") if s]
    if unknown := set(scenarios) - {"baseline", *SCENARIOS}:
        ap.error(f"unknown scenarios {sorted(unknown)}; choose from {','.join(SCENARIOS)}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        sides = [Side(args.a, Path(tmp).resolve() / "a"), Side(args.b, Path(tmp).resolve() / "b")]
        try:
            for r in range(args.rounds):
                order = sides if r % 2 == 0 else sides[::-1]
                for scenario in scenarios:
                    for side in order:
                        side.run(scenario, r)
        finally:
            for side in sides:
                side.peer.close()
    print(f"cached vmd/load probes while a hog runs; medians over {args.rounds} rounds, "
          f"A/B alternating ({time.perf_counter() - started:.0f} s in all)")
    for name, side in zip("AB", sides, strict=True):
        print(f"{name}: {side.tree}")
    print(f"{'scenario':<9} {'tree':<4} {'probes':>7} {'p50 ms':>9} {'p90 ms':>9} {'max ms':>9} "
          f"{'hog ms':>9} {'stall':>6}")
    for scenario in scenarios:
        for name, side in zip("AB", sides, strict=True):
            runs = side.runs[scenario]
            print(
                f"{scenario:<9} {name:<4} {median([len(r.probes) for r in runs]):>7.0f} "
                f"{median([median(r.probes) for r in runs]):>9.3f} "
                f"{median([percentile(r.probes, 0.9) for r in runs]):>9.3f} "
                f"{median([max(r.probes) for r in runs]):>9.1f} "
                f"{median([r.hog_ms for r in runs]):>9.1f} "
                f"{median([r.stall for r in runs]):>6.2f}"
            )
    print("stall: the longest probe wait / the hog's time; near 1, one probe waited out the "
          "whole hog (the loop was blocked)")


if __name__ == "__main__":
    main()
