"""Off-policy estimators: what a target policy would have earned on logged bandit data.

The API takes generic logged data, not only banditrec's. Per logged decision (row):

- `reward`: the reward observed for the logged action;
- `logged_p`: the probability with which the logging policy chose that action (0 < p <= 1);
- `target_p`: the probability the target policy gives that same action in that context;
- for doubly robust also `target_dist` (the target's full distribution over the row's
  actions), `reward_hat` (a reward model's prediction for every action of the row) and
  `action` (the index of the logged action in those arrays). Rows may have different
  numbers of actions: pass lists of arrays.

Each estimator returns an `Estimate`: the value, a 95 % interval (normal approximation, or
bootstrap), the effective sample size of the importance weights, and n.

>>> est = ips([1, 0, 1, 0], logged_p=[0.5, 0.5, 0.25, 0.5], target_p=[1.0, 0.0, 0.5, 0.0])
>>> round(est.value, 3), est.n
(1.0, 4)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from banditrec.errors import InvalidRequest


class EvaluationError(InvalidRequest):
    """Logged data that cannot be evaluated (the message says which row and why)."""


@dataclass(frozen=True)
class Estimate:
    method: str
    value: float
    low: float
    high: float
    ess: float   # effective sample size of the importance weights: (sum w)^2 / sum w^2
    n: int

    def contains(self, truth: float) -> bool:
        return self.low <= truth <= self.high


def _vector(name, values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise EvaluationError(f"{name} must be one value per row, got shape {array.shape}")
    if len(array) == 0:
        raise EvaluationError("the log is empty: nothing to evaluate")
    bad = np.flatnonzero(~np.isfinite(array))
    if len(bad):
        raise EvaluationError(f"{name} is missing or not finite in row {int(bad[0])} (and {len(bad) - 1} more)")
    return array


def _check(reward, logged_p, target_p):
    reward, logged_p, target_p = (_vector(n, v) for n, v in
                                  (("reward", reward), ("logged_p", logged_p), ("target_p", target_p)))
    if not len(reward) == len(logged_p) == len(target_p):
        raise EvaluationError(f"reward, logged_p and target_p have {len(reward)}, {len(logged_p)} and "
                              f"{len(target_p)} rows, must be equal")
    for name, p, positive in (("logged_p", logged_p, True), ("target_p", target_p, False)):
        bad = np.flatnonzero(p <= 0 if positive else p < 0)
        if len(bad):
            raise EvaluationError(f"{name} == {float(p[bad[0]])!r} in row {int(bad[0])}, must be "
                                  f"{'> 0 (a logged action must have had a chance)' if positive else '>= 0'}")
        bad = np.flatnonzero(p > 1 + 1e-9)
        if len(bad):
            raise EvaluationError(f"{name} == {float(p[bad[0]])!r} in row {int(bad[0])}, must be <= 1")
    return reward, logged_p, target_p


def _interval(samples: np.ndarray, value: float, ci: str, seed: int, statistic) -> tuple[float, float]:
    n = len(samples)
    if ci == "bootstrap":
        rng = np.random.default_rng(seed)
        boots = [statistic(rng.integers(0, n, size=n)) for _ in range(1000)]
        return float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))
    if n < 2:
        return float("-inf"), float("inf")
    half = stats.norm.ppf(0.975) * samples.std(ddof=1) / np.sqrt(n)
    return value - half, value + half


def _ess(w: np.ndarray) -> float:
    total = (w ** 2).sum()
    return float(w.sum() ** 2 / total) if total > 0 else 0.0


def ips(reward, logged_p, target_p, *, ci: str = "normal", seed: int = 0) -> Estimate:
    """Inverse propensity scoring: mean of w x reward, w = target_p / logged_p. Unbiased,
    high variance when the policies disagree."""
    reward, logged_p, target_p = _check(reward, logged_p, target_p)
    w = target_p / logged_p
    terms = w * reward
    value = float(terms.mean())
    low, high = _interval(terms, value, ci, seed, lambda idx: terms[idx].mean())
    return Estimate("ips", value, low, high, _ess(w), len(reward))


def snips(reward, logged_p, target_p, *, ci: str = "normal", seed: int = 0) -> Estimate:
    """Self-normalised IPS: sum(w x reward) / sum(w). Slightly biased, much steadier."""
    reward, logged_p, target_p = _check(reward, logged_p, target_p)
    w = target_p / logged_p
    if w.sum() <= 0:
        raise EvaluationError("the target policy gives probability 0 to every logged action: SNIPS is undefined")
    value = float((w * reward).sum() / w.sum())
    # delta-method variance of a ratio estimator
    terms = w * (reward - value) / w.mean()
    low, high = _interval(terms, 0.0, ci, seed, lambda idx: (w[idx] * reward[idx]).sum() / max(w[idx].sum(), 1e-300))
    if ci != "bootstrap":
        low, high = value + low, value + high
    return Estimate("snips", value, low, high, _ess(w), len(reward))


def dr(reward, logged_p, target_p, *, action, target_dist, reward_hat, ci: str = "normal", seed: int = 0) -> Estimate:
    """Doubly robust: the reward model's value of the target policy, corrected by the
    importance-weighted error of the model on the logged action."""
    reward, logged_p, target_p = _check(reward, logged_p, target_p)
    action = np.asarray(action, dtype=np.int64)
    if len(action) != len(reward) or len(target_dist) != len(reward) or len(reward_hat) != len(reward):
        raise EvaluationError("action, target_dist and reward_hat need one entry per row")
    direct = np.empty(len(reward))
    hat_logged = np.empty(len(reward))
    for row, (dist, hat, a) in enumerate(zip(target_dist, reward_hat, action)):
        dist, hat = np.asarray(dist, dtype=np.float64), np.asarray(hat, dtype=np.float64)
        if dist.shape != hat.shape or not 0 <= a < len(dist):
            raise EvaluationError(f"row {row}: target_dist and reward_hat must cover the same actions, "
                                  f"and action {int(a)} must index them")
        if not np.all(np.isfinite(dist)) or not np.all(np.isfinite(hat)):
            raise EvaluationError(f"row {row}: target_dist and reward_hat must be finite")
        if np.any(dist < 0) or abs(dist.sum() - 1.0) > 1e-6:
            raise EvaluationError(f"row {row}: target_dist sums to {dist.sum():.6f}, "
                                  "must be a distribution summing to 1")
        if abs(dist[a] - target_p[row]) > 1e-6:
            raise EvaluationError(f"row {row}: target_p {float(target_p[row])!r} differs from target_dist[action] "
                                  f"{float(dist[a])!r}")
        direct[row] = float(dist @ hat)
        hat_logged[row] = hat[a]
    w = target_p / logged_p
    terms = direct + w * (reward - hat_logged)
    value = float(terms.mean())
    low, high = _interval(terms, value, ci, seed, lambda idx: terms[idx].mean())
    return Estimate("dr", value, low, high, _ess(w), len(reward))


def load_csv(path) -> dict:
    """Logged bandit data from a CSV file with a header, one decision per row:

        reward,logged_p,target_p[,action,target_dist,reward_hat]

    `target_dist` and `reward_hat` are JSON lists (one value per action of the row). Returns
    keyword arguments for `ips`, `snips` and (with the optional columns) `dr`.

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "log.csv"
    >>> _ = path.write_text("reward,logged_p,target_p\\n1,0.5,1.0\\n0,0.5,0.0\\n")
    >>> ips(**load_csv(path)).value
    1.0
    """
    import csv
    import json

    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"reward", "logged_p", "target_p"} - set(reader.fieldnames or ())
        if missing:
            raise EvaluationError(f"{path}: the header must name reward, logged_p, target_p; missing "
                                  f"{', '.join(sorted(missing))}")
        rows = list(reader)
    try:
        data = {key: [float(row[key]) for row in rows] for key in ("reward", "logged_p", "target_p")}
        if rows and "target_dist" in rows[0]:
            data["action"] = [int(row["action"]) for row in rows]
            data["target_dist"] = [json.loads(row["target_dist"]) for row in rows]
            data["reward_hat"] = [json.loads(row["reward_hat"]) for row in rows]
    except (ValueError, KeyError, TypeError) as exc:
        raise EvaluationError(f"{path}: {exc.__class__.__name__}: {exc}") from None
    return data
