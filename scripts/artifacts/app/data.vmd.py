"""The loader of the artifact test app: data.txt's text, the mode, and which vmd ran it."""

import vmd

watch = ["data.txt"]


def load(ctx: vmd.Context) -> str:
    text = (ctx.path.parent / "data.txt").read_text(encoding="utf-8").strip()
    return vmd.json_module({"message": f"{text} ({ctx.mode})", "vmd": vmd.__file__})
