"""The two append-only logs besides rewards: catalog changes and user events."""

from __future__ import annotations

import json
from typing import Iterator

import numpy as np

from store.base import guarded, guarded_fast, text
from store.once import Once, mark

Change = tuple[str, dict, "np.ndarray | None", str]  # (stream id, item, vector or None, its embedding space)


class StreamOps:
    # -- catalog changes (items upserted or deleted since the index was built) -----------

    @guarded
    def append_item(self, item: dict, vector: np.ndarray | None, space: str = "") -> str:
        """Record an upsert (with its vector, in embedding `space`) or, with `vector=None` and
        item["deleted"], a deletion."""
        fields = {"item": json.dumps(item, ensure_ascii=False), "space": space}
        if vector is not None:
            fields["vec"] = np.asarray(vector, np.float32).tobytes()
        return text(self.client.xadd(self.key("catalog"), fields))

    def read_items(self, after: str = "0-0", count: int = 10_000, fast: bool = False):
        """Catalog changes strictly after stream id `after`, oldest first: (id, item, vector or None,
        the embedding space of the vector).
        `fast` uses the request-path client (the service's sync), else the normal one (builds)."""
        return (self._read_items_fast if fast else self._read_items)(after, count)

    @guarded
    def _read_items(self, after, count):
        return _items(self.client.xrange(self.key("catalog"), min=f"({after}", count=count))

    @guarded_fast
    def _read_items_fast(self, after, count):
        return _items(self.fast.xrange(self.key("catalog"), min=f"({after}", count=count))

    def item_batches(self, after: str = "0-0", fast: bool = False) -> Iterator[list[Change]]:
        """`read_items` until the end of the stream: lists of up to 10,000 changes, oldest first."""
        while batch := self.read_items(after, fast=fast):
            yield batch
            after = batch[-1][0]

    def iter_items(self, after: str = "0-0", fast: bool = False) -> Iterator[Change]:
        for batch in self.item_batches(after, fast):
            yield from batch

    # -- user events (the input of the next full build) -----------------------------------

    @guarded
    def append_event(self, event: dict, maxlen: int, once: Once | None = None) -> str:
        pipe = self.client.pipeline(transaction=False)
        pipe.xadd(self.key("events"), {"e": json.dumps(event)}, maxlen=maxlen, approximate=True)
        pipe.incr(self.key("events-added"))
        mark(pipe, once, "stream")
        return text(pipe.execute()[0])

    @guarded
    def events_length(self) -> int:
        """How many events the stream holds (what the next full build will read)."""
        return int(self.client.xlen(self.key("events")))

    @guarded
    def events_added(self) -> int:
        """How many events were ever appended (a counter that only grows, unlike the trimmed
        stream; a deployment from before the counter starts it at the stream's length)."""
        added = self.client.get(self.key("events-added"))
        if added is None:
            self.client.set(self.key("events-added"), int(self.client.xlen(self.key("events"))), nx=True)
            added = self.client.get(self.key("events-added"))
        return int(added)

    @guarded
    def read_events(self, after: str = "0-0", count: int = 10_000) -> list[tuple[str, dict]]:
        return [(text(sid), json.loads(f[b"e"]))
                for sid, f in self.client.xrange(self.key("events"), min=f"({after}", count=count)]

    def iter_events(self, after: str = "0-0") -> Iterator[tuple[str, dict]]:
        while batch := self.read_events(after):
            yield from batch
            after = batch[-1][0]


def _items(entries) -> list[tuple[str, dict, np.ndarray | None, str]]:
    out = []
    for sid, fields in entries:
        vec = fields.get(b"vec")
        out.append((text(sid), json.loads(fields[b"item"]),
                    None if vec is None else np.frombuffer(vec, dtype=np.float32), text(fields.get(b"space", b""))))
    return out
