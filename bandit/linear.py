"""Scoring many candidates straight from a model's weights, without VW's text parser.

A `--cb_adf` model's score for one action is linear in its features: the constant, every
shared and action feature's weight x value, and for each crossed pair of namespaces
(`--interactions UI`: every `User` feature with every `Item` one) the weight at the pair's
hash x both values. A serving process that does not learn holds its model unchanged until
the next snapshot, so it can read the weights once (`bandit.saved.dense_weights`) and score a
request's candidates with a few numpy gathers over their pre-hashed item features
(`ItemFeatures`, written by the build) instead of formatting and parsing a line per
candidate. `LinearModel.of` checks the result against VW's own predictions on a set of
probe examples and declines (None) when they differ, when the model has features this
module does not handle (`--lrq`, interactions not of a shared namespace with `Item`), or
when the weights cannot be read: the caller then scores through VW as before.

A process that learns inline keeps its copies exact instead: an update moves only the
weights of the learned example's features, the constant and their crossed pairs
(`LinearModel.touched`), and those are read back from VW (`bandit.vw.VWModel.synced_linear`).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

import numpy as np

from bandit.features import _STEPS, action_line
from bandit.saved import dense_weights, plain_scale, saved_options
from bandit.vw import _CONSTANT, _FNV_PRIME, VWModel, hash_version, line_features

ITEM = "I"          # the cached item features' namespace (`Item`), by first letter as VW pairs them
EXTRAS = {"sims": ("Sim", "s"), "live": ("Live", "s"), "pops": ("Pop", "p"), "quality": ("Q", "q")}
_SHARED = "UCRZ"    # namespaces of the shared line (bandit.features.shared_line, the priors' `Z`)
TOLERANCE = 1e-4    # |linear - VW| allowed per probe score (float32 sums in another order)


@dataclass(frozen=True)
class ItemFeatures:
    """The item features of some candidates, flattened: feature j belongs to candidate
    `owner[j]` and has `hashes[j]` (VW's hash in the `Item` namespace) and `values[j]`."""

    owner: np.ndarray    # int64
    hashes: np.ndarray   # uint64
    values: np.ndarray   # float32
    n: int               # candidates

    @classmethod
    def of_lines(cls, lines: list[str]) -> "ItemFeatures | None":
        """From cached item lines (`bandit.features.item_line`); None if a line has features in
        another namespace."""
        hashed = hash_lines(lines)
        if hashed is None:
            return None
        offsets, hashes, values, _ = hashed
        return cls(np.repeat(np.arange(len(lines), dtype=np.int64), np.diff(offsets)), hashes.astype(np.uint64),
                   values, len(lines))

    def take(self, positions: np.ndarray) -> "ItemFeatures":
        """The features of the candidates at `positions`, renumbered in that order."""
        new = np.full(self.n, -1, dtype=np.int64)
        new[positions] = np.arange(len(positions))
        keep = new[self.owner] >= 0
        return ItemFeatures(new[self.owner[keep]], self.hashes[keep], self.values[keep], len(positions))


@dataclass(frozen=True)
class Design:
    """One request's features as weight indices (masked) and values: the shared features and
    the constant; each candidate's item features (`owner`: whose); the crossed pairs (a row
    per crossed shared feature, a column per item feature); the per-candidate extras."""

    shared: np.ndarray
    shared_values: np.ndarray
    items: np.ndarray
    pairs: np.ndarray
    pair_values: np.ndarray
    owner: np.ndarray
    values: np.ndarray
    n: int
    extras: np.ndarray
    extra_values: np.ndarray


def hash_line(line: str) -> tuple[np.ndarray, np.ndarray] | None:
    """One cached item line's feature (hashes uint64, values float32); None if it has features
    outside the `Item` namespace."""
    features = line_features(line)
    if any(space[:1] != ITEM for space, _, _ in features):
        return None
    return (np.asarray([h for _, h, _ in features], dtype=np.uint64),
            np.asarray([v for _, _, v in features], dtype=np.float32))


def hash_lines(lines) -> tuple[np.ndarray, np.ndarray, np.ndarray, str] | None:
    """CSR arrays (offsets int64, hashes uint32, values float32) of many item lines and what
    the hashes depend on, for a build to store beside them; None if a line cannot be hashed."""
    offsets = np.zeros(len(lines) + 1, dtype=np.int64)
    hashes, values = [], []
    for i, line in enumerate(lines):
        for space, h, v in line_features(line):
            if space[:1] != ITEM:
                return None
            hashes.append(h)
            values.append(v)
        offsets[i + 1] = len(hashes)
    return offsets, np.asarray(hashes, dtype=np.uint32), np.asarray(values, dtype=np.float32), hash_version()


def quantised(values) -> np.ndarray:
    """A request's similarity / popularity / quality as the action lines write them (4 decimals
    in [-1, 1], `bandit.features.action_line`), as VW reads them (float32)."""
    v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)
    return (np.rint(np.clip(v, -1.0, 1.0) * _STEPS) / _STEPS).astype(np.float32)


