"""Item and user vectors (retrieval/embeddings.py) and the build's input readers (retrieval/data.py)."""

import json

import numpy as np
import pytest

from banditrec.config import EmbeddingConfig
from banditrec.errors import DataError, InvalidRequest
from retrieval.data import Interactions, normalise_item, read_catalog, read_interactions, read_users
from retrieval.demo import generate_world
from retrieval.embeddings import ItemEmbedder, fit_item_embeddings, user_vectors

NOW = 1_700_000_000
CFG = EmbeddingConfig(content_dim=16, collab_dim=16)
N_TRAIN = 1500


@pytest.fixture(scope="module")
def fitted():
    """A world whose last 100 items are held out of the fit: they play the items added later.
    Shared read-only by the tests below."""
    world = generate_world(n_items=N_TRAIN + 100, n_users=300, n_categories=10, seed=5, now=NOW,
                           mean_events_per_user=30)
    train, held = world.items[:N_TRAIN], world.items[N_TRAIN:]
    known = {i["item_id"] for i in train}
    log = Interactions.from_rows(r for r in world.interactions if r[1] in known)
    embedder, vectors, engagement = fit_item_embeddings(train, log, CFG, NOW, seed=0)
    return dict(train=train, held=held, log=log, embedder=embedder, vectors=vectors, engagement=engagement)


def _assert_unit_rows(v, dim):
    assert v.dtype == np.float32
    assert v.ndim == 2 and v.shape[1] == dim
    assert np.isfinite(v).all()
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def _categories(items):
    return np.array([i["category"] for i in items])


# --- fitted vectors --------------------------------------------------------------------------

def test_fitted_item_vectors_are_unit_float32_of_the_configured_dim(fitted):
    assert fitted["vectors"].shape == (N_TRAIN, CFG.content_dim + CFG.collab_dim)
    _assert_unit_rows(fitted["vectors"], CFG.dim)
    assert fitted["embedder"].dim == CFG.dim
    assert fitted["engagement"].shape == (N_TRAIN, len(fitted["log"].user_ids))


def test_nearest_neighbours_share_the_category_far_more_than_chance(fitted):
    v, cats = fitted["vectors"], _categories(fitted["train"])
    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    neighbours = np.argsort(-sims, axis=1)[:, :10]
    same = (cats[neighbours] == cats[:, None]).mean()
    _, counts = np.unique(cats, return_counts=True)
    chance = ((counts / counts.sum()) ** 2).sum()  # ~0.14
    assert same > 0.8          # ~1.0
    assert same > 4 * chance


def test_user_vector_is_closer_to_engaged_items_than_to_random_items(fitted):
    log, v = fitted["log"], fitted["vectors"]
    users = user_vectors(fitted["engagement"], v)
    _assert_unit_rows(users, CFG.dim)
    assert users.shape[0] == len(log.user_ids)
    row = {item["item_id"]: r for r, item in enumerate(fitted["train"])}
    rng = np.random.default_rng(0)
    gaps = []
    for u in range(len(log.user_ids)):
        engaged = sorted({row[log.item_id[k]] for k in np.flatnonzero(log.user == u)})
        random_items = rng.choice(len(v), size=200, replace=False)
        gaps.append((v[engaged] @ users[u]).mean() - (v[random_items] @ users[u]).mean())
    gaps = np.array(gaps)
    assert (gaps > 0).mean() > 0.95  # 1.0 here
    assert gaps.mean() > 0.1         # ~0.19


def test_user_without_history_gets_a_zero_vector(fitted):
    engagement = fitted["engagement"].tolil()
    engagement[:, 0] = 0
    users = user_vectors(engagement.tocsr(), fitted["vectors"])
    assert not users[0].any()
    np.testing.assert_allclose(np.linalg.norm(users[1:], axis=1), 1.0, atol=1e-5)


