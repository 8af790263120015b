"""Helpers that turn Python values into JavaScript module source.

They exist because hand-built module strings are the most common source of broken or unsafe
output: a quote, a backslash, `</script>` or U+2028 inside data must never change the code.
"""

from __future__ import annotations

import json
from typing import Any


def json_module(value: Any) -> str:
    """Return an ES module whose default export is `value`.

    The JSON text is embedded as an ASCII-only JavaScript string literal and parsed at runtime
    (`JSON.parse` is faster than an object literal for large data), with `<` escaped so the
    module can be inlined into HTML.

    Example:
        >>> json_module({"a": "</script>"})
        'export default JSON.parse("{\\\\"a\\\\":\\\\"\\\\u003c/script>\\\\"}");\\n'

    Raises:
        ValueError: `value` holds NaN or an infinity, which JSON cannot represent.
        TypeError: `value` holds something that is not JSON (a set, an object...).
    """
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    literal = json.dumps(text, ensure_ascii=True).replace("<", "\\u003c")
    return f"export default JSON.parse({literal});\n"
