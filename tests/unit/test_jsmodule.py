"""json_module must produce a module whose default export equals the value, whatever the data."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from vmd import json_module

NASTY: list[Any] = [
    {"quote": '"', "backslash": "\\", "newline": "a\nb", "tab": "\t"},
    "</script><script>alert(1)</script>",
    "line\u2028separator\u2029paragraph",
    ["emoji \U0001f600", "nul \x00", "lone surrogate-free é"],
    None,
    0,
    -1.5e300,
    True,
    [],
    {"nested": [{"deep": [1, 2, {"x": None}]}]},
]


@pytest.mark.parametrize("value", NASTY)
def test_json_module_round_trips_through_a_real_javascript_engine(
    value: Any, tmp_path: Path
) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    module = tmp_path / "m.mjs"
    module.write_text(json_module(value), encoding="utf-8")
    script = (
        f"import v from {json.dumps(module.as_uri())};"
        "process.stdout.write(JSON.stringify(v === undefined ? null : v));"
    )
    out = subprocess.run(
        [node, "--input-type=module", "-e", script], capture_output=True, check=True
    ).stdout
    assert json.loads(out) == value


def test_json_module_output_is_ascii_and_cannot_close_a_script_tag() -> None:
    code = json_module({"x": "</script>\u2028"})
    assert code.isascii()
    assert "</" not in code


def test_json_module_rejects_values_json_cannot_represent() -> None:
    with pytest.raises(ValueError):
        json_module(float("nan"))
    with pytest.raises(TypeError):
        json_module({1, 2})
