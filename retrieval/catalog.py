"""Every item the service can recommend: the built index version plus the fresh buffer.

Rows 0..n_base-1 are the bundle's items (the index's ids). Items upserted after the build get
new rows in the fresh buffer and are found by exact search; an upsert of a built item
hides its old row (a tombstone), so index results for it are dropped. The buffer is
filled from the catalog change stream in Redis, so every process sees every upsert.
"""

from __future__ import annotations

import threading

import numpy as np

from retrieval.bundle import Bundle
from retrieval.columns import IdMap, Strings

UNTRAINED = "untrained"  # the space of vectors made before any full build
_NEWEST_KEPT = 65_536  # built rows kept sorted by age (enough for fresh_candidates up to ~16k)


class _Grow:
    """A numpy array with amortised appends."""

    def __init__(self, initial: np.ndarray):
        self.data = np.asarray(initial)  # not copied: appends go to a new array, rows are never written
        self.n = len(initial)

    def append(self, row) -> None:
        if self.n == len(self.data):
            shape = (max(16, 2 * len(self.data)),) + self.data.shape[1:]
            bigger = np.zeros(shape, dtype=self.data.dtype)
            bigger[: self.n] = self.data[: self.n]
            self.data = bigger
        self.data[self.n] = row
        self.n += 1

    @property
    def view(self) -> np.ndarray:
        n = self.n  # read before data: a concurrent append only ever grows it
        return self.data[:n]


class _Column:
    """A value per row: the version's rows, read-only (memory-mapped: one copy shared by the
    workers, never written), then the rows appended since, in a growing array of its own."""

    def __init__(self, base: np.ndarray):
        self.base = np.asarray(base)
        self.tail = _Grow(np.zeros((0, *self.base.shape[1:]), dtype=self.base.dtype))

    def append(self, value) -> None:
        self.tail.append(value)

    def __getitem__(self, rows):
        """The values of a row (an int) or of rows (an int array)."""
        n, tail = len(self.base), self.tail.data  # the tail read once: a concurrent append may replace it
        if np.ndim(rows) == 0:
            return self.base[rows] if rows < n else tail[rows - n]
        rows = np.asarray(rows)
        if not len(rows) or rows.max() < n:
            return self.base[rows]
        out = np.empty(len(rows), dtype=self.base.dtype)
        built = rows < n
        out[built] = self.base[rows[built]]
        out[~built] = tail[rows[~built] - n]
        return out

    @property
    def view(self) -> np.ndarray:
        """Every row's value (a new array once rows were appended)."""
        tail = self.tail.view
        return np.concatenate([self.base, tail]) if len(tail) else self.base


_LISTS_KEPT = 64  # lists whose rows `rows_for_list` remembers