class LinearModel:
    """A copy of a model's weights that scores candidates as VW would: frozen in a process that
    serves a snapshot; kept equal to VW's in one that learns (`VWModel.synced_linear` reads back
    the weights its updates moved into it, `update`). A score reads the weights under the
    copy's lock, so it sees them before or after an update, never halfway."""

    def __init__(self, weights: np.ndarray, crossed: str):
        self.weights = weights
        self.mask = np.uint64(len(weights) - 1)
        self.crossed = crossed  # shared namespaces (first letters) crossed with `Item`
        self._extra_hash = {key: line_features(f"|{space} {name}")[0][1] for key, (space, name) in EXTRAS.items()}
        self._lock = threading.Lock()

    @classmethod
    def of(cls, model: VWModel, blob: bytes | None = None, *, learns: bool = False) -> "LinearModel | None":
        """The model's weights as they are now (`blob`: as it was saved, if at hand), checked
        against its own predictions; None if they cannot be read or do not agree. With `learns`
        (a copy the model keeps up to date as it learns), also None for a model whose updates
        move more than the weights its example touches (`--l1` truncates every weight at
        prediction, `--l2` scales every prediction, by what all updates did)."""
        blob = model.to_bytes() if blob is None else blob
        options = saved_options(blob)  # the model's own command line: a config edited since does not count
        if learns and not (_follows(model.args) and (options is None or _follows(options[0]))):  # --l2 is not saved
            return None
        crossed = _crossed(options[0]) if options is not None else None
        weights = dense_weights(blob, model.num_weights()) if crossed is not None and plain_scale(blob) else None
        if weights is None:
            return None
        linear = cls(weights, crossed)
        return linear if linear.agrees_with(model) else None

    @classmethod
    def like(cls, checked: "LinearModel", header: bytes, blob: bytes) -> "LinearModel | None":
        """The weights of `blob`, saved with the very `header` (VW's release, the number of bits,
        the label range, the command line) of a model whose weights (`checked`) were read and
        checked against VW's predictions: a bootstrap replica of the same snapshot, read
        without loading it into VW. None if its header or its layout differ, or its
        predictions are not its weights as they are (`plain_scale`: `model.l2` > 0)."""
        found = saved_options(blob)
        if found is None or blob[:found[1]] != header or not plain_scale(blob):
            return None
        weights = dense_weights(blob, len(checked.weights))
        return None if weights is None else cls(weights, checked.crossed)

    def copy(self) -> "LinearModel":
        """A copy of its own (for a replica that starts as the model and learns apart)."""
        with self._lock:
            return LinearModel(self.weights.copy(), self.crossed)

    def touched(self, shared: str, action: str) -> np.ndarray:
        """The weights an update on `action` (the line as learned, without its label) under
        `shared` can move (`--cb_adf`: VW learns the chosen action's example alone, the shared
        features merged into it): every feature of both lines, the constant, and each crossed
        pair of a shared namespace in `crossed` with an `Item` feature (repeats left in)."""
        features = line_features(shared) + line_features(action)
        n = len(features)
        hashes = np.fromiter((h for _, h, _ in features), dtype=np.uint64, count=n)
        crossed = np.fromiter((space[:1] in self.crossed for space, _, _ in features), dtype=bool, count=n)
        items = np.fromiter((space[:1] == ITEM for space, _, _ in features), dtype=bool, count=n)
        pairs = (hashes[crossed] * np.uint64(_FNV_PRIME))[:, None] ^ hashes[items][None, :]
        return (np.concatenate([hashes, [np.uint64(_CONSTANT)], pairs.ravel()]) & self.mask).astype(np.int64)

    def update(self, at: np.ndarray, values: list[float]) -> None:
        """Set the weights at `at` (a model that learned: VW's weights there now)."""
        with self._lock:
            self.weights[at] = values

    def matches(self, blob: bytes) -> bool:
        """Whether these are exactly the weights of `blob` (the model saved), all of them."""
        weights = dense_weights(blob, len(self.weights)) if plain_scale(blob) else None
        with self._lock:
            return weights is not None and np.array_equal(weights, self.weights)

    def design(self, shared: str | list, items: ItemFeatures, **extras) -> "Design":
        """Where one request's features sit among the weights (shared by every model of the
        same arguments: the mean and its replicas): the shared line (or its `line_features`),
        the candidates' item features and the request's `sims`, `live`, `pops`, `quality` per
        candidate (None: left out, as the action lines leave them out)."""
        mask = self.mask
        parsed = line_features(shared) if isinstance(shared, str) else shared
        shared_h = np.asarray([h for _, h, _ in parsed], dtype=np.uint64)
        shared_v = np.asarray([v for _, _, v in parsed], dtype=np.float64)
        crossed = np.asarray([space[:1] in self.crossed for space, _, _ in parsed], dtype=bool)
        first = (shared_h[crossed] * np.uint64(_FNV_PRIME))[:, None]
        given = [(key, values) for key, values in extras.items() if values is not None]
        return Design(
            shared=np.append(shared_h & mask, np.uint64(_CONSTANT) & mask).astype(np.int64),
            shared_values=np.append(shared_v, 1.0),
            items=(items.hashes & mask).astype(np.int64),
            pairs=((first ^ items.hashes[None, :]) & mask).astype(np.int64),
            pair_values=shared_v[crossed], owner=items.owner, values=items.values.astype(np.float64), n=items.n,
            extras=np.asarray([self._extra_hash[key] & int(mask) for key, _ in given], dtype=np.int64),
            extra_values=np.vstack([quantised(values) for _, values in given]).astype(np.float64) if given
            else np.zeros((0, items.n)))

    def score(self, shared: str | list, items: ItemFeatures | None = None, **extras) -> np.ndarray:
        """Expected reward (VW's negated cost) of each candidate (`design`'s arguments, or a
        `Design` made by a model of the same arguments)."""
        design = shared if isinstance(shared, Design) else self.design(shared, items, **extras)
        w = self.weights
        with self._lock:  # a model that learns updates `w` in place
            per = w[design.items].astype(np.float64)
            pairs = w[design.pairs] if len(design.pair_values) else None
            constant = float(w[design.shared] @ design.shared_values)
            extra = w[design.extras].astype(np.float64) if len(design.extras) else None
        if pairs is not None:
            per += design.pair_values @ pairs
        out = np.bincount(design.owner, weights=per * design.values, minlength=design.n)
        out += constant
        if extra is not None:
            out += extra @ design.extra_values
        return -out

    def score_lines(self, shared: str, actions: list[str]) -> np.ndarray:
        """`score` of whole action lines (any of our namespaces), as VW would score them: for a
        model kept without its VW copy (`VWModel.release`) when no hashed features are at hand."""
        return self.score_many_lines([self], shared, actions)[0]

    @staticmethod
    def score_many_lines(models: list["LinearModel"], shared: str, actions: list[str]) -> np.ndarray:
        """(len(models), len(actions)): the lines parsed and hashed once for models of the same
        arguments (a model's bootstrap replicas)."""
        owner, hashes, values, plain = [], [], [], []
        for i, line in enumerate(actions):
            for space, h, v in line_features(line):
                if space[:1] == ITEM:
                    owner.append(i)
                    hashes.append(h)
                    values.append(v)
                else:  # crossed with nothing (`Sim`, `Live`, `Pop`, `Q`, `Xpos`)
                    plain.append((i, h, v))
        items = ItemFeatures(np.asarray(owner, dtype=np.int64), np.asarray(hashes, dtype=np.uint64),
                             np.asarray(values, dtype=np.float32), len(actions))
        design = models[0].design(shared, items)
        at = np.asarray([i for i, _, _ in plain], dtype=np.int64)
        where = (np.asarray([h for _, h, _ in plain], dtype=np.uint64) & models[0].mask).astype(np.int64)
        weight = np.asarray([v for _, _, v in plain], dtype=np.float64)
        return np.vstack([m.score(design) - np.bincount(at, weights=m.weights[where] * weight, minlength=len(actions))
                          for m in models])  # frozen copies only (released models do not learn)

    def agrees_with(self, model: VWModel) -> bool:
        """Scores of probe examples (every namespace, crossed pairs, values) equal VW's."""
        shared = ("shared |User age=25-34 loc=fr taste=a taste=b |Context device=mobile hour=21 "
                  "|Recent cat=a len=3 since=2")
        lines = [f"|Item id=p{i} cat={'ab'[i % 2]} price={i % 5}" for i in range(24)]
        rng = np.random.default_rng(0)
        extras = {key: rng.uniform(-1, 1, len(lines)) if key != "pops" else rng.uniform(0, 1, len(lines))
                  for key in EXTRAS}
        items = ItemFeatures.of_lines(lines)
        if items is None:
            return False
        mine = self.score(shared, items, **extras)
        actions = [action_line(line, extras["sims"][i], extras["live"][i], extras["pops"][i], extras["quality"][i])
                   for i, line in enumerate(lines)]
        theirs = model.predict(shared, actions)
        return bool(np.all(np.abs(mine - theirs) <= TOLERANCE * (1.0 + np.abs(theirs))))


def _follows(args: str) -> bool:
    """Whether a model under `args` changes only the weights its example touches when it
    learns (no L1 or L2 regularisation, which move or scale the rest)."""
    try:
        return all(float(value) == 0.0 for value in re.findall(r"--l[12]\s+(\S+)", args))
    except ValueError:
        return False


def _crossed(args: str) -> str | None:
    """The shared namespaces crossed with `Item` under `args`; None if the model has features
    this module does not compute (low-rank or other interactions)."""
    if re.search(r"--lrq|--quadratic|-q\b|--cubic|--nn|--noconstant|--ignore|--keep", args):
        return None
    crossed = ""
    for pair in re.findall(r"--interactions\s+(\S+)", args):
        if len(pair) != 2 or pair[1] != ITEM or pair[0] not in _SHARED:
            return None
        crossed += pair[0]
    return crossed
