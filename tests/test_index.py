"""Annoy search (retrieval/index.py), index versions on disk (retrieval/bundle.py) and the
live catalog with its fresh buffer (retrieval/catalog.py)."""

import json

import numpy as np
import pytest

from bandit.features import item_line
from banditrec.config import EmbeddingConfig, IndexConfig
from retrieval.bundle import current_path, index_root, load_bundle, read_items, write_bundle
from retrieval.catalog import Catalog
from retrieval.demo import generate_world
from retrieval.embeddings import ItemEmbedder
from retrieval.index import VectorIndex, build_index, built_kinds
from retrieval.ivf import nearest_first

CFG = EmbeddingConfig(content_dim=16, collab_dim=16)
DIM = CFG.dim
NOW = 1_700_000_000


def _unit(x):
    x = np.asarray(x, dtype=np.float64)
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


# --- the index kinds ----------------------------------------------------------------------------

KINDS = ("ivf", "annoy")


@pytest.fixture(scope="module")
def clustered(tmp_path_factory):
    """3000 unit vectors in 30 clusters (dim 32), 100 queries, both kinds built with the defaults."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(30, 32))
    vectors = _unit(centres[rng.integers(0, 30, 3000)] + 0.5 * rng.normal(size=(3000, 32)))
    queries = _unit(centres[rng.integers(0, 30, 100)] + 0.5 * rng.normal(size=(100, 32)))
    directory = tmp_path_factory.mktemp("index")
    defaults = IndexConfig()
    for kind in KINDS:
        build_index(kind, vectors, directory, n_trees=defaults.n_trees, nlist=defaults.nlist, seed=defaults.build_seed)
    assert built_kinds(directory) == ["ivf", "annoy"]
    return vectors, queries, directory


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("search_k", [IndexConfig().search_k, 600])
def test_recall_against_exact_search(clustered, kind, search_k):
    vectors, queries, directory = clustered
    index = VectorIndex(directory, 32, search_k=search_k, kind=kind)
    assert index.n_items == 3000 and index.kind == kind and not index.exact
    recalls = []
    for q in queries:
        ids, sims = index.search(q, 50)
        assert len(ids) == 50 and len(set(ids.tolist())) == 50
        exact = np.argsort(-(vectors @ q))[:50]
        recalls.append(len(set(ids.tolist()) & set(exact.tolist())) / 50)
    index.close()
    assert np.mean(recalls) >= 0.9  # 1.0 with the defaults (everything scanned at 3000 items)
    assert min(recalls) >= 0.6


def test_ivf_search_k_bounds_the_scan(clustered):
    """search_k 0 scans one partition, the query's own: an item's vector finds itself; -1 scans
    them all, which is exact search."""
    vectors, queries, directory = clustered
    index = VectorIndex(directory, 32, search_k=0, kind="ivf")
    for row in (0, 17, 2999):
        assert index.search(vectors[row], 1)[0].tolist() == [row]
    index.search_k = -1
    for q in queries[:10]:
        assert index.search(q, 100)[0].tolist() == np.argsort(-(vectors @ q), kind="stable")[:100].tolist()


@pytest.mark.parametrize("size,n", [(5, 2), (5, 9), (4096, 10), (20_000, 200), (20_000, 2500), (50_000, 1)])
def test_the_n_largest_are_chosen_exactly_as_a_full_sort_would(size, n):
    """The cut guessed from a sample never loses one of the n largest: every draw (many ties,
    one value, a sorted run) gives what a stable sort of all of them gives."""
    rng = np.random.default_rng(size + n)
    for sims in (rng.normal(size=size).astype(np.float32), rng.integers(0, 7, size).astype(np.float32),
                 np.zeros(size, np.float32), np.sort(rng.random(size)), np.sort(rng.random(size))[::-1]):
        assert nearest_first(sims, n).tolist() == np.argsort(-sims, kind="stable")[:n].tolist()
        sims = sims.astype(np.float64)
        sims[::3] = np.nan  # last, as the sort puts NaN
        assert nearest_first(sims, n).tolist() == np.argsort(-sims, kind="stable")[:n].tolist()
    assert nearest_first(np.ones(size), 0).tolist() == []


@pytest.mark.parametrize("kind", KINDS)
def test_similarities_are_exact_cosines_nearest_first(clustered, kind):
    vectors, queries, directory = clustered
    index = VectorIndex(directory, 32, search_k=IndexConfig().search_k, kind=kind)
    for q in queries[:20]:
        ids, sims = index.search(q, 50)
        assert ids.dtype == np.int64
        np.testing.assert_allclose(sims, vectors[ids] @ q, atol=1e-4)
        assert (np.diff(sims) <= 1e-6).all()
    index.close()


@pytest.mark.parametrize("kind", KINDS)
def test_search_edge_sizes(clustered, tmp_path, kind):
    vectors, queries, directory = clustered
    index = VectorIndex(directory, 32, kind=kind)
    assert [len(a) for a in index.search(queries[0], 0)] == [0, 0]
    index.close()
    build_index(kind, vectors[:3], tmp_path, n_trees=5)
    small = VectorIndex(tmp_path, 32, kind=kind)
    ids, sims = small.search(vectors[1], 10)
    assert sorted(ids.tolist()) == [0, 1, 2]  # asking for more than there are gives all of them
    assert ids[0] == 1 and sims[0] == pytest.approx(1.0, abs=1e-5)
    small.close()


def test_a_version_without_the_configured_kind_is_searched_with_the_one_it_has(clustered, tmp_path, caplog):
    vectors, queries, _ = clustered
    build_index("annoy", vectors[:500], tmp_path, n_trees=10)  # as an older release built it
    index = VectorIndex(tmp_path, 32, kind="ivf")
    assert index.kind == "annoy" and "has no ivf index" in caplog.text
    assert len(index.search(queries[0], 10)[0]) == 10
    with pytest.raises(FileNotFoundError, match="no index files"):
        VectorIndex(tmp_path / "missing", 32)
    with pytest.raises(ValueError, match="unknown index kind"):
        build_index("hnsw", vectors, tmp_path)


@pytest.mark.parametrize("kind", KINDS)
def test_build_is_deterministic_for_a_seed(clustered, tmp_path, kind):
    vectors, queries, _ = clustered
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        build_index(kind, vectors[:500], tmp_path / name, n_trees=10, nlist=20, seed=3)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files and all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)


# --- bundles ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shop():
    """400 catalog items, every 10th out of stock, with untrained (content) vectors."""
    world = generate_world(n_items=400, n_users=5, n_categories=8, seed=11, now=NOW, mean_events_per_user=2)
    items = [dict(item, in_stock=(r % 10 != 0)) for r, item in enumerate(world.items)]
    embedder = ItemEmbedder.untrained(CFG)
    return items, embedder.embed(items), [item_line(i) for i in items], embedder


def _write(data_dir, shop, **kwargs):
    items, vectors, lines, embedder = shop
    args = dict(items=items, vectors=vectors, lines=lines, embedder=embedder,
                meta={"catalog_cursor": "12-0", "built_at": NOW}, n_trees=10, seed=1)
    args.update(kwargs)
    return write_bundle(data_dir, **args)


def test_bundle_round_trips(tmp_path, shop):
    items, vectors, lines, embedder = shop
    assert current_path(tmp_path) is None  # nothing built yet
    path = _write(tmp_path, shop)
    assert current_path(tmp_path) == path
    bundle = load_bundle(path, search_k=-1)
    assert bundle.version == "v000001"
    assert list(bundle.ids) == [i["item_id"] for i in items]
    assert list(bundle.lines) == lines
    assert all(bundle.row_of[i["item_id"]] == r for r, i in enumerate(items))
    np.testing.assert_array_equal(bundle.vectors, vectors)
    assert bundle.vectors.dtype == np.float32
    np.testing.assert_array_equal(bundle.in_stock, [i["in_stock"] for i in items])
    np.testing.assert_array_equal(bundle.published_at, [i["published_at"] for i in items])
    assert bundle.meta["n_items"] == len(items) and bundle.meta["dim"] == DIM
    assert bundle.meta["catalog_cursor"] == "12-0" and bundle.meta["version"] == "v000001"
    assert read_items(path) == items
    np.testing.assert_array_equal(bundle.embedder.embed(items[:10]), embedder.embed(items[:10]))
    ids, sims = bundle.index.search(vectors[7], 1)
    assert ids.tolist() == [7] and sims[0] == pytest.approx(1.0, abs=1e-5)
    bundle.index.close()


def test_per_row_attributes_are_mapped_read_only_and_appends_leave_them_alone(tmp_path, shop):
    items, vectors, lines, embedder = shop
    bundle = load_bundle(_write(tmp_path, shop), search_k=-1)
    for column in (bundle.in_stock, bundle.published_at, bundle.category, bundle.popularity):
        assert not column.flags.writeable  # the file's pages, one copy for every worker, not a copy each
    catalog = Catalog(bundle, DIM, item_line)
    row = catalog.upsert(_new_item("new-1", published_at=NOW + 5, in_stock=False, category="hats"), vectors[0])
    rows = np.array([3, row, 0, 10])
    np.testing.assert_array_equal(catalog.published_at(rows), [items[3]["published_at"], NOW + 5,
                                                               items[0]["published_at"], items[10]["published_at"]])
    assert catalog.available(rows).tolist() == [items[3]["in_stock"], False, items[0]["in_stock"], False]
    assert catalog.category(row) == "hats" and catalog.category(3) == items[3]["category"]
    assert catalog._published.base is not None and len(catalog._published.base) == len(items)  # not regrown
    bundle.index.close()


def test_a_version_written_before_the_attribute_files_still_loads(tmp_path, shop):
    items, vectors, lines, embedder = shop
    path = _write(tmp_path, shop)
    names = json.loads((path / "categories.json").read_text())
    np.savez(path / "attrs.npz", **{c: np.load(path / f"{c}.npy") for c in ("in_stock", "published_at", "category")},
             category_names=np.array(names, dtype=str))  # as releases before 2026-12-04 wrote them, no popularity
    for name in ("in_stock", "published_at", "category", "popularity"):
        (path / f"{name}.npy").unlink()
    (path / "categories.json").unlink()
    bundle = load_bundle(path, search_k=-1)
    np.testing.assert_array_equal(bundle.in_stock, [i["in_stock"] for i in items])
    assert [bundle.category_names[c] for c in bundle.category[:20]] == [i["category"] for i in items[:20]]
    assert not bundle.popularity.any()
    bundle.index.close()


def test_each_write_bumps_the_version_and_moves_current(tmp_path, shop):
    first = _write(tmp_path, shop)
    second = _write(tmp_path, shop)
    assert (first.name, second.name) == ("v000001", "v000002")
    assert current_path(tmp_path) == second
    assert (index_root(tmp_path) / "CURRENT").read_text().strip() == "v000002"
    assert json.loads((second / "meta.json").read_text())["version"] == "v000002"
    assert first.exists()  # still within `keep`
    assert not list(index_root(tmp_path).glob(".*tmp"))  # no temporary leftovers


def test_versions_beyond_keep_are_removed(tmp_path, shop):
    written = [_write(tmp_path, shop, keep=2) for _ in range(4)]
    assert [p.name for p in written] == ["v000001", "v000002", "v000003", "v000004"]
    remaining = sorted(p.name for p in index_root(tmp_path).iterdir() if p.is_dir())
    assert remaining == ["v000003", "v000004"]
    assert current_path(tmp_path) == written[-1]
    _write(tmp_path, shop, keep=2)
    assert sorted(p.name for p in index_root(tmp_path).iterdir() if p.is_dir()) == ["v000004", "v000005"]


def test_current_path_is_none_when_pointer_names_a_missing_version(tmp_path, shop):
    _write(tmp_path, shop)
    (index_root(tmp_path) / "CURRENT").write_text("v000099")
    assert current_path(tmp_path) is None


# --- the catalog -----------------------------------------------------------------------------

@pytest.fixture
def catalog(tmp_path, shop):
    bundle = load_bundle(_write(tmp_path, shop), search_k=IndexConfig().search_k)
    yield Catalog(bundle, DIM, item_line)
    bundle.index.close()


def _new_item(item_id, published_at=NOW, in_stock=True, category="shoes"):
    return {"item_id": item_id, "category": category, "title": f"{item_id} title", "description": "",
            "attributes": {"price": 10.0}, "in_stock": in_stock, "published_at": published_at}


def test_catalog_search_returns_available_rows_nearest_first(catalog, shop):
    items, vectors, _, _ = shop
    in_stock = np.array([i["in_stock"] for i in items])
    rng = np.random.default_rng(0)
    for q in vectors[rng.choice(len(items), 15, replace=False)]:
        rows, sims = catalog.search(q, 50, 10)
        assert len(rows) > 0
        assert catalog.available(rows).all()
        assert in_stock[rows].all()
        assert (np.diff(sims) <= 1e-6).all()
        np.testing.assert_allclose(sims, vectors[rows] @ q, atol=1e-4)
        exact = np.argsort(-(vectors @ q))[:50]
        assert sims[-1] >= (vectors @ q)[exact[-1]] - 1e-4  # nothing from outside the exact top 50
        assert set(exact[in_stock[exact]][:20].tolist()) <= set(rows.tolist())


def test_catalog_search_never_returns_an_out_of_stock_item(catalog, shop):
    items, vectors, _, _ = shop
    for r in range(0, len(items), 10):  # rows 0, 10, 20, ... are out of stock
        rows, _ = catalog.search(vectors[r], 20, 10)
        assert r not in rows.tolist()


def test_upsert_of_a_new_item_is_searchable_at_once(catalog, shop):
    _, vectors, _, _ = shop
    before = len(catalog)
    v = _unit(np.random.default_rng(1).normal(size=DIM))
    item = _new_item("new-1")
    row = catalog.upsert(item, v, cursor="13-0")
    assert row == catalog.n_base == 400
    assert len(catalog) == before + 1
    assert catalog.ids[row] == "new-1" and catalog.lines[row] == item_line(item)
    assert catalog.cursor == "13-0"
    assert catalog.rows_for(["new-1", "unknown"]).tolist() == [row]
    rows, sims = catalog.search(v, 20, 5)
    assert rows[0] == row and sims[0] == pytest.approx(1.0, abs=1e-5)
    q = vectors[3]  # another query: the fresh row comes with its exact similarity
    rows, sims = catalog.search(q, 400, 5)
    assert row in rows.tolist()
    assert sims[rows.tolist().index(row)] == pytest.approx(float(v @ q), abs=1e-5)


def test_upsert_of_an_existing_item_hides_its_old_row(catalog, shop):
    items, vectors, _, _ = shop
    old_row = 5
    before = len(catalog)
    new_vector = _unit(np.random.default_rng(2).normal(size=DIM))
    row = catalog.upsert(dict(items[old_row], title="renamed"), new_vector)
    assert row != old_row
    assert len(catalog) == before  # replaced, not added
    assert catalog.rows_for([items[old_row]["item_id"]]).tolist() == [row]
    assert not catalog.available(np.array([old_row]))[0]
    for q in (vectors[old_row], new_vector, vectors[old_row + 1]):
        rows, _ = catalog.search(q, 50, 10)
        assert old_row not in rows.tolist()
    rows, sims = catalog.search(new_vector, 50, 10)
    assert rows[0] == row and sims[0] == pytest.approx(1.0, abs=1e-5)
    assert old_row not in catalog.newest(len(items)).tolist()


def test_out_of_stock_upsert_is_never_returned(catalog, shop):
    items, vectors, _, _ = shop
    v = _unit(np.random.default_rng(3).normal(size=DIM))
    newest_item = _new_item("gone", published_at=NOW + 10, in_stock=False)
    gone = catalog.upsert(newest_item, v)
    rows, _ = catalog.search(v, 50, 10)
    assert gone not in rows.tolist()
    assert gone not in catalog.newest(50).tolist()
    # an in-stock built item that is re-upserted as out of stock disappears altogether
    r = 1
    catalog.upsert(dict(items[r], in_stock=False), vectors[r])
    rows, _ = catalog.search(vectors[r], 50, 10)
    assert items[r]["item_id"] not in [catalog.ids[x] for x in rows]
    assert items[r]["item_id"] not in [catalog.ids[x] for x in catalog.newest(len(items) + 5)]


def test_newest_is_most_recent_first_and_includes_fresh_items(catalog, shop):
    items, _, _, _ = shop
    published = np.array([i["published_at"] for i in items])
    available = np.array([i["in_stock"] for i in items])
    expected = [r for r in np.argsort(-published, kind="stable") if available[r]][:10]
    assert catalog.newest(10).tolist() == expected
    fresh = catalog.upsert(_new_item("brand-new", published_at=NOW + 100), _unit(np.ones(DIM)))
    assert catalog.newest(10).tolist() == [fresh] + expected[:9]


def test_empty_catalog_serves_upserted_items_only():
    catalog = Catalog(None, DIM, item_line)
    assert len(catalog) == 0
    assert [len(a) for a in catalog.search(_unit(np.ones(DIM)), 10, 10)] == [0, 0]
    assert catalog.newest(5).tolist() == []
    rng = np.random.default_rng(4)
    vectors = _unit(rng.normal(size=(3, DIM)))
    for k, v in enumerate(vectors):
        catalog.upsert(_new_item(f"n{k}", published_at=NOW + k), v)
    catalog.upsert(_new_item("n3", published_at=NOW + 99, in_stock=False), _unit(rng.normal(size=DIM)))
    assert len(catalog) == 4
    rows, sims = catalog.search(vectors[1], 10, 10)
    assert sorted(rows.tolist()) == [0, 1, 2]
    assert rows[0] == 1
    np.testing.assert_allclose(sims, vectors[rows] @ vectors[1], atol=1e-5)
    assert (np.diff(sims) <= 0).all()
    assert catalog.newest(10).tolist() == [2, 1, 0]
    assert catalog.newest(2).tolist() == [2, 1]


def test_fresh_search_returns_the_nearest_available_items_despite_replaced_rows():
    """An item updated several times (price, stock) leaves replaced rows in the fresh buffer;
    they must not take the places of live items in the exact top `n_fresh`."""
    catalog = Catalog(None, DIM, item_line)
    a = _unit(np.eye(DIM)[0])
    b = _unit(np.eye(DIM)[0] + 0.5 * np.eye(DIM)[1])
    for price in (10.0, 11.0, 12.0):
        catalog.upsert(dict(_new_item("a"), attributes={"price": price}), a)
    row_b = catalog.upsert(_new_item("b"), b)
    row_a = catalog.rows_for(["a"])[0]
    rows, _ = catalog.search(a, 10, n_fresh=2)
    assert rows.tolist() == [row_a, row_b]


@pytest.mark.parametrize("bad", [np.zeros(3), np.zeros(DIM + 1), np.zeros((1, DIM))])
def test_upsert_rejects_a_vector_of_the_wrong_length(bad):
    catalog = Catalog(None, DIM, item_line)
    with pytest.raises(ValueError, match=rf"expected {DIM}, got \(?{bad.shape[0]}"):
        catalog.upsert(_new_item("x"), bad)
    assert len(catalog) == 0 and list(catalog.ids) == []  # nothing half-written


def test_newest_beyond_the_built_rows_kept_sorted_is_still_right(monkeypatch, tmp_path, shop):
    from retrieval import catalog as catalog_module

    bundle = load_bundle(_write(tmp_path, shop), search_k=-1)
    full = Catalog(bundle, DIM, item_line)
    monkeypatch.setattr(catalog_module, "_NEWEST_KEPT", 8)  # keep only 8 built rows sorted; ask for more
    trimmed = Catalog(bundle, DIM, item_line)
    assert len(trimmed._newest_base) == 8
    for n in (1, 5, 30):
        assert trimmed.newest(n).tolist() == full.newest(n).tolist()
    rows = np.arange(len(bundle.ids))
    rows = rows[full.available(rows)]
    assert full.newest(30).tolist() == rows[np.argsort(-full.published_at(rows), kind="stable")][:30].tolist()
    bundle.index.close()


def test_rows_of_a_recurring_list_are_remembered_until_the_catalog_changes():
    catalog = Catalog(None, DIM, item_line)
    rng = np.random.default_rng(5)
    for k in range(3):
        catalog.upsert(_new_item(f"n{k}"), _unit(rng.normal(size=DIM)))
    listed = ["n2", "later", "n0"]
    first = catalog.rows_for_list(listed)
    assert first.tolist() == catalog.rows_for(listed).tolist() == [2, 0]
    assert catalog.rows_for_list(list(listed)) is first  # remembered
    later = catalog.upsert(_new_item("later"), _unit(rng.normal(size=DIM)))
    assert catalog.rows_for_list(listed).tolist() == [2, later, 0]  # an upsert is seen at once
    catalog.delete("n0")
    assert catalog.rows_for_list(listed).tolist() == [2, later]
    with pytest.raises(ValueError):
        first[0] = 7  # shared between requests: read-only
