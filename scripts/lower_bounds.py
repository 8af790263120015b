"""Print vmd's runtime dependencies pinned at their lower bounds, for `./scripts/test --oldest`.

Each `name>=X` in pyproject.toml's `dependencies` becomes `name==X` (environment markers kept),
so the suite runs against the oldest versions the ranges claim to support.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest's own dependency there, so the test venv has it
    import tomli as tomllib

_LOWER = re.compile(r"^\s*([A-Za-z0-9._-]+)\s*(?:\[[^\]]*\])?\s*([^;]*?)\s*(;.*)?$")


def lower_bounds(pyproject: Path) -> list[str]:
    """`name==lower` for each runtime dependency; an error for one without a lower bound."""
    out = []
    for spec in tomllib.loads(pyproject.read_text())["project"]["dependencies"]:
        match = _LOWER.match(spec)
        bound = re.search(r">=\s*([^,\s]+)", match.group(2)) if match else None
        if match is None or bound is None:
            raise SystemExit(f"{pyproject}: dependency {spec!r} has no lower bound (>=)")
        out.append(f"{match.group(1)}=={bound.group(1)}{match.group(3) or ''}")
    return out


if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    print("\n".join(lower_bounds(root / "pyproject.toml")), file=sys.stdout)
