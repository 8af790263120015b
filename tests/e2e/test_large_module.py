"""A large module (tens of MB) reaches the client exactly as the loader returned it, through
`vmd/load`, `vmd/loadMany` and from memory; it travels in pieces (see `vmd.chunks`)."""

from __future__ import annotations

import hashlib

from harness import Daemon, Project

# ~20 MB at the default n, of one line with everything JSON must escape or may split across
# pieces: quotes, backslashes, a tab, a control character, non-ASCII of 2, 3 and 4 bytes,
# U+FFFD. The same expression builds it in the loader and in the test.
LINE = 'chr(34) + "q" + chr(92) * 2 + "u" + chr(9) + "é漢😀" + chr(0xFFFD) + chr(1) + chr(10)'
BIG = f"""\
import vmd

def load(ctx):
    line = {LINE}
    return "export const text = [" + chr(10) + line * int(ctx.query.get("n", "1000000")) + "];"
"""

SMALL = "def load(ctx):\n    return 'export default 1;'\n"


def digest(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()


def expected(n: int = 1_000_000) -> str:
    line: str = eval(LINE)
    return "export const text = [" + chr(10) + line * n + "];"


async def test_a_large_module_arrives_exactly_as_returned_and_again_from_memory(
    project: Project, daemon: Daemon
) -> None:
    loader = project.write("src/big.vmd.py", BIG)
    want = expected()
    assert len(want.encode()) > 19 << 20  # ~20 MB: 19 pieces and more
    first = await daemon.load(loader)
    assert digest(first["code"]) == digest(want)
    assert first["version"] == 1 and first["id"] == loader
    again = await daemon.load(loader)  # served from memory, in the same pieces
    assert again == first


async def test_large_and_small_modules_in_one_load_many(
    project: Project, daemon: Daemon
) -> None:
    loader = project.write("src/big.vmd.py", BIG)
    small = project.write("src/small.vmd.py", SMALL)
    ids = [small, f"{loader}?n=300000", f"{small}?x", loader]
    results = (await daemon.call("vmd/loadMany", {"ids": ids}))["results"]
    codes = [r["result"]["code"] for r in results]
    assert codes[0] == codes[2] == "export default 1;"
    assert digest(codes[1]) == digest(expected(300_000))
    assert digest(codes[3]) == digest(expected())


async def test_a_module_just_under_the_large_size_is_unchanged(
    project: Project, daemon: Daemon
) -> None:
    loader = project.write("src/big.vmd.py", BIG)
    line = len(eval(LINE))
    for n in ((1 << 20) // line - 1, (1 << 20) // line + 1):
        result = await daemon.load(f"{loader}?n={n}")
        assert result["code"] == expected(n)
