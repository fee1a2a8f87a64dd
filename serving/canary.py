"""Canary rollout: a candidate served to a share of users beside the current model, compared
with it, then promoted (everyone gets it) or aborted. The candidate is a model snapshot, or an
exploration config (`[exploration]`: the strategy and its settings) served with the current
model, which learns from every user's rewards as usual.

Who is in the canary: among the users the bandit serves (not the A/B holdout), those whose
hash of ("canary-<id>", user_id) falls below its share; a new canary draws new users. Their
decisions are scored by the canary's model, logged with their probabilities like every other
(so the learner learns from them), answered with `"arm": "canary"`, and counted in the
canary's own experiment (`canary-<id>`: arms "canary" and "current"; the other users the
bandit serves meanwhile are "current"). The canary's model serves as it is: it does not learn
while it is a canary; promoted, it becomes a new snapshot (origin "canary") from which the
learner goes on, learning the rewards since its cursor. A promoted exploration becomes the live
exploration (`serving.live`): every serving process and the learner switch to it.

The comparison is CTR (clicks per impression) and reward per decision, with the relative lift
of the canary over the current model and a 95 % interval (`serving.experiment`). The
automatic rule (`canary.auto`), once both arms have `canary.min_decisions` decisions: abort
when the canary is worse with confidence (the interval of its CTR lift lies below 0), promote
when it is not worse with confidence (the interval lies above -`canary.max_loss`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from bandit.strategies import Strategy
from banditrec.config import CanaryConfig, Config, exploration_from_dict
from serving.experiment import _NORMAL, _ratio_lift, arm_summary, in_share
from serving.learner import Learner
from serving.live import section, strategy_of
from store.canary import EXPLORATION, PROMOTING, PROMOTING_STALE_S, RUNNING

log = logging.getLogger(__name__)

CANARY, CURRENT = "canary", "current"


def experiment_of(canary_id: str) -> str:
    """The name under which a canary's arms are counted."""
    return f"canary-{canary_id}"


def in_canary(user_id: str, record: dict) -> bool:
    """Whether the user is in the canary: deterministic in (canary id, user_id).

    >>> record = {"id": "ab12", "share": 0.5}
    >>> in_canary("u1", record) == in_canary("u1", record)
    True
    >>> in_canary("u1", {"id": "ab12", "share": 0.0})
    False
    """
    return in_share(experiment_of(record["id"]), user_id, record["share"])


@dataclass(frozen=True)
class Held:
    """A running canary as one process serves it: its record, and its model (a learner that
    does not learn) or, for an exploration canary, its strategy (with the current model)."""

    record: dict
    learner: Learner | None = None
    strategy: Strategy | None = None


# An exploration canary in these statuses may still become the live exploration: the current
# model keeps the bootstrap replicas it needs (a promotion under way, or failed and retried, must
# not find them dropped).
PENDING = (RUNNING, PROMOTING, "promote_failed")


def exploration_strategy(record: dict | None, statuses: tuple[str, ...] = (RUNNING,)) -> Strategy | None:
    """An exploration canary's strategy if it is in one of `statuses`; None for anything else."""
    if record is None or record["status"] not in statuses or record["kind"] != EXPLORATION:
        return None
    return strategy_of(exploration_from_dict(record["exploration"]))


def candidate(record: dict) -> str:
    """What a canary tries, in words: "model v12" or "exploration thompson"."""
    if record["kind"] == EXPLORATION:
        return f"exploration {record['exploration']['strategy']} (with the current model)"
    return f"model v{record['version']}"


def report(record: dict | None, counts: dict[str, dict[str, float]], cfg: CanaryConfig) -> dict | None:
    """The canary against the current model: each arm's counts and rates, the canary's lift
    with a 95 % interval, and what the automatic rule says (`verdict`)."""
    if record is None:
        return None
    z = _NORMAL.inv_cdf(0.975)
    c, k = counts.get(CANARY, {}), counts.get(CURRENT, {})
    g = lambda arm, name: arm.get(name, 0.0)  # noqa: E731
    lift = {"ctr": _ratio_lift((g(c, "clicks"), g(c, "impressions")), (g(k, "clicks"), g(k, "impressions")), z)}
    out = {key: record[key] for key in ("id", "kind", "version", "exploration", "share", "status", "started_at",
                                        "ended_at", "reason", "promoted_as")}
    arms = {CANARY: arm_summary(c), CURRENT: arm_summary(k)}
    for arm, raw in ((CANARY, c), (CURRENT, k)):
        arms[arm]["reward_per_decision"] = g(raw, "reward") / g(raw, "decisions") if g(raw, "decisions") else None
    return {**out, "candidate": candidate(record), "experiment": experiment_of(record["id"]), "arms": arms,
            "lift": lift,
            "lift_is": "canary / current - 1, with a 95 % confidence interval; null until both arms have clicks",
            "verdict": verdict(arms, cfg) if record["status"] == RUNNING else None,
            "rule": {"auto": cfg.auto, "min_decisions": cfg.min_decisions, "max_loss": cfg.max_loss}}


