"""vmd: Python loaders that generate JavaScript modules.

This package is imported by every loader and every worker process, so it re-exports only the
loader-facing API and stays free of heavy imports (no pygls, no lsprotocol).
"""

from vmd.context import Context, Event
from vmd.jsmodule import json_module

__version__ = "0.1.0"

__all__ = ["Context", "Event", "json_module", "__version__"]
