"""Per-row strings of an index version (item ids, cached feature lines) and the id -> row map,
in memory-mapped files, so that N worker processes share one copy through the page cache
instead of each holding a million Python strings and a dict.

    <name>.bin        the strings, UTF-8, back to back
    <name>.off.npy    int64 offsets: row r is bytes off[r]:off[r+1]
    ids.hash.npy      uint64 hashes of the ids, sorted (blake2b, 8 bytes: stable across processes)
    ids.order.npy     int64 rows in that order

Rows appended after the build (items upserted through the API) live in ordinary Python
objects on top; they are few between builds.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import mmap
import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np


def _stable_hash(text: str) -> int:
    return _hash_bytes(text.encode("utf-8"))


def _hash_bytes(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def _save(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as fh:  # np.save on a path would append ".npy" to names like "ids.off"
        np.save(fh, array)


def mapped(path: Path) -> np.ndarray:
    """A .npy file memory-mapped read-only, as a plain ndarray view of the map: indexing a
    np.memmap costs microseconds per call in its subclass hooks (tens per request)."""
    return np.asarray(np.load(path, mmap_mode="r"))


def _map(path: Path):
    """A read-only map of a file (b"" for an empty one, which mmap refuses)."""
    if os.path.getsize(path) == 0:
        return b""
    with open(path, "rb") as fh:
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)


_MEMO_MAX = 20_000  # ids an IdMap remembers the built row of (~2 MB); forgotten all at once when full


class Strings:
    """Strings by row: the built rows from a blob and offsets, later rows from a list."""

    def __init__(self, blob, offsets: np.ndarray):
        self._blob = blob
        self._offsets_array = np.asarray(offsets, dtype=np.int64)
        self._offsets = memoryview(np.ascontiguousarray(self._offsets_array))  # fast scalar reads
        self._n = len(offsets) - 1
        self._extra: list[str] = []

    @staticmethod
    def write(strings: Iterable[str], directory: Path, name: str) -> None:
        encoded = [s.encode("utf-8") for s in strings]
        (Path(directory) / f"{name}.bin").write_bytes(b"".join(encoded))
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=offsets[1:])
        _save(Path(directory) / f"{name}.off.npy", offsets)

    @classmethod
    def load(cls, directory: Path, name: str) -> "Strings":
        return cls(_map(Path(directory) / f"{name}.bin"),
                   mapped(Path(directory) / f"{name}.off.npy"))

    @classmethod
    def of(cls, strings: Iterable[str]) -> "Strings":
        """In memory (an index version written by an older release, tests)."""
        encoded = [s.encode("utf-8") for s in strings]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=offsets[1:])
        return cls(b"".join(encoded), offsets)

    def __len__(self) -> int:
        return self._n + len(self._extra)

    def __getitem__(self, row) -> str:
        row = int(row)
        if row < 0:
            row += len(self)
        if 0 <= row < self._n:
            return self._blob[self._offsets[row]:self._offsets[row + 1]].decode("utf-8")
        return self._extra[row - self._n]

    def take(self, rows) -> list[str]:
        """The strings of many rows at once (the request path: ~1000 per request)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if not len(rows):
            return []
        if rows.min() < 0 or rows.max() >= len(self):
            raise IndexError(f"row out of range 0..{len(self) - 1}")
        n = self._n
        if rows.max() < n:  # built rows only
            return self._built(rows)
        # some rows appended since the build (items upserted through the API: the fresh candidates)
        texts, extra = iter(self._built(rows[rows < n])), self._extra
        return [next(texts) if r < n else extra[r - n] for r in rows.tolist()]

    def _built(self, rows: np.ndarray) -> list[str]:
        """The strings of built rows, decoded in one pass."""
        blob, offsets = self._blob, self._offsets_array
        return [blob[a:b].decode("utf-8") for a, b in zip(offsets[rows].tolist(), offsets[rows + 1].tolist())]

    def take_bytes(self, rows: np.ndarray) -> list[bytes]:
        """`take` as UTF-8, not decoded (to compare with encoded strings)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if len(rows) and 0 <= rows.min() and rows.max() < self._n:
            blob, offsets = self._blob, self._offsets_array
            return [blob[a:b] for a, b in zip(offsets[rows].tolist(), offsets[rows + 1].tolist())]
        return [text.encode("utf-8") for text in self.take(rows)]

    def __iter__(self) -> Iterator[str]:
        return (self[r] for r in range(len(self)))

    def append(self, text: str) -> None:
        self._extra.append(text)

    def fork(self) -> "Strings":
        """The same built rows (shared), with appends of its own from here on."""
        other = Strings.__new__(Strings)
        other._blob, other._offsets, other._offsets_array = self._blob, self._offsets, self._offsets_array
        other._n, other._extra = self._n, list(self._extra)
        return other


class IdMap:
    """item id -> row, like a dict: a hash table of the built rows (sorted hashes, binary
    search, the id compared on a hit), with later additions and removals in a dict on top."""

    def __init__(self, ids: Strings, hashes: np.ndarray, order: np.ndarray):
        self._ids = ids
        self._hashes = hashes
        self._hash_view = memoryview(np.ascontiguousarray(hashes, dtype=np.uint64))
        self._order = memoryview(np.ascontiguousarray(order, dtype=np.int64))
        self._changed: dict[str, int | None] = {}  # None: removed
        # Built rows found by `get_many` (they never change; `_changed` still comes first): the ids a
        # request looks up again and again (the slates' items in the exposure log) skip the hash.
        self._memo: dict[str, int] = {}

    @staticmethod
    def write(ids: list[str], directory: Path) -> None:
        hashes = np.fromiter((_stable_hash(i) for i in ids), dtype=np.uint64, count=len(ids))
        order = np.argsort(hashes, kind="stable")
        _save(Path(directory) / "ids.hash.npy", hashes[order])
        _save(Path(directory) / "ids.order.npy", order.astype(np.int64))

    @classmethod
    def load(cls, ids: Strings, directory: Path) -> "IdMap":
        return cls(ids, mapped(Path(directory) / "ids.hash.npy"), mapped(Path(directory) / "ids.order.npy"))

    @classmethod
    def of(cls, ids: Strings) -> "IdMap":
        """Built in memory from `ids` (duplicates: the last row wins, as a dict would have it)."""
        built = cls(ids, np.zeros(0, np.uint64), np.zeros(0, np.int64))
        for row, item_id in enumerate(ids):
            built._changed[item_id] = row
        return built

    def fork(self, ids: Strings) -> "IdMap":
        """The same built rows (shared) over `ids` (a fork of this map's), with changes of its own."""
        other = IdMap.__new__(IdMap)
        other._ids, other._hashes, other._hash_view, other._order = ids, self._hashes, self._hash_view, self._order
        other._changed = dict(self._changed)
        other._memo = self._memo  # built rows: the same in every fork
        return other

    def _base(self, item_id: str) -> int | None:
        h = _stable_hash(item_id)
        i = bisect.bisect_left(self._hash_view, h)
        found = None
        while i < len(self._hash_view) and self._hash_view[i] == h:
            row = self._order[i]
            if self._ids[row] == item_id:
                found = row if found is None else max(found, row)  # a duplicate id: the last row
            i += 1
        return found

    def get_many(self, item_ids: list[str], remember: bool = True, memo: dict[str, int] | None = None) -> np.ndarray:
        """Rows of many ids at once (-1 where unknown): the hashes searched in one numpy call,
        each hit confirmed by its id's bytes; overlays, collisions and misses take the exact path.
        The built rows found are remembered for the next calls unless `remember` is false (a
        scan of every item would only push out the ids requests look up again and again), in
        the caller's own `memo` if given (a list looked up again and again, as large as this
        map's own memo), unbounded: the caller keeps it to the ids it asks for."""
        own = memo is None
        memo = self._memo if own else memo
        out = np.fromiter(map(memo.get, item_ids, itertools.repeat(-1)), dtype=np.int64, count=len(item_ids))
        todo = np.flatnonzero(out < 0)
        sorted_hashes, n = np.asarray(self._hashes), len(self._hashes)
        if n and len(todo):
            asked = [item_ids[i] for i in todo.tolist()]
            encoded = [item_id.encode("utf-8") for item_id in asked]
            hashes = np.fromiter(map(_hash_bytes, encoded), dtype=np.uint64, count=len(encoded))
            at = np.minimum(np.searchsorted(sorted_hashes, hashes), n - 1)
            shared = (at + 1 < n) & (sorted_hashes[np.minimum(at + 1, n - 1)] == hashes)  # a collision
            hit = np.flatnonzero((sorted_hashes[at] == hashes) & ~shared)
            rows = np.asarray(self._order)[at[hit]]
            same = np.fromiter((found == encoded[i] for found, i in zip(self._ids.take_bytes(rows), hit.tolist())),
                               dtype=bool, count=len(hit))
            confirmed = hit[same]  # positions in `asked`
            out[todo[confirmed]] = rows[same]
            if remember and not own:
                memo.update(zip([asked[i] for i in confirmed.tolist()], rows[same].tolist()))
            elif remember and len(confirmed) <= _MEMO_MAX:
                self._keep(zip([asked[i] for i in confirmed.tolist()], rows[same].tolist()))
        exact = np.flatnonzero(out < 0).tolist()
        if self._changed:
            exact = sorted(set(exact).union(i for i, item_id in enumerate(item_ids) if item_id in self._changed))
        for i in exact:
            row = self.get(item_ids[i])
            out[i] = -1 if row is None else row
        return out

    def remember(self, item_ids: list[str], rows: np.ndarray) -> None:
        """Note that these ids have these rows (a slate's items, whose rows the caller has), so
        that looking them up again skips the hash (the exposure log names a slate's items to
        every process that keeps counts, the one that showed them included). Only built rows
        are kept, as `get_many` keeps them; an id changed since still takes the exact path."""
        n = len(self._hashes)
        self._keep([(item_id, row) for item_id, row in zip(item_ids, np.asarray(rows).tolist()) if 0 <= row < n])

    def _keep(self, pairs) -> None:
        """Add (id, built row) pairs to this map's memo, forgotten whole first when they would
        pass `_MEMO_MAX` ids."""
        pairs = list(pairs)
        if len(self._memo) + len(pairs) > _MEMO_MAX:
            self._memo.clear()
        self._memo.update(pairs)

    def get(self, item_id: str, default=None):
        if item_id in self._changed:
            row = self._changed[item_id]
        else:
            row = self._base(item_id)
        return default if row is None else row

    def __contains__(self, item_id: str) -> bool:
        return self.get(item_id) is not None

    def __getitem__(self, item_id: str) -> int:
        row = self.get(item_id)
        if row is None:
            raise KeyError(item_id)
        return row

    def __setitem__(self, item_id: str, row: int) -> None:
        self._changed[item_id] = row

    def pop(self, item_id: str, default=None):
        row = self.get(item_id)
        if row is None:
            return default
        self._changed[item_id] = None
        return row
