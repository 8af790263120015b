"""Every CSV under content/users/ as one JSON array; `?role=admin` filters by role.

Edit or add a CSV and every page importing this module updates.
"""

import csv
from pathlib import Path

import vmd
from tables import typed_row

watch = ["../../content/users/*.csv"]


def load(ctx: vmd.Context) -> str:
    rows = []
    for name in ctx.watched_files:
        with open(ctx.path.parent / name, newline="", encoding="utf-8") as f:
            rows.extend(typed_row(row) for row in csv.DictReader(f))
    role = ctx.query.get("role")
    if role:
        rows = [row for row in rows if row["role"] == role]
    rows.sort(key=lambda row: row["joined"])
    return vmd.json_module(rows)
