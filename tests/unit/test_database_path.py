"""Which file a `sqlite3.connect` argument names: the database a loader then depends on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vmd.workers.capture import database_path


@pytest.mark.parametrize(
    ("database", "expected"),
    [
        ("/proj/app.db", "/proj/app.db"),
        (b"/proj/app.db", "/proj/app.db"),
        (Path("/proj/app.db"), "/proj/app.db"),
        ("file:/proj/app.db?mode=ro", "/proj/app.db"),
        ("file:///proj/my%20app.db", "/proj/my app.db"),
        ("file://localhost/proj/app.db", "/proj/app.db"),
        (":memory:", None),
        ("", None),  # a temporary database
        ("file::memory:?cache=shared", None),
        ("file:shared?mode=memory", None),
        ("file://elsewhere/proj/app.db", None),
    ],
)
def test_a_connect_argument_names_its_database_file(database: object, expected: str | None) -> None:
    assert database_path(database) == expected


def test_a_relative_database_is_relative_to_the_working_folder() -> None:
    assert database_path("content/app.db") == os.path.join(os.getcwd(), "content/app.db")
