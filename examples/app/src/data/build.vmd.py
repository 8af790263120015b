"""Constants stamped when the module is generated; `?target=` picks a deployment target.

    import build from "./data/build.vmd.py?target=staging"
"""

import datetime
import json
import platform

import vmd

TARGETS = {
    "production": {"apiBase": "https://api.example.com", "debug": False},
    "staging": {"apiBase": "https://staging.api.example.com", "debug": True},
}


def load(ctx: vmd.Context) -> str:
    target = ctx.query.get("target", "production")
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; pick one of {sorted(TARGETS)}")
    constants = {
        "target": target,
        "mode": ctx.mode,
        "python": platform.python_version(),
        "builtAt": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **TARGETS[target],
    }
    lines = [f"export const {name} = {json.dumps(value)};" for name, value in constants.items()]
    lines.append(f"export default {{ {', '.join(constants)} }};")
    return "\n".join(lines) + "\n"
