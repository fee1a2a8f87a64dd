"""Nearest-neighbour search over an index version's item vectors: the only module that imports
annoy, and the one place that chooses between the index kinds.

- `ivf` (the default): an inverted file of k-means partitions, exact search inside the nearest
  ones (`retrieval/ivf.py`); memory-mapped, so every worker shares one copy.
- `annoy`: random-projection trees. Vectors are unit length and the metric is `angular`, so
  for Annoy's distance d the cosine similarity is 1 - d^2 / 2. (Annoy 1.17.3's `dot` metric
  has very poor recall.) Also memory-mapped.

Below `exact_below` items, the vectors themselves are searched exactly (numpy is faster there
and has perfect recall). `benchmarks.recall` measures the kinds side by side.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from annoy import AnnoyIndex
from tqdm import tqdm

from retrieval.ivf import FILES as IVF_FILES
from retrieval.ivf import IVFIndex, auto_nlist, build_ivf, nearest_first

KINDS = ("ivf", "annoy")
ANNOY_FILE = "items.ann"
log = logging.getLogger(__name__)


def build_annoy(vectors: np.ndarray, path: str | Path, n_trees: int, seed: int = 42,
                progress: bool = False) -> None:
    """Build an Annoy index over `vectors` (row i gets Annoy id i) and save it to `path`."""
    n, dim = vectors.shape
    index = AnnoyIndex(dim, "angular")
    index.set_seed(seed)
    for i in tqdm(range(n), desc="annoy: add items", unit="item", disable=not progress, mininterval=1.0):
        index.add_item(i, vectors[i])
    index.build(n_trees, n_jobs=1)  # n_jobs=1 keeps the build deterministic for a seed
    index.save(str(path))
    index.unload()


def build_index(kind: str, vectors: np.ndarray, directory: str | Path, *, n_trees: int = 50, nlist: int = 0,
                seed: int = 42, progress: bool = False) -> None:
    """Write the files of one index kind for `vectors` into an index version's directory."""
    if kind == "annoy":
        build_annoy(vectors, Path(directory) / ANNOY_FILE, n_trees, seed, progress)
    elif kind == "ivf":
        build_ivf(vectors, directory, nlist or auto_nlist(len(vectors)), seed, progress)
    else:
        raise ValueError(f"unknown index kind {kind!r} (expected one of {', '.join(KINDS)})")


def built_kinds(directory: str | Path) -> list[str]:
    """The index kinds whose files an index version's directory holds."""
    directory = Path(directory)
    kinds = []
    if all((directory / f).exists() for f in IVF_FILES):
        kinds.append("ivf")
    if (directory / ANNOY_FILE).exists():
        kinds.append("annoy")
    return kinds


class _Annoy:
    def __init__(self, path: Path, dim: int, search_k: int):
        self._index = AnnoyIndex(dim, "angular")
        self._index.load(str(path))  # mmap, no copy
        self.search_k = search_k
        self.n_items = self._index.get_n_items()

    def search(self, query: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        ids, dist = self._index.get_nns_by_vector(query, n, search_k=self.search_k, include_distances=True)
        dist = np.asarray(dist, dtype=np.float32)
        return np.asarray(ids, dtype=np.int64), 1.0 - dist * dist / 2.0

    def close(self) -> None:
        self._index.unload()


class VectorIndex:
    """The search of one index version: the configured kind when the version has it (a version
    built with the other kind is served with that one, and says so), or exact search below
    `exact_below` items."""

    def __init__(self, directory: str | Path, dim: int, search_k: int = -1, vectors: np.ndarray | None = None,
                 exact_below: int = 0, kind: str = "ivf"):
        directory = Path(directory)
        if vectors is not None and len(vectors) < exact_below:
            self.kind, self._ann = "exact", None
            self._vectors = np.asarray(vectors, dtype=np.float32)
            self.n_items = len(self._vectors)
            return
        self._vectors = None
        have = built_kinds(directory)
        if not have:
            raise FileNotFoundError(f"index version {directory} has no index files ({', '.join(KINDS)})")
        self.kind = kind if kind in have else have[0]
        if self.kind != kind:
            log.warning("index version %s has no %s index; searching its %s index (a full build makes the %s one)",
                        directory.name, kind, self.kind, kind)
        self._ann = IVFIndex(directory, search_k) if self.kind == "ivf" \
            else _Annoy(directory / ANNOY_FILE, dim, search_k)
        self.n_items = self._ann.n_items

    @property
    def exact(self) -> bool:
        return self._vectors is not None

    @property
    def search_k(self) -> int:
        return self._ann.search_k if self._ann is not None else -1

    @search_k.setter
    def search_k(self, value: int) -> None:
        if self._ann is not None:
            self._ann.search_k = value

    def search(self, query: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Ids and cosine similarities of the (approximately) `n` nearest items, nearest first."""
        if self.n_items == 0 or n <= 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        if self._vectors is not None:
            sims = self._vectors @ np.asarray(query, dtype=np.float32)
            top = nearest_first(sims, n)
            return top.astype(np.int64), sims[top]
        return self._ann.search(query, n)

    def close(self) -> None:
        if self._ann is not None and hasattr(self._ann, "close"):
            self._ann.close()
