"""Item ids and feature lines in memory-mapped files, and the id -> row map over them
(retrieval/columns.py)."""

import numpy as np
import pytest

from retrieval import columns
from retrieval.columns import IdMap, Strings

IDS = ["sku-1", "ünï cödé", "", "sku|2", "x" * 300, "sku-1b"]


def test_strings_written_and_mapped_read_back_row_by_row(tmp_path):
    Strings.write(IDS, tmp_path, "ids")
    ids = Strings.load(tmp_path, "ids")
    assert len(ids) == len(IDS) and list(ids) == IDS
    assert ids[np.int64(1)] == "ünï cödé" and ids[-1] == "sku-1b"
    forked = ids.fork()
    forked.append("new")
    assert len(forked) == len(IDS) + 1 and forked[len(IDS)] == "new" and forked[-1] == "new"
    assert len(ids) == len(IDS)  # the original does not see the fork's appends
    with pytest.raises(IndexError):
        ids[len(IDS)]


def test_many_rows_taken_at_once_mix_built_and_appended_rows_in_order(tmp_path):
    Strings.write(IDS, tmp_path, "ids")
    ids = Strings.load(tmp_path, "ids").fork()
    for text in ("new-0", "nëw-1"):
        ids.append(text)
    every = IDS + ["new-0", "nëw-1"]
    rows = np.array([7, 0, 6, 1, 1, 4, 7, 2, 5])
    assert ids.take(rows) == [every[r] for r in rows]
    assert ids.take(np.array([6, 7])) == ["new-0", "nëw-1"] and ids.take(np.array([3])) == ["sku|2"]
    with pytest.raises(IndexError):
        ids.take(np.array([0, 8]))


def test_empty_columns_map_too(tmp_path):
    Strings.write([], tmp_path, "lines")
    IdMap.write([], tmp_path)
    lines = Strings.load(tmp_path, "lines")
    assert len(lines) == 0 and list(lines) == []
    row_of = IdMap.load(lines, tmp_path)
    assert row_of.get("a") is None and "a" not in row_of


def test_id_map_finds_every_row_and_nothing_else(tmp_path):
    Strings.write(IDS, tmp_path, "ids")
    IdMap.write(IDS, tmp_path)
    ids = Strings.load(tmp_path, "ids")
    row_of = IdMap.load(ids, tmp_path)
    assert [row_of[i] for i in IDS] == list(range(len(IDS)))
    assert row_of.get("sku-") is None and "sku-2" not in row_of and row_of.get("nope", -1) == -1
    with pytest.raises(KeyError):
        row_of["nope"]


def test_id_map_changes_sit_on_top_of_the_built_rows(tmp_path):
    Strings.write(IDS, tmp_path, "ids")
    IdMap.write(IDS, tmp_path)
    base = IdMap.load(Strings.load(tmp_path, "ids"), tmp_path)
    row_of = base.fork(Strings.load(tmp_path, "ids"))
    assert row_of.pop("sku-1") == 0 and "sku-1" not in row_of and row_of.pop("sku-1") is None
    row_of["sku-1"] = 9
    row_of["brand-new"] = 10
    assert row_of["sku-1"] == 9 and row_of["brand-new"] == 10
    assert base["sku-1"] == 0 and "brand-new" not in base  # the fork's changes are its own


def test_rows_remembered_by_get_many_give_way_to_later_changes_and_are_bounded(tmp_path, monkeypatch):
    """`get_many` remembers the built rows it found (shared by the forks: built rows are the
    same in every one); a fork's removals and re-additions still come first, and the memory is
    forgotten whole when it would pass `_MEMO_MAX` ids."""
    monkeypatch.setattr(columns, "_MEMO_MAX", 4)
    Strings.write(IDS, tmp_path, "ids")
    IdMap.write(IDS, tmp_path)
    base = IdMap.load(Strings.load(tmp_path, "ids"), tmp_path)
    asked = ["sku-1", "sku|2", "nope", "sku-1b"]
    assert base.get_many(asked).tolist() == [0, 3, -1, 5]
    assert base._memo == {"sku-1": 0, "sku|2": 3, "sku-1b": 5}  # built rows only, not the misses
    row_of = base.fork(Strings.load(tmp_path, "ids"))
    row_of.pop("sku-1")
    row_of["sku|2"] = 9
    assert row_of.get_many(asked).tolist() == [-1, 9, -1, 5]
    assert base.get_many(asked).tolist() == [0, 3, -1, 5]  # the fork's changes are its own
    assert base.get_many(["", "x" * 300]).tolist() == [2, 4]
    assert base._memo == {"": 2, "x" * 300: 4}  # 5 would pass 4: forgotten, then these
    assert base.get_many(IDS, remember=False).tolist() == list(range(len(IDS)))  # (a scan)
    assert base._memo == {"": 2, "x" * 300: 4}
    fresh = IdMap.load(Strings.load(tmp_path, "ids"), tmp_path)
    assert fresh.get_many(IDS).tolist() == list(range(len(IDS))) and fresh._memo == {}  # 6 found: more than it keeps


