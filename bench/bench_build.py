"""Build-mode throughput: one loader loaded with 500 different queries, all requested at once,
with the CPU time the daemon and its workers spend; rounds alternate between one `vmd/load`
per module and one `vmd/loadMany` for all of them (what `vite build` sends).

    .venv/bin/python -m bench.bench_build [--modules 500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench.rpc import Peer

LOADER = "import vmd\ndef load(ctx):\n    return vmd.json_module({'n': ctx.query.get('n')})\n"


def cpu_ms(pid: int) -> int:
    """User + system CPU time of `pid` in ms (Linux, from /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 // os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except OSError:
                pass
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--modules", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "m.vmd.py").write_text(LOADER)
        peer = Peer(root, {"mode": "build"})
        peer.initialize()
        peer.request("vmd/load", {"id": f"{root}/m.vmd.py"})
        time.sleep(0.3)  # let the replacement spare finish starting
        for rnd in range(args.rounds * 2):
            many = rnd % 2 == 1
            ids = [f"{root}/m.vmd.py?n={rnd}-{i}" for i in range(args.modules)]
            daemon0 = cpu_ms(peer.proc.pid)
            workers0 = {pid: cpu_ms(pid) for pid in children(peer.proc.pid)}
            t = time.perf_counter()
            if many:
                peer.send_many([peer.encode_request("vmd/loadMany", {"ids": ids})])
                expected = 1
            else:
                peer.send_many([peer.encode_request("vmd/load", {"id": id}) for id in ids])
                expected = args.modules
            got = 0
            while got < expected:
                got += len(peer.read_responses())
            wall = (time.perf_counter() - t) * 1000
            daemon = cpu_ms(peer.proc.pid) - daemon0
            workers = sum(cpu_ms(pid) - c for pid, c in workers0.items())
            how = "one vmd/loadMany" if many else "a vmd/load each"
            print(f"{args.modules} loads of new ids, {how}: {wall:.0f} ms wall; "
                  f"CPU: daemon {daemon} ms, workers {workers} ms")
        peer.close()


if __name__ == "__main__":
    main()
