"""The typed records (serving/records.py): what the store keeps round-trips, and records written
before a field existed read as they were meant."""

from __future__ import annotations

import pytest

from serving.records import Decision, RewardEntry, is_learnable

DECISION = Decision(ts=100.0, user_id="u1", shared="|User age=a", version=3,
                    items={"i1": (1, 0.9, "|Item id=i1"), "i2": (2, 0.05, "|Item id=i2")},
                    strategy="thompson", source="personalized", aggregation="max", importance_weighted=False,
                    arm="treatment", experiment="exp-1")


def test_a_decision_round_trips_through_the_stored_dict_with_the_keys_earlier_releases_wrote():
    stored = DECISION.to_json()
    assert stored["strategy"] == "personalized" and stored["strategy_name"] == "thompson"  # the response's meaning
    assert stored["agg"] == "max" and stored["iw"] is False and stored["exp"] == "exp-1"
    assert Decision.from_json(stored) == DECISION


def test_a_reward_entry_takes_what_learning_needs_from_its_decision_and_round_trips():
    entry = RewardEntry.of("reward", "e1", "i2", 1.0, DECISION, now=130.0)
    assert (entry.p, entry.position, entry.action, entry.decision_ts, entry.version) == (0.05, 2, "|Item id=i2",
                                                                                        100.0, 3)
    assert (entry.aggregation, entry.importance_weighted) == ("max", False)
    assert RewardEntry.from_json(entry.to_json()) == entry


def test_records_older_than_a_field_read_with_the_meaning_they_were_written_under():
    old_decision = {"ts": 1.0, "shared": "", "version": 0, "items": {"i1": [1, 1.0, "|Item id=i1"]}}
    decision = Decision.from_json(old_decision)
    assert (decision.aggregation, decision.importance_weighted, decision.experiment) == ("earliest", True, None)
    old_entry = {"event_id": "e", "item_id": "i1", "reward": "1", "p": 0.5, "shared": "", "action": "a"}
    entry = RewardEntry.from_json(old_entry)
    assert (entry.kind, entry.position, entry.reward) == ("reward", 1, 1.0)
    assert entry.importance_weighted is None  # the learner decides by its own config, as before


@pytest.mark.parametrize("kind, aggregation, learned", [
    ("reward", "earliest", True), ("reward", "max", False), ("reward", "sum", False),
    ("final", "max", True), ("default", "earliest", True), ("default", "sum", True), ("other", "earliest", False)])
def test_one_rule_says_which_stream_entries_are_learned(kind, aggregation, learned):
    entry = RewardEntry.of(kind, "e1", "i1", 0.0, DECISION, 0.0)
    entry = RewardEntry.from_json({**entry.to_json(), "agg": aggregation})
    assert entry.learnable is learned and is_learnable(entry.to_json()) is learned