def _gather(stored, rows: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR rows (offsets, hashes, values) flattened, each feature tagged with its row's position."""
    offsets, hashes, values = stored
    starts, lengths = offsets[rows], offsets[rows + 1] - offsets[rows]
    ends = np.cumsum(lengths)
    at = np.arange(int(ends[-1]) if len(ends) else 0) + np.repeat(starts - (ends - lengths), lengths)
    return np.repeat(positions, lengths), hashes[at].astype(np.uint64), np.asarray(values[at], dtype=np.float32)


class Catalog:
    """Item rows with their ids, cached VW text, stock, age, and a vector search."""

    def __init__(self, bundle: Bundle | None, dim: int, line_for, embedder=None, hash_line=None):
        self.bundle = bundle
        self.dim = dim
        self.embedder = embedder  # embeds items added later into this catalog's space
        self._line_for = line_for  # item dict -> cached VW feature text
        self._hash_line = hash_line  # cached text -> (hashes, values) as VW hashes it, or None
        self._hashed: dict[int, tuple[np.ndarray, np.ndarray] | None] = {}  # rows added since the build
        self._lock = threading.Lock()
        n = len(bundle.ids) if bundle else 0
        self.n_base = n
        self.ids = bundle.ids.fork() if bundle else Strings.of([])  # shared with the other workers
        self.lines = bundle.lines.fork() if bundle else Strings.of([])
        self.row_of = bundle.row_of.fork(self.ids) if bundle else IdMap.of(self.ids)
        self._live = _Grow(np.ones(n, dtype=bool))
        self._in_stock = _Column(bundle.in_stock if bundle else np.zeros(0, bool))
        self._published = _Column(bundle.published_at if bundle else np.zeros(0, np.int64))
        self.category_names: list[str] = list(bundle.category_names) if bundle else []
        self._category_code = {name: code for code, name in enumerate(self.category_names)}
        self._category = _Column(bundle.category if bundle else np.zeros(0, np.int32))
        self._fresh_vectors = _Grow(np.zeros((0, dim), dtype=np.float32))
        self._fresh_rows = _Grow(np.zeros(0, dtype=np.int64))
        self.cursor = bundle.meta.get("catalog_cursor", "0-0") if bundle else "0-0"
        self._newest_base = self._newest_of_base(_NEWEST_KEPT)
        self._centroids: dict[int, np.ndarray | bool] = {}  # category code -> mean unit vector (False: none)
        self.revision = 0  # one more with every upsert and delete
        self._lists: dict[tuple[str, ...], tuple[int, np.ndarray]] = {}  # `rows_for_list`'s memory

    def __len__(self) -> int:
        """Number of live items."""
        return int(self._live.view.sum())

    def upsert(self, item: dict, vector: np.ndarray, cursor: str | None = None) -> int:
        """Add or replace an item; it is searchable at once. Returns its row.

        Row r >= n_base is fresh-buffer entry r - n_base: every upsert appends one of each."""
        vector = np.asarray(vector, dtype=np.float32)
        if vector.shape != (self.dim,):
            got = vector.shape[0] if vector.ndim == 1 else vector.shape
            raise ValueError(f"item vector has wrong length (expected {self.dim}, got {got})")
        with self._lock:
            old = self.row_of.get(item["item_id"])
            if old is not None:
                self._live.data[old] = False  # tombstone: the index may still return it
            # Readers run concurrently without the lock: every per-row array grows first,
            # and the row becomes visible last, when it is appended to the fresh rows.
            row = len(self.ids)
            self.ids.append(item["item_id"])
            self.lines.append(self._line_for(item))
            self._in_stock.append(bool(item["in_stock"]))
            self._published.append(int(item["published_at"]))
            self._category.append(self._code(item.get("category", "")))
            self._live.append(True)
            self._fresh_vectors.append(vector)
            self.row_of[item["item_id"]] = row  # before it can be found: a filter by rows (`allowed`) hides it then
            self._fresh_rows.append(row)
            self.revision += 1
            if cursor is not None:
                self.cursor = cursor
            return row

    def delete(self, item_id: str, cursor: str | None = None) -> bool:
        """Hide an item at once; True if it existed."""
        with self._lock:
            row = self.row_of.pop(item_id, None)
            if row is not None:
                self._live.data[row] = False
            self.revision += 1
            if cursor is not None:
                self.cursor = cursor
            return row is not None

    def apply(self, changes) -> None:
        """Apply entries of the catalog change stream, (cursor, item, vector or None, its space),
        in their order, each moving the cursor. Upserts whose vector was embedded in another space
        (the item was added while a full build ran) are embedded again in this one, all in one
        batch first: a sentence model embeds a batch far faster than one item at a time."""
        changes = list(changes)
        again = [r for r, (_, item, vector, space) in enumerate(changes)
                 if not item.get("deleted") and (vector is None or space != self.space)]
        vectors = dict(zip(again, self.embedder.embed([changes[r][1] for r in again]))) if again else {}
        for r, (cursor, item, vector, _) in enumerate(changes):
            if item.get("deleted"):
                self.delete(item["item_id"], cursor)
            else:
                self.upsert(item, vectors.get(r, vector), cursor)

    def _code(self, category: str) -> int:
        code = self._category_code.get(category)
        if code is None:
            code = self._category_code[category] = len(self.category_names)
            self.category_names.append(category)
        return code

    def item_features(self, rows) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The rows' cached features hashed (`bundle.features`; rows added since the build are
        hashed once, here), flattened: (owner: the position in `rows` of each feature, hashes
        (uint64), values (float32)). None if this version has none or a line cannot be hashed."""
        stored = self.bundle.features if self.bundle is not None else None
        if self._hash_line is None or (stored is None and self.n_base):
            return None
        rows = np.asarray(rows, dtype=np.int64)
        base = rows < self.n_base
        owner, hashes, values = _gather(stored, rows[base], np.flatnonzero(base)) if self.n_base else \
            (np.zeros(0, np.int64), np.zeros(0, np.uint64), np.zeros(0, np.float32))
        if base.all():
            return owner, hashes, values
        parts = [(owner, hashes, values)]
        for at in np.flatnonzero(~base).tolist():
            row = int(rows[at])
            if row not in self._hashed:
                self._hashed[row] = self._hash_line(self.lines[row])
            one = self._hashed[row]
            if one is None:
                return None
            parts.append((np.full(len(one[0]), at, dtype=np.int64), *one))
        return tuple(np.concatenate(column) for column in zip(*parts))

    def category_codes(self, rows: np.ndarray) -> np.ndarray:
        return self._category[rows]

    def category(self, row: int) -> str:
        return self.category_names[int(self._category[row])]

    def code_of(self, category: str) -> int | None:
        return self._category_code.get(category)

    def vector(self, row: int) -> np.ndarray:
        """The item vector of a row (the bundle's for built items, the buffer's for fresh ones)."""
        if row < self.n_base:
            return np.asarray(self.bundle.vectors[row], dtype=np.float32)
        return self._fresh_vectors.data[row - self.n_base]

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """The item vectors of many rows at once, (len(rows), dim) float32."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        base = rows < self.n_base
        if base.any():
            out[base] = self.bundle.vectors[rows[base]]
        if not base.all():
            out[~base] = self._fresh_vectors.data[rows[~base] - self.n_base]
        return out

    def category_centroid(self, category: str, sample: int = 10_000) -> np.ndarray | None:
        """The mean unit vector of the category's items (of up to `sample` of them, evenly
        spread over the rows; kept per catalog), None for a category without items."""
        code = self._category_code.get(category)
        if code is None:
            return None
        cached = self._centroids.get(code)
        if cached is None:
            rows = np.flatnonzero(self._category.view == code)
            rows = rows[:: max(1, len(rows) // sample)] if len(rows) else rows
            mean = self.vectors(rows).mean(axis=0) if len(rows) else None
            norm = float(np.linalg.norm(mean)) if mean is not None else 0.0
            cached = self._centroids[code] = (mean / norm).astype(np.float32) if norm > 0 else False
        return None if cached is False else cached

    @property
    def space(self) -> str:
        """The embedding space of this catalog's vectors ("untrained" before the first full build)."""
        return self.bundle.space if self.bundle is not None else UNTRAINED

    def available(self, rows: np.ndarray) -> np.ndarray:
        """Mask of rows that may be recommended (live and in stock)."""
        return self._live.data[rows] & self._in_stock[rows]

    def published_at(self, rows: np.ndarray) -> np.ndarray:
        return self._published[rows]

    def search(self, query: np.ndarray, n: int, n_fresh: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows and cosine similarities of the nearest available items, nearest first:
        the index's top `n` merged with the exact top `n_fresh` of the fresh buffer."""
        query = np.asarray(query, dtype=np.float32)
        rows, sims = [], []
        if self.bundle is not None and n > 0:
            r, s = self.bundle.index.search(query, n)
            rows.append(r)
            sims.append(s)
        n_fresh_rows = self._fresh_rows.n  # read first: the vectors hold at least this many rows
        fresh_rows, fresh_vectors = self._fresh_rows.data[:n_fresh_rows], self._fresh_vectors.data[:n_fresh_rows]
        if len(fresh_rows) and n_fresh > 0:
            ok = self.available(fresh_rows)  # before the top-n: replaced rows must not take the slots
            fresh_rows, s = fresh_rows[ok], fresh_vectors[ok] @ query
            top = np.argsort(-s, kind="stable")[:n_fresh]
            rows.append(fresh_rows[top])
            sims.append(s[top])
        if not rows:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        rows, sims = np.concatenate(rows), np.concatenate(sims).astype(np.float32)
        keep = self.available(rows)
        rows, sims = rows[keep], sims[keep]
        order = np.argsort(-sims, kind="stable")
        return rows[order], sims[order]

    def newest(self, n: int) -> np.ndarray:
        """Up to `n` available rows, most recently published first (fresh buffer included)."""
        fresh = self._fresh_rows.view
        fresh = fresh[np.argsort(-self._published[fresh], kind="stable")]
        want = 4 * n + 64
        base = self._newest_base if want <= len(self._newest_base) or len(self._newest_base) == self.n_base \
            else self._newest_of_base(want)
        rows = np.concatenate([fresh, base[:want]])
        rows = rows[self.available(rows)]
        merged = rows[np.argsort(-self._published[rows], kind="stable")]
        return merged[:n]

    def _newest_of_base(self, n: int) -> np.ndarray:
        """The n most recently published built rows, newest first (ties: lower row first)."""
        published = self._published.base
        if n >= self.n_base:
            return np.argsort(-published, kind="stable")
        top = np.argpartition(-published, n - 1)[:n]
        return top[np.lexsort((top, -published[top]))]

    def rows_for(self, item_ids) -> np.ndarray:
        """Rows of the given ids that exist (unknown ids are skipped)."""
        rows = self.row_of.get_many(list(item_ids))
        return rows[rows >= 0]

    def rows_for_list(self, item_ids: list[str]) -> np.ndarray:
        """`rows_for` of a list that comes back request after request (the popularity lists,
        re-read every few seconds): remembered until the catalog changes. A read-only array."""
        key, revision = tuple(item_ids), self.revision
        known = self._lists.get(key)
        if known is not None and known[0] == revision:
            return known[1]
        rows = self.rows_for(key)
        rows.flags.writeable = False
        if len(self._lists) >= _LISTS_KEPT:
            self._lists = {}
        self._lists[key] = (revision, rows)
        return rows
