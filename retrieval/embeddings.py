"""Item and user vectors in one space.

An item vector is the normalised blend of
  - a content part: hashed TF-IDF of category, title, description and attributes,
    projected by a truncated SVD fitted on the catalog (`embedding.text_encoder = "tfidf"`),
    or the item's text as a sentence model embeds it (`retrieval/text.py`), projected on the
    catalog's principal axes (`"minilm"`);
  - a collaborative part: truncated SVD of the time-decayed, event-weighted item x user
    matrix. Items without interactions get it predicted from their content by a ridge map
    fitted on items that have both, so a new item lands near similar items.
A user's long-term vector is the time-decayed, event-weighted mean of the vectors of the
items they engaged with, normalised: users and items are compared by cosine.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import svds

from retrieval.config import EVENT_TYPES, MINILM_DIM, TEXT_ENCODERS, EmbeddingConfig, require_text_extra
from retrieval.data import Interactions

FEW = 16  # `ItemEmbedder.content` of at most this many items skips the sparse matrices
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def item_tokens(item: dict) -> list[tuple[str, float]]:
    """(token, weight) pairs describing an item's content.

    >>> item_tokens({"category": "Shoes", "title": "Red boot", "description": "", "attributes": {"size": 42}})
    [('cat=shoes', 3.0), ('t=red', 1.5), ('t=boot', 1.5), ('a:size=5', 1.0)]
    """
    out = []
    if item.get("category"):
        out.append((f"cat={item['category'].lower()}", 3.0))
    out += [(f"t={w}", 1.5) for w in _WORD.findall(item.get("title", "").lower())]
    out += [(f"d={w}", 1.0) for w in _WORD.findall(item.get("description", "").lower())]
    for key, value in sorted((item.get("attributes") or {}).items()):
        if isinstance(value, bool) or value is None or isinstance(value, str):
            out.append((f"a:{key}={str(value).lower()}", 1.0))
        else:  # numbers by order of magnitude (log2 bucket)
            out.append((f"a:{key}={int(np.floor(np.log2(abs(value) + 1.0)))}", 1.0))
    return out


def _bucket(token: str, buckets: int) -> int:
    return zlib.crc32(token.encode("utf-8")) % buckets  # stable across processes, unlike hash()


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _truncated_svd(m, k: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k SVD that also works for tiny or rank-poor matrices (pads with zeros)."""
    rows, cols = m.shape
    k_eff = min(k, rows - 1, cols - 1)
    if k_eff < 1 or m.nnz == 0:
        return np.zeros((rows, k)), np.zeros(k), np.zeros((k, cols))
    u, s, vt = svds(m.astype(np.float64), k=k_eff, random_state=seed)
    order = np.argsort(-s)
    u, s, vt = u[:, order], s[order], vt[order]
    if k_eff < k:
        u = np.hstack([u, np.zeros((rows, k - k_eff))])
        s = np.concatenate([s, np.zeros(k - k_eff)])
        vt = np.vstack([vt, np.zeros((k - k_eff, cols))])
    return u, s, vt


