"""The store's table of module records: by id, by loader file, and which to forget first.

Plain ids are bounded by the loader files on disk; ids with a query are not (a page may ask
for `?n=1` … `?n=100000`), so the table keeps at most `max_query_ids` of them (`<= 0`: all),
forgetting the least recently loaded first.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator

from vmd.confine import ModuleId
from vmd.record import Outcome, Record


class Table:
    """Module records by id; `Store` is its only user."""

    def __init__(self, max_query_ids: int = 0) -> None:
        self.max_query_ids = max_query_ids
        self._by_id: dict[str, Record] = {}
        self._of_loader: dict[str, list[Record]] = {}  # loader real path -> its records
        # Ids with a query, least recently loaded first.
        self._recent: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._floor = 0  # the highest version forgotten: new records' versions start above it

    def __contains__(self, id: str) -> bool:
        return id in self._by_id

    def __getitem__(self, id: str) -> Record:
        return self._by_id[id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_id)

    def get(self, id: str) -> Record | None:
        return self._by_id.get(id)

    def values(self) -> list[Record]:
        return list(self._by_id.values())

    def of_loader(self, loader: str) -> list[Record]:
        """The records of the loader at real path `loader`."""
        return list(self._of_loader.get(loader, ()))

    def add(self, mid: ModuleId) -> Record:
        """A new record for `mid`, its versions above any forgotten one's (a client that saw
        an id before it was forgotten must see its next output as newer)."""
        rec = Record(mid, Outcome(id=mid.id, loader=mid.real, version=self._floor),
                     just_confined=True, first=self._floor + 1)
        self._by_id[mid.id] = rec
        self._of_loader.setdefault(rec.loader, []).append(rec)
        if mid.query:
            self._recent[mid.id] = None
        return rec

    def touch(self, id: str) -> None:
        """`id` was loaded just now: the last of its kind to forget."""
        if id in self._recent:
            self._recent.move_to_end(id)

    def forget_beyond(self, keep: Callable[[Record], bool]) -> list[Record]:
        """Remove the least recently loaded records with a query beyond `max_query_ids`,
        skipping those to `keep` (in use): fewer when too many are. Returns those removed."""
        excess = len(self._recent) - self.max_query_ids if self.max_query_ids > 0 else 0
        out: list[Record] = []
        for id in self._recent:
            if len(out) >= excess:
                break
            if not keep(rec := self._by_id[id]):
                out.append(rec)
        for rec in out:
            del self._recent[rec.id], self._by_id[rec.id]
            siblings = self._of_loader[rec.loader]
            siblings.remove(rec)
            if not siblings:
                del self._of_loader[rec.loader]
            self._floor = max(self._floor, rec.version)
        return out
