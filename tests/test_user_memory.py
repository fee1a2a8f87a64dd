"""The users' states a serving process keeps for degraded answers are bounded in memory, not
in users, and `state_bytes` is close to what a state really holds."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest

from serving.records import UserState
from serving.userstate import UserMemory, state_bytes


def _raw(i: int, recent: int, seen: int) -> str:
    """A user's state as Redis gives it (`store.user_state` parses JSON like this)."""
    return json.dumps({"profile": {"age_group": "25-34", "location": "FR", "signup_source": "ads"},
                       "taste": ["c1", "c2", "c3"], "n": 300, "last": 1.7e9,
                       "recent": [{"i": f"item{i}-{j:06d}", "t": "click", "ts": 1.7e9 + j, "c": "cat12"}
                                  for j in range(recent)],
                       "seen": [f"item{i}-{j:07d}" for j in range(seen)]})


def _parsed(text: str, rng) -> UserState:
    data = json.loads(text)
    data["vectors"] = {"v000001": rng.standard_normal(64).astype(np.float32)}
    return UserState.from_json(data)


@pytest.mark.parametrize("recent, seen", [(0, 0), (50, 0), (0, 1000), (50, 1000)])
def test_state_bytes_is_within_a_factor_two_of_what_the_state_holds(recent, seen):
    rng = np.random.default_rng(0)
    texts = [_raw(i, recent, seen) for i in range(100)]
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        states = [_parsed(text, rng) for text in texts]
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    held = sum(s.size_diff for s in after.compare_to(before, "filename")) / len(states)
    assert 0.5 < state_bytes(states[0]) / held < 2.0, (state_bytes(states[0]), held)


def test_the_budget_holds_the_most_recent_users_and_drops_the_oldest_first():
    rng = np.random.default_rng(1)
    heavy, light = _parsed(_raw(0, 50, 1000), rng), _parsed(_raw(1, 0, 0), rng)
    memory = UserMemory(budget_mb=1.0)
    for u in range(100):
        memory.put(f"h{u}", heavy)
    assert memory.bytes <= 1024 * 1024 and len(memory) == 1024 * 1024 // state_bytes(heavy)
    assert memory.get("h99") is heavy and not memory.get("h0").known  # the oldest went first
    memory.put("h99", light)  # a user's newer state replaces the older in the count
    assert memory.bytes == (len(memory) - 1) * state_bytes(heavy) + state_bytes(light)
    for u in range(2000):
        memory.put(f"l{u}", light)
    assert memory.bytes <= 1024 * 1024 and not memory.get("h99").known and memory.get("l1999") is light
    assert not memory.get("nobody").known


def test_a_zero_budget_keeps_nothing_and_unknown_users_are_not_kept():
    memory = UserMemory(budget_mb=0.0)
    memory.put("u", _parsed(_raw(0, 0, 0), np.random.default_rng(2)))
    assert len(memory) == 0 and memory.bytes == 0
    memory = UserMemory()
    memory.put("u", UserState())
    assert len(memory) == 0
