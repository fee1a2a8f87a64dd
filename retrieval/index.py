"""Approximate nearest neighbours with Annoy. The only module that imports annoy.

Vectors are unit length and the metric is `angular`, so for Annoy's distance d the cosine
similarity is 1 - d^2 / 2. (Annoy 1.17.3's `dot` metric has very poor recall.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from annoy import AnnoyIndex
from tqdm import tqdm


def build_annoy(vectors: np.ndarray, path: str | Path, n_trees: int, seed: int = 42,
                progress: bool = False) -> None:
    """Build an index over `vectors` (row i gets Annoy id i) and save it to `path`."""
    n, dim = vectors.shape
    index = AnnoyIndex(dim, "angular")
    index.set_seed(seed)
    for i in tqdm(range(n), desc="annoy: add items", unit="item", disable=not progress, mininterval=1.0):
        index.add_item(i, vectors[i])
    index.build(n_trees, n_jobs=1)  # n_jobs=1 keeps the build deterministic for a seed
    index.save(str(path))
    index.unload()


class VectorIndex:
    """A memory-mapped Annoy index; shared by every process on the host that loads it. Below
    `exact_below` items, the same vectors are searched exactly instead (numpy is faster there
    and has perfect recall)."""

    def __init__(self, path: str | Path, dim: int, search_k: int = -1, vectors: np.ndarray | None = None,
                 exact_below: int = 0):
        self._index = AnnoyIndex(dim, "angular")
        self._index.load(str(path))  # mmap, no copy
        self.search_k = search_k
        self.n_items = self._index.get_n_items()
        self._vectors = np.asarray(vectors, dtype=np.float32) if vectors is not None and self.n_items < exact_below \
            else None

    @property
    def exact(self) -> bool:
        return self._vectors is not None

    def search(self, query: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Ids and cosine similarities of the (approximately) `n` nearest items, nearest first."""
        if self.n_items == 0 or n <= 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        if self._vectors is not None:
            sims = self._vectors @ np.asarray(query, dtype=np.float32)
            top = np.argpartition(-sims, n - 1)[:n] if n < len(sims) else np.arange(len(sims))
            top = top[np.argsort(-sims[top], kind="stable")]
            return top.astype(np.int64), sims[top]
        ids, dist = self._index.get_nns_by_vector(query, n, search_k=self.search_k, include_distances=True)
        dist = np.asarray(dist, dtype=np.float32)
        return np.asarray(ids, dtype=np.int64), 1.0 - dist * dist / 2.0

    def close(self) -> None:
        self._index.unload()
