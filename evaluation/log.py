"""The logged decisions, joined with their rewards: from Redis, or from exported DSJson files.

A logged decision is evaluated as a one-slot bandit: its first position was drawn from a
distribution over the candidates (`probs`, logged at decision time, never recomputed);
its reward is the one the learner learned for that item (a client's reward, an aggregate,
or the default reward once the wait was over).

DSJson (Vowpal Wabbit's decision-service format; `banditrec export --format dsjson`), one
decision per line: `_label_cost` = -reward, `_label_probability`, `_labelIndex` (0-based)
and `_label_Action` (1-based) name the chosen action; `a` lists action ids (1-based) with
the chosen one first and `p` their probabilities; `c` holds the shared namespaces and
`_multi` one object of namespaces per action; `EventId`, `Timestamp`, `VWState.m` (model
version). `vw --dsjson --cb_explore_adf` reads it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from bandit.features import action_line
from banditrec.config import Config
from evaluation.estimators import EvaluationError
from serving.records import is_learnable
from serving.service import current_catalog
from store import Store


@dataclass
class LoggedDecision:
    event_id: str
    ts: float
    shared: str               # shared feature text
    actions: list[str]        # action feature text per candidate
    probs: np.ndarray         # first-position probability per candidate, as logged
    chosen: int               # index of the first-position item in actions
    reward: float
    item_ids: list[str]
    version: int = 0
    strategy: str = ""

    @property
    def logged_p(self) -> float:
        return float(self.probs[self.chosen])


def _learned_rewards(store: Store) -> dict[tuple[str, str], float]:
    """(event_id, item_id) -> the reward the learner learns for it (same rule as the learner)."""
    out: dict[tuple[str, str], float] = {}
    for _, entry in store.iter_rewards():
        key = (entry.get("event_id"), entry.get("item_id"))
        if is_learnable(entry) and key not in out:
            out[key] = float(entry["reward"])
    return out


def settled(config: Config, store: Store) -> list[LoggedDecision]:
    """The deployment's settled decisions (`from_store`), with the catalog as it is now."""
    return from_store(store, current_catalog(config, store), default_reward=config.feedback.default_reward,
                      settled_after_s=config.feedback.reward_wait_s + config.feedback.close_delay_s)


def from_store(store: Store, catalog, *, default_reward: float, settled_after_s: float,
               now: float | None = None) -> list[LoggedDecision]:
    """Logged decisions whose rewards are settled (older than the wait), joined with them.
    Action features come from the catalog's current lines (plus the logged similarity)."""
    now = time.time() if now is None else now
    rewards = _learned_rewards(store)
    out = []
    for _, entry in store.iter_decision_log():
        if now - entry["ts"] < settled_after_s or not entry.get("items"):
            continue  # rewards may still arrive
        ids, sims, probs = zip(*entry["candidates"])
        rows = [catalog.row_of.get(i) for i in ids]
        if any(r is None for r in rows):
            continue  # an item since deleted: its features are gone
        first = entry["items"][0][0]
        actions = [action_line(catalog.lines[r], s) for r, s in zip(rows, sims)]
        out.append(LoggedDecision(entry["event_id"], entry["ts"], entry["shared"], actions,
                                  np.asarray(probs, dtype=np.float64), list(ids).index(first),
                                  rewards.get((entry["event_id"], first), default_reward), list(ids),
                                  entry.get("version", 0), entry.get("strategy", "")))
    return out


# -- DSJson ---------------------------------------------------------------------------------

def _namespaces(text: str) -> dict[str, dict[str, float]]:
    """Our feature text as DSJson namespaces: "|User age=25-34 |Sim s:0.8" -> {"User": {...}, "Sim": {...}}."""
    out: dict[str, dict[str, float]] = {}
    for part in text.split("|")[1:]:
        tokens = part.split()
        if tokens:
            space = out.setdefault(tokens[0], {})
            for token in tokens[1:]:
                name, _, value = token.partition(":")
                space[name] = float(value) if value else 1.0
    return out


def _text(namespaces: dict, shared: bool) -> str:
    parts = ["shared"] if shared else []
    for space, features in namespaces.items():
        if space.startswith("_"):
            continue
        tokens = [name if value == 1.0 and "=" in name else f"{name}:{value!r}" for name, value in features.items()]
        parts.append(f"|{space} " + " ".join(tokens))
    return " ".join(parts)


def to_dsjson(decision: LoggedDecision) -> str:
    order = [decision.chosen] + [i for i in range(len(decision.actions)) if i != decision.chosen]
    return json.dumps({
        "_label_cost": -decision.reward, "_label_probability": decision.logged_p,
        "_label_Action": decision.chosen + 1, "_labelIndex": decision.chosen,
        "Timestamp": datetime.fromtimestamp(decision.ts, timezone.utc).isoformat(timespec="milliseconds").replace(
            "+00:00", "Z"),
        "Version": "1", "EventId": decision.event_id,
        "a": [i + 1 for i in order], "p": [float(decision.probs[i]) for i in order],
        "c": {**_namespaces(decision.shared.removeprefix("shared ")),
              "_multi": [_namespaces(a) for a in decision.actions]},
        "VWState": {"m": str(decision.version)},
        "_banditrec": {"items": decision.item_ids, "strategy": decision.strategy},
    })


def write_dsjson(decisions: Iterable[LoggedDecision], path: str | Path) -> int:
    count = 0
    with open(path, "w", encoding="utf-8") as fh:
        for decision in decisions:
            fh.write(to_dsjson(decision) + "\n")
            count += 1
    return count


def read_dsjson(path: str | Path) -> Iterator[LoggedDecision]:
    """Decisions from a DSJson file (ours, or any with the fields above)."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
                context = doc["c"]
                actions = [_text(a, shared=False) for a in context["_multi"]]
                probs = np.zeros(len(actions))
                for action, p in zip(doc["a"], doc["p"]):
                    probs[int(action) - 1] = float(p)
                ts = datetime.fromisoformat(doc.get("Timestamp", "1970-01-01T00:00:00Z").replace("Z", "+00:00"))
                extra = doc.get("_banditrec", {})
                yield LoggedDecision(str(doc.get("EventId", lineno)), ts.timestamp(),
                                     _text({k: v for k, v in context.items() if k != "_multi"}, shared=True),
                                     actions, probs, int(doc["_labelIndex"]), -float(doc["_label_cost"]),
                                     extra.get("items", [str(i) for i in range(len(actions))]),
                                     int(doc.get("VWState", {}).get("m", 0) or 0), extra.get("strategy", ""))
            except (KeyError, ValueError, TypeError, IndexError) as exc:
                raise EvaluationError(
                    f"{path}:{lineno}: not a DSJson decision ({exc.__class__.__name__}: {exc})") from None
