"""`banditrec evaluate`: replay logged decisions through a candidate configuration.

Decisions are one-slot bandits (their first position); the log keeps each decision's most
likely candidates (`log.max_candidates`), and target policies choose among those.

The candidate's model learns the log in time order and, before learning each decision, is
asked what it would have done there: that is "learning on the past, scoring the next
slice" at the finest slice, as Personalizer's offline evaluation did. The candidate's
first-position distribution (its strategy over its own scores; the fresh-item boost, MMR
and category caps are not replayed, the log does not say which items were fresh) gives
the target probabilities; its predictions before learning are the reward model of the
doubly robust estimate. Alongside: the logged policy itself, greedy on the candidate's
model, popularity (most rewarded so far) and uniform random.

`--importance` repeats the replay without each feature namespace (VW's `--ignore`) and
reports how much the candidate's estimated reward drops: Personalizer's feature importance.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from bandit.scoring import score
from bandit.strategies import STRATEGIES
from bandit.vw import Replicas, VWModel, replica_seed
from banditrec.config import Config
from evaluation.estimators import Estimate, EvaluationError, dr, ips, snips
from evaluation.log import LoggedDecision

POLICIES = ("candidate", "logged", "greedy", "popularity", "uniform")


def _onehot(n: int, i: int) -> np.ndarray:
    out = np.zeros(n)
    out[i] = 1.0
    return out


def replay(decisions: list[LoggedDecision], candidate: Config, *, ignore: str | None = None,
           snapshot: tuple[bytes, list[bytes]] | None = None) -> dict:
    """Target distributions and reward predictions of every policy on every decision. With
    `snapshot` (a model blob and its replicas' blobs), the candidate is that model as it is,
    learning nothing (a canary serves its model so: `banditrec canary start --gate`)."""
    if not decisions:
        raise EvaluationError("the log is empty: nothing to evaluate")
    args = candidate.model.vw_args() + (f" --ignore {ignore}" if ignore else "")
    strategy = STRATEGIES[candidate.exploration.strategy](candidate.exploration.selected)
    if snapshot is None:
        model = VWModel(args)
        replicas = Replicas([VWModel(args) for _ in range(strategy.replicas)]) if strategy.replicas else None
    else:
        blob, replica_blobs = snapshot
        model = VWModel(args, blob=blob)
        blobs = (list(replica_blobs) + [blob] * strategy.replicas)[: strategy.replicas]  # as `make_learner`
        replicas = Replicas.from_blobs(args, blobs) if strategy.replicas else None
    rewarded: Counter = Counter()
    dists = {policy: [] for policy in POLICIES}
    hats = []
    for t, decision in enumerate(sorted(decisions, key=lambda d: d.ts)):
        n = len(decision.actions)
        scores = score(model, replicas, decision.shared, decision.actions, strategy.top_m)
        dists["candidate"].append(strategy.at_step(t).distribution(scores)[0])
        dists["logged"].append(decision.probs / decision.probs.sum())
        dists["greedy"].append(_onehot(n, int(np.argmax(scores.mean))))
        dists["popularity"].append(_onehot(n, int(np.argmax([rewarded[i] for i in decision.item_ids]))))
        dists["uniform"].append(np.full(n, 1.0 / n))
        hats.append(scores.mean)
        if snapshot is None:  # then learn it, as the service would have
            p = max(decision.logged_p, candidate.feedback.clip_p) if strategy.importance_weighted else 1.0
            model.learn(decision.shared, decision.actions[decision.chosen], decision.reward, p)
            if replicas is not None:
                replicas.learn(decision.shared, decision.actions[decision.chosen], decision.reward, p,
                               replica_seed(decision.event_id, decision.item_ids[decision.chosen]))
        if decision.reward > 0:
            rewarded[decision.item_ids[decision.chosen]] += decision.reward
    model.close()
    if replicas is not None:
        replicas.close()
    return {"decisions": sorted(decisions, key=lambda d: d.ts), "dists": dists, "hats": hats}


def estimate(replayed: dict, *, ci: str = "normal") -> dict[str, dict[str, Estimate]]:
    """IPS, SNIPS and DR of every policy over the replayed log."""
    decisions = replayed["decisions"]
    reward = [d.reward for d in decisions]
    logged_p = [d.logged_p for d in decisions]
    action = [d.chosen for d in decisions]
    out = {}
    for policy, dists in replayed["dists"].items():
        target_p = [dist[d.chosen] for dist, d in zip(dists, decisions)]
        # the logged policy is itself: weight 1 exactly, even where the log kept only the most
        # likely candidates (its stored probabilities then sum to a little under 1)
        weighted_p = logged_p if policy == "logged" else target_p
        out[policy] = {"ips": ips(reward, logged_p, weighted_p, ci=ci),
                       "snips": snips(reward, logged_p, weighted_p, ci=ci),
                       "dr": dr(reward, logged_p, target_p, action=action, target_dist=dists,
                                reward_hat=replayed["hats"], ci=ci)}
    return out


def importance(decisions: list[LoggedDecision], candidate: Config, base: dict) -> list[tuple[str, float, float]]:
    """(namespace, candidate's SNIPS without it, drop from the full model), largest drop first."""
    spaces = sorted({part.split()[0] for d in decisions[:200] for line in (d.shared, *d.actions)
                     for part in line.split("|")[1:] if part.split()})
    full = base["candidate"]["snips"].value
    rows = []
    for space in spaces:
        without = estimate(replay(decisions, candidate, ignore=space[0]))["candidate"]["snips"].value
        rows.append((space, without, full - without))
    return sorted(rows, key=lambda row: -row[2])


def gate(estimates: dict[str, dict[str, Estimate]]) -> tuple[bool, str]:
    """Whether a candidate may start as a canary: not when its doubly robust estimate is worse
    than the logged policy's with confidence (its interval's top below the logged value)."""
    candidate, logged = estimates["candidate"]["dr"], estimates["logged"]["dr"]
    worse = candidate.high < logged.value
    verdict = "worse than" if worse else "not worse than"
    return not worse, (f"off-policy (DR): the candidate {candidate.value:.4f} [{candidate.low:.4f}, "
                       f"{candidate.high:.4f}] per decision, {verdict} the logged policy's {logged.value:.4f}")


def table(estimates: dict[str, dict[str, Estimate]], n: int) -> str:
    lines = [f"### estimated reward per decision (first position), {n} logged decisions", "",
             "| policy | IPS | SNIPS | DR | effective sample size |", "| --- | --- | --- | --- | --- |"]
    for policy, by_method in estimates.items():
        cells = [f"{e.value:.4f} [{e.low:.4f}, {e.high:.4f}]" for e in by_method.values()]
        lines.append(f"| {policy} | " + " | ".join(cells) + f" | {by_method['snips'].ess:.0f} |")
    return "\n".join(lines) + "\n"


def plot(estimates: dict[str, dict[str, Estimate]], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    methods = ("ips", "snips", "dr")
    for j, method in enumerate(methods):
        x = np.arange(len(estimates)) + (j - 1) * 0.25
        values = [e[method].value for e in estimates.values()]
        errors = [[e[method].value - e[method].low for e in estimates.values()],
                  [e[method].high - e[method].value for e in estimates.values()]]
        ax.bar(x, values, width=0.25, yerr=errors, capsize=3, label=method.upper())
    ax.set_xticks(np.arange(len(estimates)), list(estimates))
    ax.set_ylabel("estimated reward per decision")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
