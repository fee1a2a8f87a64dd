"""What a full build reads: the catalog file folded with the items changed through the API,
profiles set through `PUT /users`, the interaction file followed by the event stream, and
(for a refit) the files the last full build read."""

from __future__ import annotations

from pathlib import Path

from banditrec.config import Config
from banditrec.errors import DataError
from retrieval.bundle import current_path, read_meta
from retrieval.data import Interactions, read_interactions
from store import Store, stream_id


def fold_upserts(items: dict[str, dict], store: Store, config: Config) -> tuple[dict[str, dict], str]:
    """The file is the catalog; API changes (upserts, deletions) made since the last build
    override it, and items that exist only through the API are kept. Returns items and cursor."""
    previous = current_path(config.data.path)
    since = stream_id(read_meta(previous).get("full_cursor", "0-0")) \
        if previous else (0, 0)  # the last *full* build: incremental ones did not consult the file
    in_file = set(items)
    cursor = "0-0"
    for cursor, item, _, _ in store.iter_items():
        if item["item_id"] not in in_file or stream_id(cursor) > since:
            items[item["item_id"]] = item
    return items, cursor


def stored_profiles(store: Store, user_ids: list[str], known: dict) -> dict[str, dict]:
    """Profiles set through `PUT /users` for users the users file does not describe."""
    out = {}
    for batch in range(0, len(user_ids), 1000):
        ids = [u for u in user_ids[batch:batch + 1000] if u not in known]
        for user_id, profile in zip(ids, store.profiles(ids)):
            if profile:
                out[user_id] = profile
    return out


def read_all_interactions(store: Store, path: Path | None) -> tuple[Interactions, int]:
    """The interaction log file (if any) followed by every event recorded through the API,
    and how many rows came from the file."""
    file_rows = read_interactions(path).rows() if path else []
    stream_rows = ((e["user_id"], e["item_id"], e["type"], e["timestamp"]) for _, e in store.iter_events())
    return Interactions.from_rows(list(file_rows) + list(stream_rows)), len(file_rows)


def still_there(path: str | None, what: str) -> Path | None:
    """A file the last full build read, for a refit; a clear error when it is gone (a refit
    without it would drop that history from the embeddings, users and popularity)."""
    if not path or path == "None":
        return None
    if not Path(path).exists():
        raise DataError(f"the {what} file of the last full build ({path}) is gone: a refit without it would lose "
                        f"that history; run `banditrec build --catalog ... --{what} ...` with it")
    return Path(path)
