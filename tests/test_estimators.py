"""Off-policy estimators on logs where the truth is known, and their errors on bad input.

The log: the simulator's world (hidden click model) decides rewards; a logging policy
(epsilon-greedy over a noisy score) picks one of 20 candidates per decision and logs its
probability. Target policies are scored from the log and compared with their true value
(the expected click probability of what they would pick).
"""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.estimators import EvaluationError, dr, ips, snips
from simulations.config import WorldConfig
from simulations.world import SimWorld

N_DECISIONS, N_ACTIONS = 1500, 20


def _policy(scores: np.ndarray, epsilon: float) -> np.ndarray:
    p = np.full(len(scores), epsilon / len(scores))
    p[int(np.argmax(scores))] += 1.0 - epsilon
    return p


def _log(seed: int):
    world = SimWorld(WorldConfig(n_items=300, n_users=100, n_categories=5), seed=0, rounds=1)
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(N_DECISIONS):
        user = int(rng.integers(100))
        actions = rng.choice(300, size=N_ACTIONS, replace=False)
        truth = world.click_probability(user, actions, {}, 0)
        noisy = truth + rng.normal(0.0, 0.15, size=N_ACTIONS)   # the logging policy's model
        good = truth + rng.normal(0.0, 0.05, size=N_ACTIONS)    # a better model (target)
        logging_p = _policy(noisy, 0.3)
        chosen = int(rng.choice(N_ACTIONS, p=logging_p))
        rows.append({"truth": truth, "logging_p": logging_p, "chosen": chosen, "good": good,
                     "reward": float(rng.random() < truth[chosen]), "hat": good * 0.9 + 0.02})
    return rows


TARGETS = {
    "uniform": lambda row: np.full(N_ACTIONS, 1.0 / N_ACTIONS),
    "greedy_on_better_model": lambda row: _policy(row["good"], 0.0),
    "eps_on_better_model": lambda row: _policy(row["good"], 0.2),
}


def _estimate(rows, target, method):
    dists = [target(row) for row in rows]
    args = dict(reward=[r["reward"] for r in rows], logged_p=[r["logging_p"][r["chosen"]] for r in rows],
                target_p=[d[r["chosen"]] for d, r in zip(dists, rows)])
    if method == "dr":
        return dr(**args, action=[r["chosen"] for r in rows], target_dist=dists, reward_hat=[r["hat"] for r in rows])
    return {"ips": ips, "snips": snips}[method](**args)


@pytest.mark.slow
def test_intervals_contain_the_truth_and_dr_is_steadier_than_ips():
    covered = {(t, m): 0 for t in TARGETS for m in ("ips", "snips", "dr")}
    spread = {"ips": [], "dr": []}
    seeds = range(20)
    for seed in seeds:
        rows = _log(seed)
        for name, target in TARGETS.items():
            truth = float(np.mean([target(r) @ r["truth"] for r in rows]))
            for method in ("ips", "snips", "dr"):
                estimate = _estimate(rows, target, method)
                covered[(name, method)] += estimate.contains(truth)
                if name == "eps_on_better_model" and method in spread:
                    spread[method].append(estimate.value - truth)
    for key, hits in covered.items():
        assert hits >= 0.9 * len(seeds), (key, hits)  # measured: 19-20 of 20 for every pair
    # measured: std of the error 0.054 (DR) vs 0.094 (IPS); SNIPS 0.054
    assert np.std(spread["dr"]) < 0.8 * np.std(spread["ips"]), (np.std(spread["dr"]), np.std(spread["ips"]))


def test_the_logged_policy_evaluates_to_its_own_mean():
    rows = _log(3)
    rewards = [r["reward"] for r in rows]
    logged = [r["logging_p"][r["chosen"]] for r in rows]
    assert ips(rewards, logged, logged).value == pytest.approx(np.mean(rewards))
    estimate = snips(rewards, logged, logged)
    assert estimate.value == pytest.approx(np.mean(rewards)) and estimate.ess == pytest.approx(len(rows))


@pytest.mark.parametrize("kwargs,message", [
    (dict(reward=[1, 0], logged_p=[0.0, 0.5], target_p=[1, 0]), "logged_p == 0.0 in row 0, must be > 0"),
    (dict(reward=[1, 0], logged_p=[0.5, 1.5], target_p=[1, 0]), "logged_p == 1.5 in row 1, must be <= 1"),
    (dict(reward=[1, 0], logged_p=[0.5, 0.5], target_p=[1, -0.1]), "target_p == -0.1 in row 1, must be >= 0"),
    (dict(reward=[1, float("nan")], logged_p=[0.5, 0.5], target_p=[1, 0]), "reward is missing or not finite in row 1"),
    (dict(reward=[], logged_p=[], target_p=[]), "the log is empty"),
    (dict(reward=[1, 0, 1], logged_p=[0.5, 0.5], target_p=[1, 0]), "have 3, 2 and 2 rows, must be equal"),
])
def test_bad_logs_are_refused_with_the_row(kwargs, message):
    for estimator in (ips, snips):
        with pytest.raises(EvaluationError, match=message.replace("(", r"\(").replace(")", r"\)")):
            estimator(**kwargs)


def test_dr_refuses_target_distributions_that_are_not_distributions():
    base = dict(reward=[1.0], logged_p=[0.5], target_p=[0.5], action=[0], reward_hat=[[0.2, 0.1]])
    with pytest.raises(EvaluationError, match="row 0: target_dist sums to 0.900000, must be a distribution"):
        dr(**base, target_dist=[[0.5, 0.4]])
    with pytest.raises(EvaluationError, match="differs from target_dist"):
        dr(**{**base, "target_p": [0.3]}, target_dist=[[0.5, 0.5]])
    assert dr(**base, target_dist=[[0.5, 0.5]]).value == pytest.approx(0.15 + 1.0 * (1.0 - 0.2))
