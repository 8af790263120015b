"""Ids that name nothing vmd may run are refused before a line of them runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from harness import Daemon, Project, StartDaemon

REFUSED = -32020


def marking_loader(marker: Path) -> str:
    """A loader that leaves `marker` behind if any of it (even its top level) ever runs."""
    return (
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "def load(ctx):\n"
        "    return 'export default 1;'\n"
    )


@pytest.fixture
def marker(project: Project) -> Path:
    return project.root.parent / "marker"


async def assert_refused(daemon: Daemon, id: str, marker: Path) -> dict[str, object]:
    error = await daemon.load_error(id)
    assert error.code == REFUSED, error
    assert error.data["kind"] == "refused"
    assert error.data["id"] == id
    assert not marker.exists(), "a refused loader ran"
    return error.data  # type: ignore[no-any-return]


async def test_relative_id_is_refused(project: Project, daemon: Daemon, marker: Path) -> None:
    project.write("a.vmd.py", marking_loader(marker))
    await assert_refused(daemon, "a.vmd.py", marker)


async def test_dotdot_segments_are_refused_even_when_they_resolve_inside(
    project: Project, daemon: Daemon, marker: Path
) -> None:
    project.write("src/a.vmd.py", marking_loader(marker))
    root = str(project.root)  # pathlib would normalise the spellings away
    await assert_refused(daemon, root + "/src/../src/a.vmd.py", marker)
    await assert_refused(daemon, root + "/src/./a.vmd.py", marker)
    await assert_refused(daemon, root + "/src//a.vmd.py", marker)


async def test_dotdot_escaping_the_root_is_refused(
    project: Project, daemon: Daemon, marker: Path
) -> None:
    (project.root.parent / "evil.vmd.py").write_text(marking_loader(marker))
    await assert_refused(daemon, str(project.root) + "/../evil.vmd.py", marker)


async def test_nul_byte_is_refused(project: Project, daemon: Daemon, marker: Path) -> None:
    loader = project.write("a.vmd.py", marking_loader(marker))
    await assert_refused(daemon, loader + "\x00.txt", marker)


async def test_hash_is_refused(project: Project, daemon: Daemon, marker: Path) -> None:
    loader = project.write("a.vmd.py", marking_loader(marker))
    await assert_refused(daemon, loader + "#frag", marker)
    await assert_refused(daemon, loader + "?a=1#frag", marker)


async def test_symlink_pointing_out_of_the_root_is_refused(
    project: Project, daemon: Daemon, marker: Path
) -> None:
    outside = project.root.parent / "outside"
    outside.mkdir()
    (outside / "evil.vmd.py").write_text(marking_loader(marker))
    (project.root / "link.vmd.py").symlink_to(outside / "evil.vmd.py")
    (project.root / "linkdir").symlink_to(outside)
    await assert_refused(daemon, project.path("link.vmd.py"), marker)
    await assert_refused(daemon, project.path("linkdir/evil.vmd.py"), marker)


async def test_symlink_inside_the_root_to_a_loader_inside_is_allowed(
    project: Project, daemon: Daemon
) -> None:
    project.write("src/real.vmd.py", "def load(ctx):\n    return 'export default 7;'\n")
    (project.root / "alias.vmd.py").symlink_to(project.root / "src" / "real.vmd.py")
    result = await daemon.load(project.path("alias.vmd.py"))
    assert result["id"] == project.path("alias.vmd.py")
    assert result["code"] == "export default 7;"


async def test_plain_python_file_is_refused(
    project: Project, daemon: Daemon, marker: Path
) -> None:
    helper = project.write("src/helpers.py", marking_loader(marker))
    await assert_refused(daemon, helper, marker)


async def test_loader_outside_the_include_globs_is_refused(
    project: Project, start_daemon: StartDaemon, marker: Path
) -> None:
    daemon = await start_daemon(options={"include": ["loaders/**/*.vmd.py"]})
    allowed = project.write("loaders/ok.vmd.py", "def load(ctx):\n    return ''\n")
    other = project.write("src/a.vmd.py", marking_loader(marker))
    assert (await daemon.load(allowed))["code"] == ""
    await assert_refused(daemon, other, marker)


async def test_missing_file_is_refused(project: Project, daemon: Daemon, marker: Path) -> None:
    data = await assert_refused(daemon, project.path("nope.vmd.py"), marker)
    assert "does not exist" in str(data["message"])


async def test_folder_is_refused(project: Project, daemon: Daemon, marker: Path) -> None:
    (project.root / "dir.vmd.py").mkdir()
    await assert_refused(daemon, project.path("dir.vmd.py"), marker)


async def test_reload_of_a_refused_id_is_refused_too(
    project: Project, daemon: Daemon, marker: Path
) -> None:
    (project.root.parent / "evil.vmd.py").write_text(marking_loader(marker))
    response = await daemon.exchange(
        "vmd/reload", {"id": str(project.root.parent / "evil.vmd.py"), "data": 1}
    )
    assert response["error"]["code"] == REFUSED
    assert not marker.exists()


async def test_without_a_root_every_module_is_refused(
    project: Project, start_daemon: StartDaemon, marker: Path
) -> None:
    daemon = await start_daemon(root=None)
    loader = project.write("a.vmd.py", marking_loader(marker))
    await assert_refused(daemon, loader, marker)
    assert os.listdir(project.root) == ["a.vmd.py"]