def verdict(arms: dict, cfg: CanaryConfig) -> str:
    """"promote", "abort" or "wait" (too few decisions, or not yet sure either way), from the
    CTR lift's 95 % interval; an arm without clicks counts half a click (else a canary that
    nobody clicks could never be judged worse)."""
    canary, current = arms[CANARY], arms[CURRENT]
    if min(canary["decisions"], current["decisions"]) < cfg.min_decisions:
        return "wait"
    ctr = _ratio_lift((max(canary["clicks"], 0.5), canary["impressions"]),
                      (max(current["clicks"], 0.5), current["impressions"]), _NORMAL.inv_cdf(0.975))
    if ctr is None:
        return "wait"
    low, high = ctr["ci95"]
    if high < 0:
        return "abort"
    if low > -cfg.max_loss:
        return "promote"
    return "wait"


# What `promote` and `abort` may end a canary from: a promotion that failed may be retried or
# given up, and one left "promoting" by a process that died (started over PROMOTING_STALE_S ago)
# may be taken over; one under way is left to finish.
ENDABLE = (RUNNING, "promote_failed", PROMOTING)


def endable(record: dict | None, now: float) -> bool:
    """Whether `promote` or `abort` may end this canary now."""
    if record is None or record["status"] not in ENDABLE:
        return False
    return record["status"] != PROMOTING or (record["ended_at"] or 0.0) < now - PROMOTING_STALE_S


def promote(store, record: dict, config: Config, reason: str) -> str | None:
    """Make the canary the current: a model canary's model becomes a new snapshot (origin
    "canary") with its cursor; an exploration canary's exploration becomes the live one
    (`serving.live`), over the `[exploration]` of the serving processes' config file (as the
    first of them to serve the canary noted it; else this config's). What it became ("v13", "the
    live exploration"), or None if the canary was no longer running (ended by someone else,
    or being promoted). A failure after the canary was marked promoting leaves it
    "promote_failed", with its model kept, for another `promote`."""
    if record["kind"] == EXPLORATION:
        return _promote_exploration(store, record, config, reason)
    snapshot = store.canary_model(record)
    if snapshot is None:
        return None
    if not _start_promoting(store, record, reason):
        return None
    blob, meta = snapshot
    replicas = meta.pop("replica_blobs")
    meta = {key: value for key, value in meta.items() if key not in ("version", "created_at", "replicas")}
    try:
        version = store.put_snapshot(blob, {**meta, "origin": "canary", "from_version": record["version"]},
                                     config.snapshot.keep, replicas)
    except Exception as exc:
        _promote_failed(store, record, reason, exc)
        raise
    store.end_canary(record["id"], "promoted", reason, from_statuses=(PROMOTING,), promoted_as=version)
    store.drop_canary_model(record["id"])
    return f"v{version}"


def _promote_exploration(store, record: dict, config: Config, reason: str) -> str | None:
    if not _start_promoting(store, record, reason):
        return None
    now = store.canary()  # a process may have noted the base since `record` was read
    base = (now if now is not None and now["id"] == record["id"] else record)["base"] or section(config.exploration)
    try:
        store.set_live_exploration({"exploration": record["exploration"], "base": base, "canary": record["id"],
                                    "at": time.time()})
    except Exception as exc:
        _promote_failed(store, record, reason, exc)
        raise
    store.end_canary(record["id"], "promoted", reason, from_statuses=(PROMOTING,))
    return "the live exploration"


def _start_promoting(store, record: dict, reason: str) -> bool:
    return store.end_canary(record["id"], PROMOTING, reason, from_statuses=ENDABLE,
                            stale_before=time.time() - PROMOTING_STALE_S)


def _promote_failed(store, record: dict, reason: str, exc: Exception) -> None:
    store.end_canary(record["id"], "promote_failed", f"{reason}; it was not written: {exc}",
                     from_statuses=(PROMOTING,))


def abort(store, record: dict, reason: str) -> bool:
    """Stop serving the canary; True if this call stopped it. An exploration canary whose
    promotion failed halfway (the live exploration written, the record not ended) is taken
    out of the live exploration too."""
    if not store.end_canary(record["id"], "aborted", reason, from_statuses=ENDABLE,
                            stale_before=time.time() - PROMOTING_STALE_S):
        return False
    store.drop_canary_model(record["id"])
    if record["kind"] == EXPLORATION:
        store.clear_live_exploration(canary_id=record["id"])
    return True


