"""What every client must say and do alike has one definition (clients/README.md), and each
client's one declaration of it matches vmd/protocol.py.

The clients are read as source: the default include and the install hint are string literals
there, compared here with the Python definitions, and each is checked to be spelled out nowhere
else in the client. The Neovim plugin's interpreter discovery is run in headless Neovim (the
Node and VS Code suites test their own).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import string
import subprocess
from pathlib import Path

import pytest

from vmd import cli, options, protocol

REPO = Path(__file__).resolve().parents[2]
CLIENTS = REPO / "clients"
NODE = CLIENTS / "node"
VSCODE = CLIENTS / "editor" / "vscode"
NVIM_PLUGIN = CLIENTS / "editor" / "nvim"
NVIM = shutil.which("nvim")

# How each client spells a vmd checkout's path in the hint (clients/README.md says why).
CHECKOUT = {"node": "<path-to-vmd>", "vscode": protocol.INSTALL_CHECKOUT}

_LITERAL = re.compile(r"""'((?:[^'\\\n]|\\.)*)'|"((?:[^"\\\n]|\\.)*)\"""")


def _unquote(match: re.Match[str]) -> str:
    body = match.group(1) if match.group(1) is not None else match.group(2)
    return re.sub(r"\\(.)", r"\1", body)


def _declaration(source: str, pattern: str) -> tuple[str, str]:
    """The text of the value declared by `pattern` (a regex ending at `=`) up to the end of
    its statement, and the source without it."""
    found = re.search(pattern + r"\s*", source)
    assert found, f"no declaration matching {pattern!r}"
    rest = source[found.end():]
    if rest[0] in "[{":
        end = rest.index("]" if rest[0] == "[" else "}") + 1
    else:
        end = _LITERAL.match(rest).end()  # type: ignore[union-attr]
    return rest[:end], source[:found.start()] + source[found.end() + end:]


def _strings(value: str) -> list[str]:
    return [_unquote(m) for m in _LITERAL.finditer(value)]


def _client_sources(folder: Path, suffix: str) -> dict[Path, str]:
    return {
        path: path.read_text(encoding="utf-8")
        for path in sorted(folder.rglob(f"*{suffix}"))
        if "node_modules" not in path.parts and "test" not in path.parts
        and "tests" not in path.parts and not path.name.endswith((".test.ts", ".d.ts"))
    }


def _quoted_default(text: str) -> list[str]:
    return [g for g in protocol.DEFAULT_INCLUDE if f"'{g}'" in text or f'"{g}"' in text]


# -- the Python side -----------------------------------------------------------------------


def test_the_daemon_defaults_to_the_one_default_include() -> None:
    assert protocol.DEFAULT_INCLUDE == ("**/*.vmd.py",)
    assert protocol.InitializationOptions().include == list(protocol.DEFAULT_INCLUDE)
    fallback, _ = options.parse_options({"include": []})
    assert fallback.include == list(protocol.DEFAULT_INCLUDE)
    assert cli.DEFAULT_INCLUDE == list(protocol.DEFAULT_INCLUDE)


def test_the_install_hint_is_a_template_of_the_interpreter_and_the_checkout() -> None:
    fields = {name for _, name, _, _ in string.Formatter().parse(protocol.INSTALL_HINT) if name}
    assert fields == {"python", "checkout"}
    hint = protocol.INSTALL_HINT.format(python="/venv/bin/python", checkout="path/to/vmd")
    assert "`/venv/bin/python -m pip install path/to/vmd`" in hint
    assert "not on PyPI" in hint


def test_clients_readme_defines_both() -> None:
    readme = (CLIENTS / "README.md").read_text(encoding="utf-8")
    for glob in protocol.DEFAULT_INCLUDE:
        assert f"\n{glob}\n" in readme
    assert f"\n{protocol.INSTALL_HINT}\n" in readme
    assert f"`{protocol.INSTALL_CHECKOUT}`" in readme and f"`{CHECKOUT['node']}`" in readme


# -- the Vite plugin -----------------------------------------------------------------------


def test_the_vite_plugin_declares_both_once_in_protocol_ts() -> None:
    source = (NODE / "src" / "protocol.ts").read_text(encoding="utf-8")
    include, rest = _declaration(source, r"export const DEFAULT_INCLUDE =")
    assert _strings(include) == list(protocol.DEFAULT_INCLUDE)
    hint, rest = _declaration(rest, r"export const INSTALL_HINT =")
    assert _strings(hint) == [protocol.INSTALL_HINT]
    assert not _quoted_default(rest)


def test_the_vite_plugin_uses_them() -> None:
    sources = _client_sources(NODE / "src", ".ts")
    sources.pop(NODE / "src" / "protocol.ts")
    assert "[...DEFAULT_INCLUDE]" in sources[NODE / "src" / "options.ts"]
    daemon_ts = sources[NODE / "src" / "daemon.ts"]
    assert f"replaceAll('{{checkout}}', '{CHECKOUT['node']}')" in daemon_ts
    assert "INSTALL_HINT.replaceAll('{python}'" in daemon_ts
    for path, text in sources.items():
        assert not _quoted_default(text), path
        # daemon.ts has two other pip commands: for a missing interpreter (make a venv) and
        # for a daemon of another protocol revision (install both from one checkout).
        if path.name != "daemon.ts":
            assert "pip install" not in text, path