def test_new_item_without_history_lands_among_its_own_category(fitted):
    """Held-out items embedded one at a time with no collaborative part (collab=None)."""
    embedder, v = fitted["embedder"], fitted["vectors"]
    cats = _categories(fitted["train"])
    names = np.unique(cats)
    own_is_nearest, neighbour_share = [], []
    for item in fitted["held"]:
        new = embedder.embed([item])
        _assert_unit_rows(new, CFG.dim)
        sims = v @ new[0]
        mean_by_cat = {c: sims[cats == c].mean() for c in names}
        own_is_nearest.append(max(mean_by_cat, key=mean_by_cat.get) == item["category"])
        neighbour_share.append((cats[np.argsort(-sims)[:10]] == item["category"]).mean())
    assert np.mean(own_is_nearest) > 0.9   # 1.0 here
    assert np.mean(neighbour_share) > 0.8  # 1.0 here


def test_embedding_an_item_does_not_depend_on_the_rest_of_the_batch(fitted):
    embedder, held = fitted["embedder"], fitted["held"]
    batch = embedder.embed(held[:20])
    one_by_one = np.vstack([embedder.embed([item]) for item in held[:20]])
    np.testing.assert_allclose(batch, one_by_one, atol=1e-6)


def test_a_few_items_are_embedded_without_sparse_matrices_into_the_same_vectors(fitted, monkeypatch):
    import retrieval.embeddings as embeddings

    embedder = fitted["embedder"]
    items = [*fitted["held"][:5], {"item_id": "x", "title": "boot boot boot", "category": "shoes"},
             {"item_id": "bare"}]  # repeated words fold into one bucket; no content: a zero row
    monkeypatch.setattr(embeddings, "FEW", len(items))
    few = embedder.content(items)
    monkeypatch.setattr(embeddings, "FEW", 0)
    sparse_path = embedder.content(items)
    np.testing.assert_allclose(few, sparse_path, atol=1e-6)
    assert not few[-1].any() and np.abs(few[:-1]).sum(axis=1).min() > 0


def test_embedder_save_load_round_trips(fitted, tmp_path):
    embedder = fitted["embedder"]
    embedder.save(tmp_path / "embedder.npz")
    loaded = ItemEmbedder.load(tmp_path / "embedder.npz")
    assert loaded.buckets == embedder.buckets
    assert loaded.content_weight == embedder.content_weight
    np.testing.assert_array_equal(loaded.embed(fitted["held"]), embedder.embed(fitted["held"]))
    np.testing.assert_array_equal(loaded.embed(fitted["train"][:50]), embedder.embed(fitted["train"][:50]))


def test_an_embedder_saved_before_the_encoder_choice_loads_as_tfidf_and_embeds_as_before(fitted, tmp_path):
    """Releases before `embedding.text_encoder` saved embedder.npz without an `encoder` key."""
    embedder = fitted["embedder"]
    np.savez(tmp_path / "embedder.npz", buckets=embedder.buckets, idf=embedder.idf, components=embedder.components,
             ridge_map=embedder.ridge_map, content_weight=embedder.content_weight)
    with np.load(tmp_path / "embedder.npz") as z:
        assert "encoder" not in z
    loaded = ItemEmbedder.load(tmp_path / "embedder.npz")
    assert loaded.encoder == "tfidf" and loaded.text_mean is None and loaded.text_map is None
    np.testing.assert_array_equal(loaded.embed(fitted["held"]), embedder.embed(fitted["held"]))
    again = loaded.embed(fitted["train"][:50], collab=fitted["vectors"][:50, CFG.content_dim:])  # as the build did
    np.testing.assert_allclose(again, fitted["vectors"][:50], atol=1e-5)


# --- the untrained embedder ------------------------------------------------------------------

def test_untrained_embedder_is_deterministic_and_gives_unit_vectors(fitted):
    items = fitted["held"][:30]
    a = ItemEmbedder.untrained(CFG).embed(items)
    b = ItemEmbedder.untrained(CFG).embed(items)
    _assert_unit_rows(a, CFG.dim)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, ItemEmbedder.untrained(CFG, seed=1).embed(items))


def test_untrained_embedder_keeps_similar_items_close():
    embedder = ItemEmbedder.untrained(CFG)
    boot = {"item_id": "a", "category": "shoes", "title": "red leather boot", "description": "warm winter boot"}
    twin = {"item_id": "b", "category": "shoes", "title": "red leather boot", "description": "warm winter shoe"}
    other = {"item_id": "c", "category": "kitchen", "title": "steel kettle", "description": "fast boil"}
    v = embedder.embed([boot, twin, other])
    assert v[0] @ v[1] > 0.8
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3


# --- degenerate inputs -----------------------------------------------------------------------

