"""Editor features over plain LSP, against a real daemon: code lenses, the vmd.preview and
vmd.reload commands, `vmd:` documents through workspace/textDocumentContent (LSP 3.18) and
their refresh, hover on watch globs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from harness import Daemon, Project, RpcError, StartDaemon, initialize_params

from vmd.editor import id_to_uri

# What a 3.18 editor (vscode-languageclient 10) announces, trimmed to what vmd looks at.
EDITOR = {
    "textDocument": {"codeLens": {}, "hover": {"contentFormat": ["markdown", "plaintext"]}},
    "workspace": {"textDocumentContent": {"dynamicRegistration": True},
                  "codeLens": {"refreshSupport": True}},
}

USERS = """
import vmd

watch = ["data/*.csv", "missing/*.txt"]

def load(ctx):
    names = [(ctx.path.parent / f).read_text().strip() for f in ctx.watched_files]
    return vmd.json_module({"kind": ctx.query.get("type", "all"), "names": names})
"""


@pytest.fixture
async def editor(start_daemon: StartDaemon) -> Daemon:
    return await start_daemon(capabilities=EDITOR)


def uri(path: str) -> str:
    return Path(path).as_uri()


async def command(daemon: Daemon, name: str, *args: Any) -> Any:
    return await daemon.call("workspace/executeCommand", {"command": name, "arguments": list(args)})


async def content(daemon: Daemon, vmd_uri: str) -> str:
    result = await daemon.call("workspace/textDocumentContent", {"uri": vmd_uri})
    return result["text"]  # type: ignore[no-any-return]


async def lenses(daemon: Daemon, path: str) -> list[dict[str, Any]]:
    result = await daemon.call("textDocument/codeLens", {"textDocument": {"uri": uri(path)}})
    return result or []


def users_project(project: Project) -> str:
    project.write("src/data/a.csv", "ada\n")
    project.write("src/data/b.csv", "bob\n")
    return project.write("src/users.vmd.py", USERS)


async def test_initialize_declares_the_editor_features(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(initialize=False)
    answer = await daemon.call("initialize", initialize_params(None, capabilities=EDITOR))
    caps = answer["capabilities"]
    assert caps["codeLensProvider"] is not None
    assert set(caps["executeCommandProvider"]["commands"]) == {"vmd.preview", "vmd.reload"}
    assert caps["hoverProvider"]
    assert caps["workspace"]["textDocumentContent"] == {"schemes": ["vmd"]}
    assert caps["experimental"]["vmd"]["methods"] == [
        "vmd/load", "vmd/loadMany", "vmd/reload", "vmd/invalidate",
    ]
    # Only clients that know LSP 3.18 textDocumentContent are offered it.
    plain = await start_daemon(initialize=False)
    answer = await plain.call("initialize", initialize_params(None))
    assert "textDocumentContent" not in answer["capabilities"].get("workspace", {})


async def test_preview_command_returns_the_vmd_uri_and_code(
    project: Project, editor: Daemon
) -> None:
    loader = users_project(project)
    result = await command(editor, "vmd.preview", uri(loader))
    assert result["id"] == loader
    assert result["uri"] == "vmd:" + loader
    assert result["version"] == 1
    assert result["error"] is None
    assert '\\"names\\":[\\"ada\\",\\"bob\\"]' in result["code"]
    assert await content(editor, result["uri"]) == result["code"]


async def test_preview_document_is_refreshed_when_a_watched_file_changes(
    project: Project, editor: Daemon
) -> None:
    loader = users_project(project)
    id = loader + "?type=admin"
    vmd_uri = id_to_uri(id)
    assert vmd_uri == f"vmd:{loader}?type=admin"
    assert '\\"admin\\"' in await content(editor, vmd_uri)
    mark = editor.mark()
    project.write("src/data/b.csv", "bea\n")
    refresh = await editor.wait_for(
        lambda m: m["method"] == "workspace/textDocumentContent/refresh", since=mark
    )
    assert refresh["params"] == {"uri": vmd_uri}
    # vmd/changed goes out too, first, for clients without textDocumentContent.
    changed = [m for m in editor.messages[mark:] if m["method"] == "vmd/changed"]
    assert changed and changed[0]["params"]["id"] == id
    assert '\\"bea\\"' in await content(editor, vmd_uri)


async def test_no_refresh_request_to_a_client_without_text_document_content(
    project: Project, start_daemon: StartDaemon
) -> None:
    daemon = await start_daemon(capabilities={"textDocument": {}})
    loader = users_project(project)
    await command(daemon, "vmd.preview", loader)
    mark = daemon.mark()
    project.write("src/data/a.csv", "ann\n")
    await daemon.changed(loader, since=mark)
    await daemon.roundtrip()  # a refresh would have been sent together with vmd/changed
    assert not any(m["method"].endswith("/refresh") for m in daemon.messages[mark:])
    assert '\\"ann\\"' in (await daemon.load(loader))["code"]


async def test_failing_loader_preview_shows_the_error_and_a_diagnostic_at_its_line(
    project: Project, editor: Daemon
) -> None:
    loader = project.write(
        "src/bad.vmd.py",
        """
        def load(ctx):
            x = 1

            raise ValueError("no rows")
        """,
    )
    mark = editor.mark()
    result = await command(editor, "vmd.preview", loader)
    assert result["code"] is None
    assert result["error"]["line"] == 5 and result["error"]["file"] == loader
    text = await content(editor, result["uri"])
    assert text.startswith(f"// vmd: {loader} failed (error)\n// {loader}:5: ValueError: no rows")
    diag = await editor.wait_for(
        lambda m: m["method"] == "textDocument/publishDiagnostics"
        and m["params"]["uri"] == uri(loader) and m["params"]["diagnostics"] != [],
        since=mark,
    )
    assert diag["params"]["diagnostics"][0]["range"]["start"]["line"] == 4
    # Fixing it refreshes the preview with the module.
    mark = editor.mark()
    project.write("src/bad.vmd.py", "def load(ctx):\n    return 'export default 1;'\n")
    await editor.wait_for(
        lambda m: m["method"] == "workspace/textDocumentContent/refresh", since=mark
    )
    assert await content(editor, result["uri"]) == "export default 1;"


async def test_preview_of_a_file_vmd_may_not_run_is_an_error(
    project: Project, editor: Daemon
) -> None:
    other = project.write("src/plain.py", "print('hi')\n")
    with pytest.raises(RpcError) as err:
        await command(editor, "vmd.preview", other)
    assert err.value.code == -32020
    assert err.value.data["kind"] == "refused"


async def test_code_lenses_offer_one_preview_per_known_id_and_reload(
    project: Project, editor: Daemon
) -> None:
    loader = users_project(project)
    first = await lenses(editor, loader)
    assert [lens["command"]["title"] for lens in first] == ["Preview module", "Reload"]
    assert {lens["range"]["start"]["line"] for lens in first} == {5}  # at `def load`
    assert first[0]["command"] == {"title": "Preview module", "command": "vmd.preview",
                                   "arguments": [loader]}
    mark = editor.mark()
    await editor.load(loader + "?type=admin")
    await editor.load(loader + "?type=user")
    # The client is told that lenses changed when an id appears.
    await editor.wait_for(lambda m: m["method"] == "workspace/codeLens/refresh", since=mark)
    titles = [lens["command"]["title"] for lens in await lenses(editor, loader)]
    assert titles == ["Preview ?type=admin", "Preview ?type=user", "Reload"]
    # No lenses on files vmd would not run.
    helper = project.write("src/helpers.py", "X = 1\n")
    assert await lenses(editor, helper) == []


async def test_code_lenses_follow_the_open_document_text(project: Project, editor: Daemon) -> None:
    loader = users_project(project)
    text = "\n\n\n" + Path(loader).read_text()
    editor.notify("textDocument/didOpen", {"textDocument": {
        "uri": uri(loader), "languageId": "python", "version": 1, "text": text}})
    assert {lens["range"]["start"]["line"] for lens in await lenses(editor, loader)} == {8}


async def test_reload_command_reruns_every_known_id_of_a_loader(
    project: Project, editor: Daemon
) -> None:
    loader = users_project(project)
    one = await editor.load(loader + "?type=a")
    two = await editor.load(loader + "?type=b")
    result = await command(editor, "vmd.reload", uri(loader))
    assert result == {"ids": [loader + "?type=a", loader + "?type=b"], "errors": []}
    assert (await editor.load(loader + "?type=a"))["version"] == one["version"] + 1
    assert (await editor.load(loader + "?type=b"))["version"] == two["version"] + 1
    # An exact id reloads just that one.
    result = await command(editor, "vmd.reload", {"id": loader + "?type=a"})
    assert result["ids"] == [loader + "?type=a"]


async def test_hover_on_a_watch_glob_lists_the_files_it_matches(
    project: Project, editor: Daemon
) -> None:
    loader = users_project(project)

    async def hover(line: int, character: int) -> Any:
        return await editor.call("textDocument/hover", {
            "textDocument": {"uri": uri(loader)},
            "position": {"line": line, "character": character},
        })

    # line 3 (0-based): watch = ["data/*.csv", "missing/*.txt"]
    result = await hover(3, 12)
    value = result["contents"]["value"]
    assert "`data/*.csv` matches 2 files" in value
    assert "- `data/a.csv`" in value and "- `data/b.csv`" in value
    assert result["range"] == {"start": {"line": 3, "character": 9},
                               "end": {"line": 3, "character": 21}}
    assert "matches no file" in (await hover(3, 26))["contents"]["value"]
    assert await hover(6, 4) is None  # not on a glob


async def test_a_hover_walking_a_whole_tree_does_not_hold_up_other_requests(
    project: Project, editor: Daemon
) -> None:
    wide = project.write("src/wide.vmd.py",
                         'watch = ["/usr/**/*"]\n\ndef load(ctx):\n    return ""\n')
    light = project.write("src/light.vmd.py", "def load(ctx):\n    return 'export default 1;'\n")
    await editor.load(light)
    # A first hover, so the editor features are loaded and this measures the walk alone.
    await editor.call("textDocument/hover", {
        "textDocument": {"uri": uri(light)}, "position": {"line": 0, "character": 0},
    })
    hover_id, hovered = editor.start("textDocument/hover", {
        "textDocument": {"uri": uri(wide)}, "position": {"line": 0, "character": 12},
    })
    # /usr holds ~100,000 files here: the walk takes seconds, a cached load a millisecond.
    load_id, loaded = editor.start("vmd/load", {"id": light})
    done = await asyncio.wait_for(loaded, 10)
    assert done["result"]["code"] == "export default 1;"
    assert not hovered.done(), "the hover was answered first: the load waited for its walk"
    value = (await asyncio.wait_for(hovered, 60))["result"]["contents"]["value"]
    assert value.startswith("`/usr/**/*` matches ") and " files:" in value