@dataclass
class ItemEmbedder:
    """Turns an item record into its vector: the fitted content projection + ridge map.
    The content part comes from `encoder`: "tfidf" uses `idf` and `components`, "minilm" the
    sentence model's vectors minus `text_mean`, projected by `text_map`."""

    buckets: int
    idf: np.ndarray          # (buckets,); empty for "minilm"
    components: np.ndarray   # (buckets, content_dim); (0, content_dim) for "minilm"
    ridge_map: np.ndarray    # (content_dim, collab_dim)
    content_weight: float
    encoder: str = "tfidf"
    text_mean: np.ndarray | None = None  # (384,) "minilm": the catalog's mean sentence vector
    text_map: np.ndarray | None = None   # (384, content_dim) "minilm": its principal axes

    def __post_init__(self):
        if self.encoder not in TEXT_ENCODERS:
            raise ValueError(f"encoder == {self.encoder!r}, must be one of {', '.join(map(repr, TEXT_ENCODERS))}")
        # scipy's sparse @ dense copies a dense operand that is not C-ordered on every call
        # (an SVD's transposed factor is F-ordered): 0.5 ms per item embedded at 16k buckets
        self.components = np.ascontiguousarray(self.components)

    @property
    def content_dim(self) -> int:
        return self.ridge_map.shape[0]

    @property
    def dim(self) -> int:
        return self.ridge_map.shape[0] + self.ridge_map.shape[1]

    def tfidf(self, items: list[dict]) -> sparse.csr_matrix:
        rows, cols, vals = [], [], []
        for r, item in enumerate(items):
            for token, weight in item_tokens(item):
                rows.append(r)
                cols.append(_bucket(token, self.buckets))
                vals.append(weight)
        m = sparse.csr_matrix((vals, (rows, cols)), shape=(len(items), self.buckets), dtype=np.float64)
        m.sum_duplicates()
        m = m.multiply(self.idf[None, :]).tocsr()
        norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
        return sparse.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ m

    def content(self, items: list[dict], progress: bool = False) -> np.ndarray:
        """Unit content vectors (n x content_dim); zero rows for items without any content."""
        if self.encoder == "minilm":
            return _project(sentence_vectors(items, progress), self.text_mean, self.text_map)
        if len(items) <= FEW:
            return self._content_few(items)
        # same dtype on both sides: a float64 x float32 product copies all of `components` per call
        m = self.tfidf(items).astype(self.components.dtype)
        return _unit_rows(np.asarray(m @ self.components, dtype=np.float64))

    def _content_few(self, items: list[dict]) -> np.ndarray:
        """`content` of a few items (an upsert) without building sparse matrices: each item's
        TF-IDF row is its distinct buckets and their weights, projected by those rows of
        `components`. The same vectors (to float32 rounding); scipy's set-up alone cost ~1 ms an item."""
        out = np.zeros((len(items), self.content_dim))
        for r, item in enumerate(items):
            tokens = item_tokens(item)
            if not tokens:
                continue
            buckets = np.fromiter((_bucket(token, self.buckets) for token, _ in tokens), np.int64, len(tokens))
            buckets, at = np.unique(buckets, return_inverse=True)
            row = np.bincount(at, weights=[weight for _, weight in tokens]) * self.idf[buckets]
            norm = np.sqrt(row @ row)
            if norm > 0:
                out[r] = (row / norm).astype(self.components.dtype) @ self.components[buckets]
        return _unit_rows(out)

    def embed(self, items: list[dict], collab: np.ndarray | None = None, progress: bool = False) -> np.ndarray:
        """Vectors for `items`; rows of `collab` that are all zero are predicted from content."""
        return self.assemble(items, self.content(items, progress), collab)

    def assemble(self, items: list[dict], content: np.ndarray, collab: np.ndarray | None = None) -> np.ndarray:
        """Item vectors from their content part (`content(items)`) and collaborative part."""
        if collab is None:
            collab = np.zeros((len(items), self.ridge_map.shape[1]))
        collab = _unit_rows(np.asarray(collab, dtype=np.float64))
        missing = ~collab.any(axis=1)
        collab[missing] = _unit_rows(content[missing] @ self.ridge_map)
        w = self.content_weight
        vectors = _unit_rows(np.hstack([np.sqrt(w) * content, np.sqrt(1.0 - w) * collab]))
        empty = ~vectors.any(axis=1)  # no content and no history: a stable random direction
        for r in np.flatnonzero(empty):
            seed = zlib.crc32(str(items[r].get("item_id", r)).encode("utf-8"))
            vectors[r] = _unit_rows(np.random.default_rng(seed).normal(size=(1, self.dim)))[0]
        return vectors.astype(np.float32)

    @classmethod
    def untrained(cls, cfg: EmbeddingConfig, seed: int = 0) -> "ItemEmbedder":
        """Before any build: a seeded random projection of the hashed tokens (or of the sentence
        vectors; either preserves cosine similarity roughly) and no collaborative part."""
        rng = np.random.default_rng(seed)
        ridge = np.zeros((cfg.content_dim, cfg.collab_dim))
        if cfg.text_encoder == "minilm":
            text_map = rng.normal(size=(MINILM_DIM, cfg.content_dim)) / np.sqrt(cfg.content_dim)
            return cls(cfg.text_buckets, np.zeros(0), np.zeros((0, cfg.content_dim), np.float32), ridge,
                       cfg.content_weight, "minilm", np.zeros(MINILM_DIM), text_map)
        components = rng.normal(size=(cfg.text_buckets, cfg.content_dim)) / np.sqrt(cfg.content_dim)
        return cls(cfg.text_buckets, np.ones(cfg.text_buckets), components.astype(np.float32), ridge,
                   cfg.content_weight)

    def save(self, path: str | Path) -> None:
        text = {"text_mean": self.text_mean, "text_map": self.text_map} if self.encoder == "minilm" else {}
        np.savez(path, buckets=self.buckets, idf=self.idf, components=self.components,
                 ridge_map=self.ridge_map, content_weight=self.content_weight, encoder=self.encoder, **text)

    @classmethod
    def load(cls, path: str | Path) -> "ItemEmbedder":
        with np.load(path) as z:
            encoder = str(z["encoder"]) if "encoder" in z else "tfidf"  # (saved before the encoder choice)
            if encoder == "minilm":
                require_text_extra(f"{path} (built with embedding.text_encoder = \"minilm\")")
            text = (z["text_mean"], z["text_map"]) if encoder == "minilm" else (None, None)
            return cls(int(z["buckets"]), z["idf"], z["components"], z["ridge_map"],
                       float(z["content_weight"]), encoder, *text)