def test_one_item_catalog_with_empty_log():
    item = normalise_item({"item_id": "only", "category": "shoes", "title": "boot"})
    embedder, vectors, engagement = fit_item_embeddings([item], Interactions.from_rows([]), CFG, NOW)
    assert vectors.shape == (1, CFG.dim)
    _assert_unit_rows(vectors, CFG.dim)
    assert engagement.shape == (1, 0)
    _assert_unit_rows(embedder.embed([item]), CFG.dim)
    assert user_vectors(engagement, vectors).shape == (0, CFG.dim)


def test_small_catalog_with_empty_log(fitted):
    items = fitted["held"][:5]
    embedder, vectors, _ = fit_item_embeddings(items, Interactions.from_rows([]), CFG, NOW)
    _assert_unit_rows(vectors, CFG.dim)
    assert vectors.shape == (5, CFG.dim)
    _assert_unit_rows(embedder.embed(fitted["held"][5:10]), CFG.dim)


def test_log_of_unknown_items_only_is_ignored(fitted):
    items = fitted["held"][:20]
    log = Interactions.from_rows([("u1", "nope", "click", NOW - 10), ("u2", "nada", "view", NOW - 5)])
    _, vectors, engagement = fit_item_embeddings(items, log, CFG, NOW)
    _assert_unit_rows(vectors, CFG.dim)
    assert engagement.nnz == 0


@pytest.mark.parametrize("which", ["fitted", "untrained"])
def test_item_without_content_gets_a_stable_unit_vector(fitted, which):
    embedder = fitted["embedder"] if which == "fitted" else ItemEmbedder.untrained(CFG)
    bare = normalise_item({"item_id": "bare"})  # empty category, title, description, attributes
    first = embedder.embed([bare])
    _assert_unit_rows(first, CFG.dim)
    np.testing.assert_array_equal(first, embedder.embed([bare]))
    np.testing.assert_array_equal(first[0], embedder.embed([fitted["held"][0], bare])[1])
    other = embedder.embed([normalise_item({"item_id": "bare2"})])
    assert abs(float(first[0] @ other[0])) < 0.9  # a direction of its own, not one shared by all


def test_catalog_with_a_contentless_item_still_fits(fitted):
    items = fitted["train"][:200] + [normalise_item({"item_id": "bare"})]
    rng = np.random.default_rng(0)
    log = Interactions.from_rows((f"u{u}", items[int(r)]["item_id"], "view", NOW - 3600)
                                 for u in range(30) for r in rng.choice(200, size=8))
    _, vectors, engagement = fit_item_embeddings(items, log, CFG, NOW)
    _assert_unit_rows(vectors, CFG.dim)
    assert engagement.nnz > 0


# --- input files: errors name the file and the line ------------------------------------------

BAD_ITEMS = [
    ('[1, 2]', "an item must be a JSON object, got list"),
    ('{"item_id": ""}', "item_id must be a non-empty string, got ''"),
    ('{"item_id": 7}', "item_id must be a non-empty string, got 7"),
    ('{"category": "shoes"}', "item_id must be a non-empty string, got None"),
    ('{"item_id": "a\\u0007"}', "item_id must be printable text without control characters"),
    (json.dumps({"item_id": "x" * 257}), "item_id has 257 characters, must have <= 256"),
    ('{"item_id": "a", "colour": "red"}',
     "unknown item field(s) colour; known: attributes, category, description, in_stock, item_id, "
     "published_at, title"),
    ('{"item_id": "a", "category": 3}', "category must be a string, got 3"),
    (json.dumps({"item_id": "a", "title": "t" * 1025}), "title has 1025 characters, must have <= 1024"),
    ('{"item_id": "a", "attributes": [1]}', "attributes must be an object, got [1]"),
    ('{"item_id": "a", "attributes": {"x": [1]}}', "attributes.x must be a string, number or boolean, got [1]"),
    ('{"item_id": "a", "attributes": {"w": NaN}}', "attributes.w == nan, must be finite"),
    ('{"item_id": "a", "in_stock": "yes"}', "in_stock must be true or false, got 'yes'"),
    ('{"item_id": "a", "published_at": -1}', "published_at must be unix seconds (0 <= t < 1e11), got -1"),
    ('{"item_id": "a", "published_at": true}', "published_at must be unix seconds (0 <= t < 1e11), got True"),
    ('{"item_id": "a", "published_at": "today"}',
     "published_at must be unix seconds (0 <= t < 1e11), got 'today'"),
]