def apply_rule(store, record: dict, config: Config) -> str | None:
    """The automatic rule on a running canary: "promoted" or "aborted" if this call ended it."""
    result = report(record, store.arm_counts(experiment_of(record["id"])), config.canary)
    decided = result["verdict"]
    c, k = result["arms"][CANARY], result["arms"][CURRENT]
    why = (f"automatic: {c['clicks']} clicks in {c['impressions']} impressions against {k['clicks']} in "
           f"{k['impressions']}, after {c['decisions']} / {k['decisions']} decisions")
    if decided == "abort" and abort(store, record, why):
        log.warning("canary %s (%s) aborted: %s", record["id"], candidate(record), why)
        return "aborted"
    if decided == "promote":
        became = promote(store, record, config, why)
        if became is not None:
            log.info("canary %s (%s) promoted as %s: %s", record["id"], candidate(record), became, why)
            return "promoted"
    return None


class CanaryWatch:
    """What one serving process holds of the canary: re-read every `canary.check_s` (a
    canary started, ended or replaced), and, with `canary.auto`, the rule applied."""

    def __init__(self, load_learner):
        self.load_learner = load_learner  # (blob, meta) -> a Learner that serves it
        self.held: Held | None = None
        self.record: dict | None = None  # as last read

    def replicas(self) -> int:
        """Bootstrap replicas an exploration canary running (or being promoted) needs."""
        pending = exploration_strategy(self.record, PENDING)
        return pending.replicas if pending is not None else 0

    def sync(self, store, config: Config, grow=None) -> bool:
        """True if what this process serves changed. `grow(n)` is called before an exploration
        canary is served: the current model must have its replicas first. (A `Periodic` task: a
        failure is logged and counted there.)"""
        record = self.record = store.canary()
        if record is not None and record["status"] == RUNNING and config.canary.auto and \
                apply_rule(store, record, config):
            record = self.record = store.canary()
        if record is None or record["status"] != RUNNING:
            if self.held is not None:
                log.info("canary %s ended (%s): every user gets the current model", self.held.record["id"],
                         record["status"] if record else "gone")
                self.held = None
                return True
            return False
        if record["kind"] == EXPLORATION and record["base"] is None:  # until one process has noted it
            store.note_canary_base(record["id"], section(config.exploration))
        if self.held is not None and self.held.record["id"] == record["id"]:
            return False
        if record["kind"] == EXPLORATION:
            strategy = exploration_strategy(record)
            if grow is not None:
                grow(strategy.replicas)
            self.held = Held(record, strategy=strategy)
        else:
            snapshot = store.canary_model(record)
            if snapshot is None:
                return False  # ended while we read it
            self.held = Held(record, learner=self.load_learner(snapshot))
        log.info("serving canary %s: %s to %.1f%% of users", record["id"], candidate(record), 100 * record["share"])
        return True


def format_report(result: dict) -> str:
    """`report` as text (`banditrec canary status`)."""
    def fmt(value, digits=4):
        return "n/a" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    arms, ctr = result["arms"], result["lift"]["ctr"]
    lines = [f"canary {result['id']}: {candidate(result)} for {result['share']:.1%} of the bandit's users, "
             f"{result['status']}" + (f" ({result['reason']})" if result["reason"] else "")
             + (f", now v{result['promoted_as']}" if result["promoted_as"] else ""), "",
             "| | canary | current |", "| --- | --- | --- |"]
    for label, key in (("decisions", "decisions"), ("impressions", "impressions"), ("clicks", "clicks"),
                       ("CTR", "ctr"), ("reward per decision", "reward_per_decision")):
        lines.append(f"| {label} | {fmt(arms[CANARY][key])} | {fmt(arms[CURRENT][key])} |")
    lines.append("")
    lines.append("CTR lift: n/a (both arms need clicks)" if ctr is None else
                 f"CTR lift: {ctr['lift']:+.1%} ({ctr['ci95'][0]:+.1%} to {ctr['ci95'][1]:+.1%}, 95 % CI)")
    if result["verdict"]:
        rule = result["rule"]
        auto = "yes" if rule["auto"] else "no, canary.auto is off"
        lines.append(f"the rule says: {result['verdict']} (min_decisions {rule['min_decisions']}, max_loss "
                     f"{rule['max_loss']:g}; applied on its own: {auto})")
    return "\n".join(lines)
