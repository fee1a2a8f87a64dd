"""An inverted-file index: spherical k-means partitions, exact search inside the nearest ones.

Vectors are unit length; similarity is the dot product. A build clusters a sample of the
vectors into `nlist` partitions and writes the vectors again in partition order, so that a
partition is one contiguous slice of a memory-mapped file: every process that loads the
index shares one copy through the page cache, and a query reads whole slices, no gather.

    ivf_centroids.npy   (nlist, dim) float32, unit length
    ivf_offsets.npy     (nlist + 1,) int64: partition p is positions offsets[p]:offsets[p+1]
    ivf_rows.npy        (n,) int64: the item row at each position
    ivf_vectors.npy     (n, dim) float32: the item vectors in position order

A query ranks the centroids and scans partitions, nearest first, until it has scanned at
least `search_k` vectors (and at least one partition); the answer is the exact top n of
what it scanned. Recall depends on how clustered the vectors are; `benchmarks.recall`
measures it against exact search.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from retrieval.columns import mapped

FILES = ("ivf_centroids.npy", "ivf_offsets.npy", "ivf_rows.npy", "ivf_vectors.npy")
_CHUNK = 8192  # rows per assignment block: (chunk x nlist) float32 scores stay small


def nearest_first(sims: np.ndarray, n: int) -> np.ndarray:
    """Positions of the `n` largest of `sims`, largest first, ties to the earlier position:
    a stable sort's first n.

    Sorting all of them, even partially, costs ~10 ns an element (0.2 ms for 20,000): a cut
    is guessed from a strided sample and only what clears it is sorted. Exact: the cut is
    used only when at least n values clear it, so the n-th largest and all above it do.

    >>> nearest_first(np.array([0.1, 0.9, 0.5, 0.9]), 2).tolist()
    [1, 3]
    >>> nearest_first(np.array([np.nan, 1.0, 2.0]), 2).tolist()  # NaN last, as the sort puts it
    [2, 1]
    """
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    if np.isnan(sims).any():
        sims = np.where(np.isnan(sims), -np.inf, sims)
    if n >= len(sims):
        return np.argsort(-sims, kind="stable")
    if len(sims) >= _SAMPLED_ABOVE and n * 8 <= len(sims):
        sample = sims[:: len(sims) // _SAMPLE]
        want = min(len(sample) - 1, 2 * (n * len(sample)) // len(sims) + 8)  # ~2x the share, and slack
        cut = np.partition(sample, len(sample) - 1 - want)[len(sample) - 1 - want]
        kept = np.flatnonzero(sims >= cut)
        if len(kept) >= n:
            return kept[np.argsort(-sims[kept], kind="stable")[:n]]
    nth = np.partition(sims, len(sims) - n)[len(sims) - n]
    above = np.flatnonzero(sims > nth)
    top = np.concatenate([above, np.flatnonzero(sims == nth)[: n - len(above)]])
    top.sort()
    return top[np.argsort(-sims[top], kind="stable")]


_SAMPLE = 1024        # values in the sample that guesses the cut
_SAMPLED_ABOVE = 4096  # below this, one partial sort is as fast


def auto_nlist(n: int) -> int:
    """Partitions for n vectors when the config leaves it to us: about 2 sqrt(n) (a partition of
    ~500 vectors at 1M items), at least 1, never more than n."""
    return max(1, min(n, int(round(2 * np.sqrt(n)))))


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def _assign(vectors: np.ndarray, centroids: np.ndarray, progress: bool = False) -> np.ndarray:
    """The nearest centroid of every vector, in blocks."""
    out = np.empty(len(vectors), dtype=np.int64)
    for start in tqdm(range(0, len(vectors), _CHUNK), desc="ivf: assign", unit="block", disable=not progress,
                      mininterval=1.0):
        block = np.asarray(vectors[start:start + _CHUNK], dtype=np.float32)
        out[start:start + len(block)] = np.argmax(block @ centroids.T, axis=1)
    return out


def train_centroids(vectors: np.ndarray, nlist: int, seed: int, iterations: int = 10,
                    sample_per_list: int = 64, progress: bool = False) -> np.ndarray:
    """Spherical k-means on a sample: (nlist, dim) unit centroids. A partition left empty is
    re-seeded with a random sample vector, so none stays empty for long."""
    rng = np.random.default_rng(seed)
    n = len(vectors)
    nlist = max(1, min(nlist, n))
    take = min(n, nlist * sample_per_list)
    sample = np.asarray(vectors[np.sort(rng.choice(n, size=take, replace=False))], dtype=np.float32)
    centroids = sample[rng.choice(take, size=nlist, replace=False)].copy()
    for _ in tqdm(range(iterations), desc="ivf: k-means", unit="iter", disable=not progress):
        labels = _assign(sample, centroids)
        sums = np.zeros_like(centroids)
        np.add.at(sums, labels, sample)
        counts = np.bincount(labels, minlength=nlist)
        empty = counts == 0
        if empty.any():
            sums[empty] = sample[rng.choice(take, size=int(empty.sum()), replace=False)]
        centroids = _normalise(sums).astype(np.float32)
    return centroids


def build_ivf(vectors: np.ndarray, directory: str | Path, nlist: int, seed: int = 42,
              progress: bool = False) -> None:
    """Cluster `vectors` (row i is item i) and write the four files into `directory`."""
    directory = Path(directory)
    vectors = np.asarray(vectors, dtype=np.float32)
    dim = vectors.shape[1] if vectors.ndim == 2 else 0
    if len(vectors) == 0:
        centroids, labels = np.zeros((0, dim), np.float32), np.zeros(0, np.int64)
    else:
        centroids = train_centroids(vectors, nlist, seed, progress=progress)
        labels = _assign(vectors, centroids, progress)
    order = np.argsort(labels, kind="stable")
    offsets = np.concatenate([[0], np.cumsum(np.bincount(labels, minlength=len(centroids)))]).astype(np.int64)
    np.save(directory / "ivf_centroids.npy", centroids)
    np.save(directory / "ivf_offsets.npy", offsets)
    np.save(directory / "ivf_rows.npy", order.astype(np.int64))
    np.save(directory / "ivf_vectors.npy", np.ascontiguousarray(vectors[order]))


class IVFIndex:
    """A loaded inverted-file index (the big arrays memory-mapped)."""

    def __init__(self, directory: str | Path, search_k: int):
        directory = Path(directory)
        self.centroids = np.load(directory / "ivf_centroids.npy")
        self.offsets = np.load(directory / "ivf_offsets.npy")
        self.rows, self.vectors = mapped(directory / "ivf_rows.npy"), mapped(directory / "ivf_vectors.npy")
        self._bounds = list(zip(self.offsets[:-1].tolist(), self.offsets[1:].tolist()))
        self.sizes = np.diff(self.offsets)
        self.search_k = search_k
        self.n_items = len(self.rows)

    def search(self, query: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows and similarities of the nearest `n` among the scanned partitions, nearest first."""
        if self.n_items == 0 or n <= 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        query = np.asarray(query, dtype=np.float32)
        want = max(n, self.search_k) if self.search_k >= 0 else self.n_items
        order = self._nearest_partitions(query, want)
        scanned = np.cumsum(self.sizes[order])
        probes = order[: int(np.searchsorted(scanned, want)) + 1].tolist()
        vectors, bounds = self.vectors, self._bounds
        sims = np.concatenate([vectors[bounds[p][0]:bounds[p][1]] @ query for p in probes])
        top = nearest_first(sims, n)
        # a position in `sims` -> its probe -> its place in the file
        ends = scanned[: len(probes)]
        k = np.searchsorted(ends, top, side="right")
        starts = self.offsets[:-1][np.asarray(probes)]
        positions = starts[k] + top - (ends[k] - self.sizes[np.asarray(probes)][k])
        return self.rows[positions].astype(np.int64), sims[top]

    def _nearest_partitions(self, query: np.ndarray, want: int) -> np.ndarray:
        """Partitions by centroid similarity, nearest first: enough of them to hold `want`
        vectors (twice the typical number, then all of them if those fall short)."""
        sims = self.centroids @ query
        guess = 2 * int(np.ceil(want * len(sims) / max(self.n_items, 1))) + 8
        if guess < len(sims):
            some = nearest_first(sims, guess)
            if self.sizes[some].sum() >= want:
                return some
        return nearest_first(sims, len(sims))

    def close(self) -> None:
        """Drop the maps (the files stay valid for other processes)."""
        self.rows = self.vectors = np.zeros(0)
        self.n_items = 0