# -- the VS Code extension -----------------------------------------------------------------


def test_the_vscode_extension_declares_both_once_in_protocol_ts() -> None:
    source = (VSCODE / "src" / "protocol.ts").read_text(encoding="utf-8")
    include, rest = _declaration(
        source, r"export const DEFAULT_INCLUDE: typeof wire\.DEFAULT_INCLUDE ="
    )
    assert _strings(include) == list(protocol.DEFAULT_INCLUDE)
    hint, rest = _declaration(rest, r"export const INSTALL_HINT: typeof wire\.INSTALL_HINT =")
    assert _strings(hint) == [protocol.INSTALL_HINT]
    assert not _quoted_default(rest)
    assert "from '../../../node/src/protocol.js'" in rest and "import type" in rest


def test_the_vscode_manifest_has_the_default_include() -> None:
    manifest = json.loads((VSCODE / "package.json").read_text(encoding="utf-8"))
    setting = manifest["contributes"]["configuration"]["properties"]["vmd.include"]
    assert setting["default"] == list(protocol.DEFAULT_INCLUDE)
    for glob in protocol.DEFAULT_INCLUDE:
        assert f"workspaceContains:{glob}" in manifest["activationEvents"]


def test_the_vscode_extension_uses_them() -> None:
    sources = _client_sources(VSCODE / "src", ".ts")
    sources.pop(VSCODE / "src" / "protocol.ts")
    assert "[...DEFAULT_INCLUDE]" in sources[VSCODE / "src" / "settings.ts"]
    daemon_ts = sources[VSCODE / "src" / "daemon.ts"]
    assert f"replaceAll('{{checkout}}', '{CHECKOUT['vscode']}')" in daemon_ts
    assert "INSTALL_HINT.replaceAll('{python}'" in daemon_ts
    for path, text in sources.items():
        assert not _quoted_default(text), path
        assert "pip install" not in text, path


# -- the Neovim plugin ---------------------------------------------------------------------


def test_the_nvim_plugin_declares_both_once_in_shared_lua() -> None:
    source = (NVIM_PLUGIN / "lua" / "vmd" / "shared.lua").read_text(encoding="utf-8")
    include, rest = _declaration(source, r"M\.DEFAULT_INCLUDE =")
    assert _strings(include) == list(protocol.DEFAULT_INCLUDE)
    hint, rest = _declaration(rest, r"M\.INSTALL_HINT =")
    assert _strings(hint) == [protocol.INSTALL_HINT]
    checkout, rest = _declaration(rest, r"M\.INSTALL_CHECKOUT =")
    assert _strings(checkout) == [protocol.INSTALL_CHECKOUT]
    assert not _quoted_default(rest)


def test_the_nvim_plugin_uses_them() -> None:
    sources = _client_sources(NVIM_PLUGIN, ".lua")
    sources.pop(NVIM_PLUGIN / "lua" / "vmd" / "shared.lua")
    init = sources[NVIM_PLUGIN / "lua" / "vmd" / "init.lua"]
    assert "include = vim.deepcopy(shared.DEFAULT_INCLUDE)" in init
    assert "shared.install_hint(python)" in init
    lsp = sources[NVIM_PLUGIN / "lsp" / "vmd.lua"]
    assert "include = vim.deepcopy(shared.DEFAULT_INCLUDE)" in lsp
    for path, text in sources.items():
        assert not _quoted_default(text), path
        assert "pip install" not in text, path


@pytest.fixture()
def nvim() -> str:
    if NVIM is None:
        if os.environ.get("CI"):
            pytest.fail("nvim is required in CI")
        pytest.skip("nvim is not installed")
    return NVIM


def _nvim_python(nvim: str, root: Path, env: dict[str, str], option: str = "nil") -> str:
    script = (
        "local vmd = require('vmd')"
        f"; vmd.setup({{ python = {option}, autostart = false, codelens = false }})"
        f"; io.stdout:write(vmd.config({json.dumps(str(root))}).cmd[1])"
    )
    proc = subprocess.run(
        [nvim, "--headless", "-u", "NONE", "-i", "NONE", "--cmd", f"set rtp^={NVIM_PLUGIN}",
         "-c", f"lua {script}", "-c", "qa!"],
        env=env, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_nvim_plugin_finds_the_interpreter_in_the_shared_order(
    nvim: str, tmp_path: Path
) -> None:
    venv_python = tmp_path / "project" / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text("")
    root = tmp_path / "project" / "packages" / "web"
    root.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "VMD_PYTHON"}
    with_env = {**env, "VMD_PYTHON": "/opt/py/bin/python"}
    assert _nvim_python(nvim, root, with_env, option="'/my/python'") == "/my/python"
    assert _nvim_python(nvim, root, with_env) == "/opt/py/bin/python"
    assert _nvim_python(nvim, root, env) == str(venv_python)
    assert _nvim_python(nvim, tmp_path, env) == "python3"