@pytest.mark.parametrize("line, message", BAD_ITEMS)
def test_normalise_item_rejects_bad_records(line, message):
    with pytest.raises(InvalidRequest) as info:
        normalise_item(json.loads(line))
    assert info.value.message == message


@pytest.mark.parametrize("line, message", BAD_ITEMS)
def test_read_catalog_error_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "items.jsonl"
    path.write_text('{"item_id": "ok1"}\n\n' + line + '\n{"item_id": "ok2"}\n', encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_catalog(path)
    assert info.value.message == f"{path}:3: {message}"


def test_read_catalog_error_for_invalid_json(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text('{"item_id": "ok"}\nnot json\n', encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_catalog(path)
    assert info.value.message == f"{path}:2: not valid JSON (Expecting value)"


def test_read_users_error_names_file_and_line(tmp_path):
    path = tmp_path / "users.jsonl"
    path.write_text('{"user_id": "u1"}\n{"user_id": 5}\n', encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_users(path)
    assert info.value.message == f"{path}:2: user_id must be a non-empty string, got 5"


HEADER = "user_id,item_id,type,timestamp\n"
BAD_INTERACTIONS = [
    ("u1,i1,like,100", "type == 'like', must be one of view, click, add_to_cart, purchase"),
    ("u1,i1,view,yesterday", "timestamp == 'yesterday', must be unix seconds"),
    ("u1,i1,view,", "timestamp == '', must be unix seconds"),
    ("u1,i1,view", "timestamp == None, must be unix seconds"),
    ("u1,i1,view,inf", "timestamp must be finite"),
    (",i1,view,100", "user_id and item_id must be non-empty"),
    ("u1,,view,100", "user_id and item_id must be non-empty"),
]


@pytest.mark.parametrize("row, message", BAD_INTERACTIONS)
def test_read_interactions_error_names_file_and_line(tmp_path, row, message):
    path = tmp_path / "interactions.csv"
    path.write_text(HEADER + "u1,i1,view,100\nu2,i1,click,101\n" + row + "\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_interactions(path)
    assert info.value.message == f"{path}:4: {message}"


def test_read_interactions_line_number_counts_blank_lines(tmp_path):
    """The number must be the line in the file, as for the JSONL readers (which count blanks)."""
    path = tmp_path / "interactions.csv"
    path.write_text(HEADER + "u1,i1,view,100\n\nu1,i1,like,101\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_interactions(path)
    assert info.value.message.startswith(f"{path}:4: type == 'like'")


def test_read_interactions_requires_the_header(tmp_path):
    path = tmp_path / "interactions.csv"
    path.write_text("user_id,item_id,type\nu1,i1,view\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_interactions(path)
    assert info.value.message == f"{path}: header must name user_id,item_id,type,timestamp; missing timestamp"


def test_read_interactions_reads_rows_and_ignores_extra_columns(tmp_path):
    path = tmp_path / "interactions.csv"
    path.write_text("user_id,item_id,type,timestamp,value\nu1,i1,view,100,\nu2,i2,purchase,200.5,9.9\n"
                    "u1,i2,click,300,\n", encoding="utf-8")
    log = read_interactions(path)
    assert len(log) == 3
    assert log.user_ids == ["u1", "u2"]
    assert log.user.tolist() == [0, 1, 0]
    assert log.item_id == ["i1", "i2", "i2"]
    assert log.kind.tolist() == [0, 3, 1]
    assert log.timestamp.tolist() == [100.0, 200.5, 300.0]


def test_repeated_item_id_keeps_the_last_record(tmp_path):
    path = tmp_path / "items.jsonl"
    rows = [{"item_id": "a", "title": "old"}, {"item_id": "b", "title": "bee"},
            {"item_id": "a", "title": "new", "in_stock": False}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    items = read_catalog(path)
    assert len(items) == 2
    by_id = {i["item_id"]: i for i in items}
    assert by_id["a"]["title"] == "new"
    assert by_id["a"]["in_stock"] is False
    assert by_id["b"]["title"] == "bee"