def test_a_hash_collision_is_resolved_by_comparing_the_ids(monkeypatch):
    ids = Strings.of(["a", "b", "c"])
    monkeypatch.setattr(columns, "_hash_bytes", lambda data: 7)  # every id collides
    row_of = IdMap(ids, np.array([7, 7, 7], np.uint64), np.array([0, 1, 2]))
    assert [row_of.get(i) for i in ("a", "b", "c", "d")] == [0, 1, 2, None]


def test_in_memory_map_keeps_the_last_row_of_a_duplicate_id():
    row_of = IdMap.of(Strings.of(["a", "b", "a"]))
    assert row_of["a"] == 2 and row_of["b"] == 1


def test_take_reads_many_rows_at_once_built_and_appended(tmp_path):
    Strings.write(IDS, tmp_path, "ids")
    ids = Strings.load(tmp_path, "ids").fork()
    ids.append("later")
    assert ids.take(np.array([3, 0, 3])) == ["sku|2", "sku-1", "sku|2"]
    assert ids.take([6, 1]) == ["later", "ünï cödé"] and ids.take([]) == []
    with pytest.raises(IndexError):
        ids.take([7])


def test_get_many_agrees_with_get_on_every_path(tmp_path, monkeypatch):
    ids = IDS + ["dup", "dup"]
    Strings.write(ids, tmp_path, "ids")
    IdMap.write(ids, tmp_path)
    strings = Strings.load(tmp_path, "ids")
    row_of = IdMap.load(strings, tmp_path).fork(strings)
    row_of.pop("sku|2")
    row_of["sku-1"] = 42
    row_of["added"] = 43
    asked = ["sku-1", "sku|2", "added", "dup", "", "nope", "ünï cödé", "x" * 300]
    assert row_of.get_many(asked).tolist() == [row_of.get(i, -1) for i in asked] == [42, -1, 43, 7, 2, -1, 1, 4]
    assert row_of.get_many([]).tolist() == []
    monkeypatch.setattr(columns, "_hash_bytes", lambda data: 7)  # every id collides
    colliding = IdMap(Strings.of(["a", "b", "c"]), np.array([7, 7, 7], np.uint64), np.array([0, 1, 2]))
    assert colliding.get_many(["c", "a", "d"]).tolist() == [2, 0, -1]
    alone = IdMap(Strings.of(["a"]), np.array([7], np.uint64), np.array([0]))  # one id per hash: confirmed by bytes
    assert alone.get_many(["z", "a"]).tolist() == [-1, 0]
    assert IdMap.of(Strings.of(["a", "b"])).get_many(["b", "z"]).tolist() == [1, -1]


def test_rows_a_caller_names_or_remembers_for_itself_are_kept_as_get_many_keeps_them(tmp_path, monkeypatch):
    """`remember`: the rows of a slate's items, noted by the process that has them (built rows
    only; a later change still comes first). `get_many(memo=)`: a caller's own memory (the
    popularity list's ids), filled and read instead of the map's, without its bound."""
    monkeypatch.setattr(columns, "_MEMO_MAX", 4)
    Strings.write(IDS, tmp_path, "ids")
    IdMap.write(IDS, tmp_path)
    base = IdMap.load(Strings.load(tmp_path, "ids"), tmp_path)
    base.remember(["sku-1", "sku|2", "added-later"], np.array([0, 3, 6]))
    assert base._memo == {"sku-1": 0, "sku|2": 3}  # row 6 is not a built row
    row_of = base.fork(Strings.load(tmp_path, "ids"))
    row_of.pop("sku-1")
    assert row_of.get_many(["sku-1", "sku|2"]).tolist() == [-1, 3]
    base.remember(IDS[:3], np.arange(3))  # 5 would pass 4: forgotten, then these
    assert base._memo == {IDS[0]: 0, IDS[1]: 1, IDS[2]: 2}
    own: dict[str, int] = {}
    assert base.get_many(IDS, memo=own).tolist() == list(range(len(IDS)))
    assert own == {item_id: row for row, item_id in enumerate(IDS)}  # all 6: a caller's memory is not bounded
    assert base._memo == {IDS[0]: 0, IDS[1]: 1, IDS[2]: 2}  # the map's own is untouched
