"""vmd: Python loaders that generate JavaScript modules.

This package is imported by every loader and every worker process, so it re-exports only the
loader-facing API, and lazily: `python -m vmd serve` imports this package before anything else,
and starts its first worker process before paying for any other import.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing itself costs ~5 ms of every start-up
if TYPE_CHECKING:
    from vmd.context import Context, Event
    from vmd.jsmodule import json_module

__version__ = "0.1.0"

__all__ = ["Context", "Event", "json_module", "__version__"]


def __getattr__(name: str) -> object:
    if name in ("Context", "Event"):
        from vmd import context

        return getattr(context, name)
    if name == "json_module":
        from vmd.jsmodule import json_module

        return json_module
    raise AttributeError(f"module 'vmd' has no attribute {name!r}")
