"""The Vowpal Wabbit reward model. The only module that imports vowpalwabbit.

`--cb_adf` predicts a cost per candidate (lower is better); we report expected reward
(= -cost). Learning takes the logged probability of the chosen item. A Workspace is not
thread-safe and holds the GIL, so every call goes through one lock; scale with processes.
Every parsed example goes back through `finish_example` (skipping it leaks memory).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import tempfile
import threading

import numpy as np
import vowpalwabbit

from bandit.features import with_label

_FNV_PRIME = 16777619     # VW's hash for a crossed pair: (FNV prime x first) xor second
_CONSTANT = 11650396      # VW's constant feature


# The direct path: pylibvw's parser, predict/learn and finish on the raw examples it returns.
# `Workspace.parse` wraps each parsed line in a Python `Example` (two C++ calls and several
# attributes per line); at 1000 candidates that wrapping is two thirds of the scoring time
# (measured: 5.9 ms -> 1.8 ms, identical predictions). These are the calls the public methods
# make underneath; `tests/test_vw_fast_path.py` checks that both paths agree, and a VW release
# without them falls back to the public API.
log = logging.getLogger(__name__)

_pylibvw = getattr(vowpalwabbit.pyvw, "pylibvw", None)
_FAST = hasattr(vowpalwabbit.Workspace, "_parse") and _pylibvw is not None and all(
    hasattr(_pylibvw.vw, name) for name in ("predict_multi", "learn_multi", "_finish_example_multi_ex"))


# Memory. VW keeps every example it ever parsed in a pool for reuse, and starts the pool at
# `--ring_size` (256) examples: ~8 MB of heap per Workspace before it scores anything, and a
# pool as large as the largest call after it (1001 examples, ~24 MB, for 1000 candidates). A
# worker holds the model and its bootstrap replicas (9 Workspaces by default) and makes a new
# set at every snapshot it adopts. So the pool starts small, and a model scores its candidates
# SCORE_CHUNK at a time: a --cb_adf score depends on the shared features and that action's
# only, so the scores are the same (tests/test_vw_fast_path.py), and smaller calls are faster
# too. Measured (3 Workspaces, 180 scorings of 1000 candidates): heap +97 MB -> +14 MB,
# 1.14 -> 0.69 ms per call.
RUNTIME_ARGS = "--ring_size 16"  # not saved in the model: given at every start
SCORE_CHUNK = 128
_MOVED_MAX = 1000  # updates a copy of the weights waits for before it is brought up to date anyway


def _predict(ws, lines: list[str], fast: bool = True) -> np.ndarray:
    """Parse, predict, always finish (unfinished examples leak memory). For `--cb_adf` the
    result is a score (cost) per action line, in input order. The caller holds the lock."""
    if fast and _FAST:
        examples = ws._parse("\n".join(lines))
        try:
            _pylibvw.vw.predict_multi(ws, examples)
            return np.asarray(examples[0].get_action_scores(), dtype=np.float64)
        finally:
            _pylibvw.vw._finish_example_multi_ex(ws, examples)
    examples = ws.parse(lines)
    try:
        return np.asarray(ws.predict(examples), dtype=np.float64)
    finally:
        ws.finish_example(examples)


def _learn(ws, lines: list[str], fast: bool = True) -> None:
    """Parse, learn, always finish. The caller holds the lock."""
    if fast and _FAST:
        examples = ws._parse("\n".join(lines))
        try:
            _pylibvw.vw.learn_multi(ws, examples)
        finally:
            _pylibvw.vw._finish_example_multi_ex(ws, examples)
        return
    examples = ws.parse(lines)
    try:
        ws.learn(examples)
    finally:
        ws.finish_example(examples)


class _Locked:
    """A Workspace behind a lock; every use reads it under the lock (it may have been closed)."""

    def _workspace(self):
        if self._ws is None:
            raise RuntimeError("the Vowpal Wabbit model was closed")
        return self._ws


def _features(ws, line: str) -> list[tuple[str, int, float]]:
    """(namespace^feature, hash, value) of one of our own example lines."""
    out = []
    for part in line.split("|")[1:]:
        tokens = part.split()
        if not tokens:
            continue
        space = tokens[0]
        space_hash = ws.hash_space(space)
        for token in tokens[1:]:
            name, _, value = token.partition(":")
            out.append((f"{space}^{name}", ws.hash_feature(name, space_hash), float(value) if value else 1.0))
    return out


@functools.cache
def _hasher():
    """A Workspace that hashes to all 32 bits (VW masks a feature's hash to the model's `-b`;
    the low bits of a crossed pair's hash depend only on the low bits of its two hashes, so
    a model of any size masks these once more). Sparse: it holds no weights to speak of."""
    return vowpalwabbit.Workspace(f"--quiet -b 32 --sparse_weights {RUNTIME_ARGS}")


def line_features(line: str) -> list[tuple[str, int, float]]:
    """(namespace, feature hash, value) of one of our own example lines, hashed as VW hashes
    them (the namespace's hash seeds its features'); a leading label or "shared" is skipped."""
    return [(name.split("^", 1)[0], h, v) for name, h, v in _features(_hasher(), line)]


def hash_version() -> str:
    """What the hashes above depend on: item feature hashes stored by a build are valid for
    the same VW release."""
    return f"vowpalwabbit {getattr(vowpalwabbit, '__version__', '?')}"


class VWModel(_Locked):
    """A `--cb_adf` Workspace: score candidates, learn one labelled action at a time."""

    def __init__(self, args: str, *, blob: bytes | None = None):
        self.args = args
        self._lock = threading.Lock()
        self.linear = None  # a copy of its weights for direct scoring (bandit.linear): read it with `synced_linear`
        self._moved: list[np.ndarray] = []  # where updates moved weights since the copy was brought up to date
        if blob is None:
            self._ws = vowpalwabbit.Workspace(f"{args} {RUNTIME_ARGS}")
        else:  # a saved model restores its own reductions and interactions
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "model.vw")
                with open(path, "wb") as fh:
                    fh.write(blob)
                self._ws = vowpalwabbit.Workspace(f"-i {path} --quiet {RUNTIME_ARGS}")

    def predict(self, shared: str, actions: list[str]) -> np.ndarray:
        """Expected reward of each action, in input order (from `linear` if VW's copy was released)."""
        if not actions:
            return np.empty(0)
        with self._lock:
            if self._ws is None and self.linear is not None:
                return self.linear.score_lines(shared, actions)
            ws = self._workspace()
            if len(actions) <= SCORE_CHUNK:
                return -_predict(ws, [shared, *actions])
            return -np.concatenate([_predict(ws, [shared, *actions[i:i + SCORE_CHUNK]])
                                    for i in range(0, len(actions), SCORE_CHUNK)])

    def learn(self, shared: str, action: str, reward: float, probability: float,
              touched: np.ndarray | None = None) -> None:
        """Importance-weighted update toward `reward` for the action chosen with `probability`.
        A model with a `linear` copy of its weights notes where the update moved them
        (`touched`: `LinearModel.touched`, if already known), for `synced_linear`."""
        with self._lock:
            ws = self._workspace()
            linear = self.linear
            if linear is not None and touched is None:
                try:
                    touched = linear.touched(shared, action)
                except Exception:  # VW may read a line our hasher does not: score through VW from now on
                    log.exception("a learned example's weights could not be located: the model is scored "
                                  "through VW's parser from now on")
                    self.linear = linear = None
            _learn(ws, [shared, with_label(action, -float(reward), float(probability))])
            if linear is not None:
                self._moved.append(touched)
                if len(self._moved) >= _MOVED_MAX:
                    self._sync(linear)

    def synced_linear(self):
        """`linear`, brought up to date with what the model learned since it was last: the
        weights the updates since then moved, read back from VW at once (~0.3 us a weight;
        ~60 weights an update, fewer per update the more updates share features). None
        without a copy. Whoever scores from the copy reads it here."""
        with self._lock:
            linear = self.linear
            if linear is not None and self._moved:
                self._sync(linear)
            return linear

    def _sync(self, linear) -> None:
        """Read back the weights at `_moved` into `linear`. The caller holds the lock."""
        ws = self._workspace()
        at = np.unique(np.concatenate(self._moved))
        self._moved.clear()
        read = _pylibvw.vw.get_weight if _pylibvw is not None else type(ws).get_weight
        linear.update(at, [read(ws, i, 0) for i in at.tolist()])

    def touches(self, shared: str, action: str) -> np.ndarray | None:
        """`LinearModel.touched` for an update of this model (and its replicas, which have the
        same arguments); None without a copy of its weights, or if they cannot be located
        (`learn` then tries for itself)."""
        linear = self.linear
        try:
            return None if linear is None else linear.touched(shared, action)
        except Exception:
            return None

    def explain(self, shared: str, action: str, top: int = 5) -> list[dict]:
        """The features that move this action's predicted reward most: each linear feature's
        weight x value and each crossed pair's (namespaces crossed by first letter, as VW
        does), signed in reward terms. They sum, with the rest, to the prediction."""
        interactions = re.findall(r"--interactions (\w+)", self.args)
        with self._lock:
            mask = self._ws.num_weights() - 1
            shared_f, action_f = _features(self._ws, shared), _features(self._ws, action)
            both = shared_f + action_f
            terms = [(name, -self._ws.get_weight(h & mask) * v) for name, h, v in both]
            terms.append(("Constant", -self._ws.get_weight(_CONSTANT & mask)))
            for pair in interactions:
                if len(pair) != 2:
                    continue
                left = [f for f in both if f[0][0] == pair[0]]
                right = [f for f in both if f[0][0] == pair[1]]
                for n1, h1, v1 in left:
                    for n2, h2, v2 in right:
                        weight = self._ws.get_weight(((_FNV_PRIME * h1) ^ h2) & mask)
                        if weight:
                            terms.append((f"{n1}*{n2}", -weight * v1 * v2))
        terms = [t for t in terms if t[1] != 0.0]
        terms.sort(key=lambda t: -abs(t[1]))
        return [{"feature": name, "contribution": round(value, 6)} for name, value in terms[:top]]

    def to_bytes(self) -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.vw")
            with self._lock:
                self._workspace().save(path)
            with open(path, "rb") as fh:
                return fh.read()

    def close(self) -> None:
        with self._lock:
            if self._ws is not None:
                self._ws.finish()
                self._ws = None

    def num_weights(self) -> int:
        with self._lock:
            return self._workspace().num_weights()

    @classmethod
    def released(cls, args: str, linear) -> "VWModel":
        """A model that only scores, from `linear`, and was never loaded into VW (a serving
        worker's bootstrap replica read straight from its saved weights: `release` without the load)."""
        model = cls.__new__(cls)
        model.args, model._lock, model.linear, model._ws, model._moved = args, threading.Lock(), linear, None, []
        return model

    def release(self) -> bool:
        """Free VW's copy (its weights, learning state and example pool) of a model that has a
        `linear` copy and will not learn: it then only scores, from that copy (a bootstrap
        replica in a serving worker: ~5 MB of VW's against 1 MB of numpy at `-b 18`)."""
        if self.linear is None:
            return False
        self.close()
        return True


def replica_seed(event_id: str, item_id: str) -> int:
    """The Poisson draws of a reward's replica updates: fixed by its identity, so replays agree."""
    return int.from_bytes(hashlib.blake2b(f"{event_id}\x1f{item_id}".encode(), digest_size=8).digest(), "little")


class Replicas:
    """B bootstrap copies of the reward model (VW's `--bag` idea): each learns every reward
    Poisson(1) times, drawn from a seed, so the copies disagree where data is thin."""

    def __init__(self, models: list[VWModel]):
        self.models = models

    @classmethod
    def from_blobs(cls, args: str, blobs: list[bytes]) -> "Replicas":
        return cls([VWModel(args, blob=b) for b in blobs])

    def __len__(self) -> int:
        return len(self.models)

    def predict(self, shared: str, actions: list[str]) -> np.ndarray:
        """(B, len(actions)) expected rewards."""
        if not actions:
            return np.empty((len(self.models), 0))
        linear = [m.linear for m in self.models]
        if all(m._ws is None for m in self.models) and all(one is not None for one in linear):
            return type(linear[0]).score_many_lines(linear, shared, actions)  # weights only: lines parsed once
        return np.vstack([m.predict(shared, actions) for m in self.models])

    def learn(self, shared: str, action: str, reward: float, probability: float, seed: int,
              touched: np.ndarray | None = None) -> None:
        counts = np.random.default_rng(seed).poisson(1.0, size=len(self.models))
        if touched is None and counts.any():  # where the copies' weights move: found once for all
            touched = next((t for t in (m.touches(shared, action) for m in self.models) if t is not None), None)
        for model, count in zip(self.models, counts):
            for _ in range(int(count)):
                model.learn(shared, action, reward, probability, touched)

    def to_bytes(self) -> list[bytes]:
        return [m.to_bytes() for m in self.models]

    def close(self) -> None:
        for m in self.models:
            m.close()


class VWExplorer(_Locked):
    """A `--cb_explore_adf` Workspace (VW's own exploration, as Azure Personalizer ran it):
    a probability per action for a whole example, and learning on the full action set.
    Used by the simulator's Personalizer baseline; the service scores with `VWModel`."""

    def __init__(self, args: str):
        self._ws = vowpalwabbit.Workspace(args)
        self._lock = threading.Lock()

    def pmf(self, shared: str, actions: list[str]) -> np.ndarray:
        with self._lock:
            probs = _predict(self._workspace(), [shared, *actions])
        return probs / probs.sum()

    def learn(self, shared: str, actions: list[str], chosen: int, reward: float, probability: float) -> None:
        lines = [shared] + [with_label(a, -float(reward), float(probability)) if i == chosen else a
                            for i, a in enumerate(actions)]
        with self._lock:
            _learn(self._workspace(), lines)

    def close(self) -> None:
        with self._lock:
            self._ws.finish()
