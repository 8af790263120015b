"""What a loader prints reaches the client whole and in order, each line prefixed with the
loader, however much it prints: lines that come together travel in one message."""

from __future__ import annotations

from harness import Daemon, Project

CHATTY = """\
import sys
import vmd

def load(ctx):
    for i in range(20_000):
        print(f"line {i}")
    print("no newline at the end", end="", file=sys.stderr)
    return vmd.json_module("done")
"""


async def test_twenty_thousand_printed_lines_arrive_whole_in_order_each_prefixed(
    project: Project, daemon: Daemon
) -> None:
    project.write("src/chatty.vmd.py", CHATTY)
    mark = daemon.mark()
    await daemon.load(project.path("src/chatty.vmd.py"))
    prefix = "[src/chatty.vmd.py] "
    tail = prefix + "no newline at the end"
    await daemon.wait_for(
        lambda m: m["method"] == "window/logMessage" and m["params"]["message"].endswith(tail),
        since=mark,
    )
    messages = [n["message"] for n in daemon.notifications("window/logMessage", since=mark)
                if n["type"] == 4]
    lines = [line for message in messages for line in message.split("\n")]
    assert lines == [f"{prefix}line {i}" for i in range(20_000)] + [tail]