def sentence_vectors(items: list[dict], progress: bool = False, threads: int = 1) -> np.ndarray:
    """(n, 384) sentence-model vectors of the items' text (`retrieval/text.py`, its `threads`); zero
    rows for no text."""
    from retrieval import text  # the optional extra's seam: loads the model on first use

    return text.encode([text.item_text(item) for item in items], progress=progress, threads=threads)


def _project(sentences: np.ndarray, mean: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Unit rows of (sentences - mean) @ axes; items without text stay zero."""
    out = _unit_rows((np.asarray(sentences, dtype=np.float64) - mean) @ axes)
    out[~sentences.any(axis=1)] = 0.0
    return out


def _principal_axes(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and the top-k principal axes (d, k) of the rows of `x` (zero rows ignored)."""
    x = np.asarray(x[x.any(axis=1)], dtype=np.float64)
    if len(x) == 0:
        return np.zeros(x.shape[1]), np.zeros((x.shape[1], k))
    mean = x.mean(axis=0)
    centred = x - mean
    values, vectors = np.linalg.eigh(centred.T @ centred)
    axes = vectors[:, np.argsort(-values, kind="stable")[:k]]
    axes *= np.where(axes[np.abs(axes).argmax(axis=0), np.arange(k)] < 0, -1.0, 1.0)  # a fixed sign per axis
    return mean, axes


def decayed_weights(log: Interactions, cfg: EmbeddingConfig, now: float) -> np.ndarray:
    """Per-row weight: event-type weight x 2^(-age / half-life)."""
    type_w = np.array([cfg.event_weights[t] for t in EVENT_TYPES])
    age_days = np.maximum(now - log.timestamp, 0.0) / 86400.0
    return type_w[log.kind] * np.exp2(-age_days / cfg.half_life_days)


def interaction_matrix(log: Interactions, item_index: dict[str, int], cfg: EmbeddingConfig,
                       now: float) -> sparse.csr_matrix:
    """Item x user matrix of decayed, event-weighted engagement; unknown items are dropped."""
    rows = np.array([item_index.get(i, -1) for i in log.item_id], dtype=np.int64)
    keep = rows >= 0
    weights = decayed_weights(log, cfg, now)
    return sparse.csr_matrix((weights[keep], (rows[keep], log.user[keep])),
                             shape=(len(item_index), len(log.user_ids)))


def fit_item_embeddings(items: list[dict], log: Interactions, cfg: EmbeddingConfig, now: float,
                        seed: int = 0, progress: bool = False,
                        threads: int = 1) -> tuple[ItemEmbedder, np.ndarray, sparse.csr_matrix]:
    """Fit the content projection, the collaborative factors and the ridge map.

    Returns the embedder (for items added later), the item vectors (n_items x dim, float32)
    and the item x user engagement matrix (used for user vectors and popularity). `progress`
    shows a bar while a sentence model encodes the catalog, on `threads` (`retrieval.text.encode`).
    """
    n = len(items)
    rng = np.random.default_rng(seed)
    if cfg.text_encoder == "minilm":
        # Content: sentence vectors, projected on the principal axes of a sample.
        sentences = sentence_vectors(items, progress, threads)
        sample = sentences if n <= cfg.fit_sample else sentences[np.sort(rng.choice(n, cfg.fit_sample, replace=False))]
        text_mean, text_map = _principal_axes(sample, cfg.content_dim)
        content = _project(sentences, text_mean, text_map)
        idf, components = np.zeros(0), np.zeros((0, cfg.content_dim), np.float32)
    else:
        # Content: TF-IDF over hashed tokens, projected by an SVD fitted on a sample.
        probe = ItemEmbedder(cfg.text_buckets, np.ones(cfg.text_buckets),
                             np.zeros((cfg.text_buckets, cfg.content_dim)),
                             np.zeros((cfg.content_dim, cfg.collab_dim)), cfg.content_weight)
        raw = probe.tfidf(items)
        df = np.bincount(raw.indices, minlength=cfg.text_buckets)
        idf = np.log((1.0 + n) / (1.0 + df)) + 1.0
        probe.idf = idf
        x = probe.tfidf(items)
        sample = x if n <= cfg.fit_sample else x[np.sort(rng.choice(n, cfg.fit_sample, replace=False))]
        _, _, vt = _truncated_svd(sample, cfg.content_dim, seed)
        content = _unit_rows(np.asarray(x @ vt.T))
        components, text_mean, text_map = vt.T.astype(np.float32), None, None

    # Collaborative: SVD of log(1 + engagement).
    item_index = {item["item_id"]: r for r, item in enumerate(items)}
    engagement = interaction_matrix(log, item_index, cfg, now)
    m = engagement.copy()
    m.data = np.log1p(m.data)
    u, s, _ = _truncated_svd(m, cfg.collab_dim, seed)
    collab = _unit_rows(u * np.sqrt(s)[None, :])

    # Ridge map content -> collaborative, fitted where both exist.
    has = collab.any(axis=1)
    c, f = content[has], collab[has]
    ridge = np.linalg.solve(c.T @ c + cfg.ridge * np.eye(cfg.content_dim), c.T @ f) if has.any() \
        else np.zeros((cfg.content_dim, cfg.collab_dim))
    embedder = ItemEmbedder(cfg.text_buckets, idf, components, ridge, cfg.content_weight, cfg.text_encoder,
                            text_mean, text_map)
    # (tfidf: embedded as items added later are, with the stored float32 projection)
    vectors = embedder.assemble(items, content, collab) if text_map is not None else embedder.embed(items, collab)
    return embedder, vectors, engagement


def user_vectors(engagement: sparse.csr_matrix, item_vectors: np.ndarray) -> np.ndarray:
    """Users x dim: engagement-weighted mean of item vectors, normalised (zero if no history)."""
    return _unit_rows(np.asarray(engagement.T @ item_vectors, dtype=np.float64)).astype(np.float32)


def user_tastes(engagement: sparse.csr_matrix, item_categories: list[str], top: int) -> list[list[str]]:
    """Each user's `top` categories by engagement weight."""
    names, codes = np.unique(np.asarray(item_categories, dtype=object), return_inverse=True)
    onehot = sparse.csr_matrix((np.ones(len(codes)), (np.arange(len(codes)), codes)),
                               shape=(len(codes), len(names)))
    per_user = np.asarray((engagement.T @ onehot).todense())
    out = []
    for row in per_user:
        order = np.argsort(-row, kind="stable")[:top]
        out.append([str(names[c]) for c in order if row[c] > 0 and names[c]])
    return out


def popularity(engagement: sparse.csr_matrix) -> np.ndarray:
    """Decayed engagement per item."""
    return np.asarray(engagement.sum(axis=1)).ravel()
