"""A built index version: everything retrieval needs, in one directory, switched atomically.

    <data.dir>/index/CURRENT          name of the version being served
    <data.dir>/index/v000003/
        ivf_*.npy      the inverted-file index (index.kind = "ivf"), or
        items.ann      the Annoy index (index.kind = "annoy"; row i = item i)
        vectors.npy    item vectors, float32, unit length
        ids.bin, ids.off.npy       item ids in row order (retrieval/columns.py)
        ids.hash.npy, ids.order.npy  item id -> row
        lines.bin, lines.off.npy   each item's cached Vowpal Wabbit feature text, in row order
        features.off.npy, features.hash.npy, features.value.npy   the same lines' features hashed
                                   as VW hashes them (CSR by row), for scoring without the parser
        in_stock.npy, published_at.npy, category.npy, popularity.npy   per row
        categories.json            category names, by code
        embedder.npz   content encoder (tfidf or minilm), fitted projection + ridge map, for items added later
        items.jsonl    the catalog as built (input of the next rebuild)
        meta.json      version, embedding space, sizes, build time, catalog stream cursor
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrieval.columns import IdMap, Strings, mapped
from retrieval.embeddings import ItemEmbedder
from retrieval.index import VectorIndex, build_index


@dataclass
class Bundle:
    path: Path
    meta: dict
    ids: Strings                # memory-mapped: shared by the processes that load the version
    lines: Strings
    row_of: IdMap
    vectors: np.ndarray
    in_stock: np.ndarray
    published_at: np.ndarray
    category: np.ndarray        # int code per row
    category_names: list[str]
    popularity: np.ndarray      # 0..1 per row, from the last full build
    embedder: ItemEmbedder
    index: VectorIndex
    features: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # (offsets, hashes, values), mapped


    @property
    def version(self) -> str:
        return self.path.name

    @property
    def space(self) -> str:
        """The embedding space: the full build that fitted the vectors (kept by incremental builds)."""
        return self.meta.get("space", self.version)


def index_root(data_dir: Path) -> Path:
    return Path(data_dir) / "index"


def current_path(data_dir: Path) -> Path | None:
    """The directory of the version being served, or None when nothing was built."""
    pointer = index_root(data_dir) / "CURRENT"
    if not pointer.exists():
        return None
    path = index_root(data_dir) / pointer.read_text().strip()
    return path if (path / "meta.json").exists() else None


def read_meta(path: Path | None) -> dict:
    """An index version's meta.json ({} for no version)."""
    return json.loads((Path(path) / "meta.json").read_text()) if path is not None else {}


