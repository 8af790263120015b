"""Initialization options: decoded leniently so a bad option is reported, not fatal.

A client that sends `timeoutMs: "fast"` gets a warning naming the option and the default is
used; the daemon never refuses to start over its options.
"""

from __future__ import annotations

from typing import Any

import msgspec

from vmd import globs
from vmd.protocol import DEFAULT_INCLUDE, InitializationOptions

_FIELDS = msgspec.structs.fields(InitializationOptions)


def parse_options(raw: Any) -> tuple[InitializationOptions, list[str]]:
    """Decode `initializationOptions`, returning the options and one warning per bad field."""
    if raw is None:
        return InitializationOptions(), []
    if not isinstance(raw, dict):
        return InitializationOptions(), [
            f"initializationOptions must be an object, got {type(raw).__name__}; using defaults"
        ]
    good: dict[str, Any] = {}
    warnings: list[str] = []
    known = {f.encode_name: f for f in _FIELDS}
    for key, value in raw.items():
        field = known.get(key)
        if field is None:
            continue  # options for other tools (or newer vmd versions) are not errors
        try:
            msgspec.convert({key: value}, InitializationOptions)
        except msgspec.ValidationError as exc:
            warnings.append(f"initializationOptions.{key}: {exc}; using the default")
            continue
        good[key] = value
    options = msgspec.convert(good, InitializationOptions)
    if options.timeout_ms <= 0:
        warnings.append("initializationOptions.timeoutMs must be positive; using 30000")
        options.timeout_ms = 30000
    if options.max_workers < 1:
        warnings.append("initializationOptions.maxWorkers must be at least 1; using 8")
        options.max_workers = 8
    if options.memory_limit_mb is not None and options.memory_limit_mb < 0:
        warnings.append("initializationOptions.memoryLimitMb must be 0 (no limit) or more; "
                        "using a quarter of the machine's memory")
        options.memory_limit_mb = None
    if options.max_query_ids < 0:
        warnings.append("initializationOptions.maxQueryIds must be 0 (no bound) or more; "
                        "using 5000")
        options.max_query_ids = 5000
    valid = []
    for pattern in options.include:
        try:
            globs.compile(globs.absolute(pattern, "/"))
        except globs.GlobError as exc:
            warnings.append(
                f"initializationOptions.include: invalid glob {pattern!r}: {exc.reason}; "
                "ignoring it"
            )
        else:
            valid.append(pattern)
    if not valid:
        what = "has no valid glob" if options.include else "is empty"
        warnings.append(f"initializationOptions.include {what}; using {list(DEFAULT_INCLUDE)}")
        valid = list(DEFAULT_INCLUDE)
    options.include = valid
    return options, warnings