def write_bundle(data_dir: Path, *, items: list[dict], vectors: np.ndarray, lines: list[str],
                 embedder: ItemEmbedder, meta: dict, n_trees: int, seed: int, kind: str = "ivf", nlist: int = 0,
                 progress: bool = False, keep: int = 3, publish: bool = True,
                 popularity: np.ndarray | None = None, features=None) -> Path:
    """Write a new version next to the served one; with `publish`, point CURRENT at it.
    `meta["space"]` names the embedding space; a full build omits it and starts its own."""
    root = index_root(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    existing = sorted(p.name for p in root.glob("v[0-9]*") if p.is_dir())
    number = int(existing[-1][1:]) + 1 if existing else 1
    name = f"v{number:06d}"
    tmp = root / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    build_index(kind, vectors, tmp, n_trees=n_trees, nlist=nlist, seed=seed, progress=progress)
    np.save(tmp / "vectors.npy", np.ascontiguousarray(vectors, dtype=np.float32))
    ids = [i["item_id"] for i in items]
    Strings.write(ids, tmp, "ids")
    IdMap.write(ids, tmp)
    Strings.write(lines, tmp, "lines")
    if features is not None:  # (offsets, hashes, values, what the hashes depend on)
        write_features(tmp, *features)
        meta = {**meta, "features_hashed_by": features[3]}
    names, codes = np.unique(np.array([i.get("category", "") for i in items], dtype=object), return_inverse=True)
    columns = {"in_stock": np.array([i["in_stock"] for i in items], dtype=bool),
               "published_at": np.array([i["published_at"] for i in items], dtype=np.int64),
               "category": codes.astype(np.int32),
               "popularity": np.zeros(len(items)) if popularity is None else np.asarray(popularity, dtype=np.float64)}
    for column, values in columns.items():  # one file each, memory-mapped by the workers: shared, not copied
        np.save(tmp / f"{column}.npy", values)
    (tmp / "categories.json").write_text(json.dumps([str(n) for n in names], ensure_ascii=False))
    embedder.save(tmp / "embedder.npz")
    with open(tmp / "items.jsonl", "w", encoding="utf-8") as fh:
        for item in items:
            fh.write(json.dumps(item, ensure_ascii=False) + "\n")
    meta = {**meta, "version": name, "n_items": len(items), "dim": int(vectors.shape[1]), "index_kind": kind}
    meta.setdefault("space", name)  # a full build starts a new embedding space
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    os.replace(tmp, root / name)
    if publish:
        publish_bundle(data_dir, root / name, keep)
    return root / name


def write_features(path: Path, offsets: np.ndarray, hashes: np.ndarray, values: np.ndarray, *_) -> None:
    for name, array in (("off", offsets), ("hash", hashes), ("value", values)):
        np.save(path / f"features.{name}.npy", array)


def read_features(path: Path, meta: dict, hashed_by: str | None) -> tuple[np.ndarray, ...] | None:
    """The version's hashed item features, memory-mapped, if it has them and they were hashed
    as this process hashes (`hashed_by`: the same VW release); else None."""
    if hashed_by is None or meta.get("features_hashed_by") != hashed_by or not (path / "features.off.npy").exists():
        return None
    arrays = tuple(mapped(path / f"features.{name}.npy") for name in ("off", "hash", "value"))
    return arrays if len(arrays[0]) == meta["n_items"] + 1 else None


def publish_bundle(data_dir: Path, path: Path, keep: int = 3) -> None:
    """Point CURRENT at `path` (atomic rename); versions beyond the newest `keep` go."""
    root = index_root(data_dir)
    pointer_tmp = root / ".CURRENT.tmp"
    pointer_tmp.write_text(path.name)
    os.replace(pointer_tmp, root / "CURRENT")
    versions = sorted(p.name for p in root.glob("v[0-9]*") if p.is_dir())
    for old in versions[:max(0, len(versions) - keep)]:  # mapped files stay valid once unlinked
        shutil.rmtree(root / old, ignore_errors=True)


def load_bundle(path: Path, search_k: int, exact_below: int = 0, kind: str = "ivf",
                hashed_by: str | None = None) -> Bundle:
    meta = json.loads((path / "meta.json").read_text())
    if (path / "ids.bin").exists():
        ids, lines = Strings.load(path, "ids"), Strings.load(path, "lines")
        row_of = IdMap.load(ids, path)
    else:  # written by a release before 2026-12: text files, read into memory
        ids, lines = Strings.of(_read_lines(path / "ids.txt")), Strings.of(_read_lines(path / "lines.txt"))
        row_of = IdMap.of(ids)
    vectors = mapped(path / "vectors.npy")
    in_stock, published_at, category, category_names, popularity = read_attributes(path)
    if not (len(ids) == len(lines) == len(vectors) == len(in_stock) == meta["n_items"]):
        raise ValueError(f"index version {path} is inconsistent: {meta['n_items']} items in meta.json, "
                         f"{len(ids)} ids, {len(lines)} lines, {len(vectors)} vectors")
    index = VectorIndex(path, meta["dim"], search_k, vectors, exact_below, kind)
    return Bundle(path, meta, ids, lines, row_of, vectors, in_stock, published_at, category, category_names, popularity,
                  ItemEmbedder.load(path / "embedder.npz"), index, read_features(path, meta, hashed_by))


def read_attributes(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], np.ndarray]:
    """(in_stock, published_at, category code, category names, popularity) per row of a
    version, the arrays memory-mapped (read-only)."""
    if (path / "categories.json").exists():
        def column(name):
            return mapped(path / f"{name}.npy")

        names = json.loads((path / "categories.json").read_text(encoding="utf-8"))
        return column("in_stock"), column("published_at"), column("category"), names, column("popularity")
    with np.load(path / "attrs.npz") as attrs:  # written by a release before 2026-12-04: read into memory
        popularity = attrs["popularity"] if "popularity" in attrs else np.zeros(len(attrs["in_stock"]))
        return (attrs["in_stock"], attrs["published_at"], attrs["category"],
                [str(n) for n in attrs["category_names"]], popularity)


def read_items(path: Path) -> list[dict]:
    with open(path / "items.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _read_lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return text.split("\n") if text else []
