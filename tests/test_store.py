"""The Redis seam against a real server: decisions, rewards, claims, snapshots, catalog changes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import redis

from banditrec.config import Config
from store.redis_store import Store, StoreError


def test_decision_is_written_once_per_event_id(store):
    assert store.put_decision("e1", {"items": {"i1": [1, 0.5, "|Item id=i1"]}, "ts": 1.0}, ttl_s=60)
    assert not store.put_decision("e1", {"items": {}, "ts": 2.0}, ttl_s=60)
    decision, acked = store.feedback_state("e1", "i1")
    assert decision["ts"] == 1.0 and acked is None
    assert store.feedback_state("e2", "i1") == (None, None)
    ttl = store.client.pttl(store.key("dec", "{e1}"))
    assert 0 < ttl <= 60_000


def test_records_written_by_the_standard_library_json_of_the_release_before_still_read(store):
    """Decisions, rewards and recent events are written by orjson now (compact, NaN as null);
    the ones a running deployment holds were written by `json.dumps` (spaces, NaN tokens)."""
    old = {"items": {"i1": [1, 0.5, "|Item id=i1 cat=é"]}, "ts": 1.0, "score": float("nan")}
    store.client.set(store.key("dec", "{e1}"), json.dumps(old))
    store.client.xadd(store.key("rewards"), {"e": json.dumps({"event_id": "e1", "reward": 1.0})})
    store.client.lpush(store.key("recent", "{u1}"), json.dumps({"i": "i1", "t": "click", "ts": 5.0, "c": None}))
    decision, _ = store.feedback_state("e1", "i1")
    assert decision["items"] == old["items"] and np.isnan(decision["score"])
    assert [entry for _, entry in store.read_rewards()] == [{"event_id": "e1", "reward": 1.0}]
    assert store.user_state("u1")["recent"] == [{"i": "i1", "t": "click", "ts": 5.0, "c": None}]
    assert store.put_decision("e2", {"items": {}, "ts": 2.0, "score": float("nan")}, ttl_s=60)
    assert store.client.get(store.key("dec", "{e2}")) == b'{"items":{},"ts":2.0,"score":null}'  # JSON, no NaN token


def _round_trips(store, monkeypatch) -> list:
    """Counts the pipelines the request-path client sends."""
    sent, pipeline = [], store.fast.pipeline

    def counted(*args, **kwargs):
        pipe = pipeline(*args, **kwargs)
        execute = pipe.execute
        pipe.execute = lambda *a, **k: sent.append(len(pipe)) or execute(*a, **k)
        return pipe

    monkeypatch.setattr(store.fast, "pipeline", counted)
    return sent


def _script_commands(store) -> int:
    """SCRIPT commands the server has run (SCRIPT EXISTS, LOAD: round trips of their own)."""
    stats = store.fast.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k.startswith("cmdstat_script"))


def test_a_decision_and_its_log_entry_and_counters_go_in_one_round_trip_when_its_id_is_ours(store, monkeypatch):
    sent = _round_trips(store, monkeypatch)
    logged = dict(close_at=5.0, log_entry={"event_id": "x"}, arm=("salt", "treatment", {"decisions": 1}),
                  shown=[("i1", 1, 1.0)])
    scripts_asked = _script_commands(store)
    assert store.put_decision("ours", {"items": {}, "ts": 1.0}, ttl_s=60, unique=True, **logged)
    assert len(sent) == 1
    assert _script_commands(store) == scripts_asked  # the exposure's script went by its text: no SCRIPT EXISTS
    assert store.put_decision("theirs", {"items": {}, "ts": 1.0}, ttl_s=60, **logged)
    assert len(sent) == 3  # a client's id: stored first, the rest once it did not clash
    assert not store.put_decision("theirs", {"items": {}, "ts": 2.0}, ttl_s=60, **logged)
    assert len(sent) == 4  # a clash writes nothing more
    assert [e["event_id"] for _, e in store.read_decision_log()] == ["x", "x"]
    assert store.arm_counts("salt")["treatment"]["decisions"] == 2
    assert store.feedback_state("ours", "i1")[0]["ts"] == 1.0
    # a server-made id found stored is our own write, resent (a cluster client retries): not a clash
    assert store.put_decision("ours", {"items": {}, "ts": 1.0}, ttl_s=60, unique=True)
    # its close refused: a degraded answer, as when the decision goes first
    store.client.set(store.key("pending"), "not a sorted set")
    with pytest.raises(StoreError):
        store.put_decision("ours-2", {"items": {}, "ts": 1.0}, ttl_s=60, unique=True, **logged)


def test_reward_stream_is_ordered_and_readable_from_a_cursor(store):
    ids = [store.append_reward({"event_id": f"e{n}", "item_id": "i", "n": n}, maxlen=10_000) for n in range(5)]
    assert [e["n"] for _, e in store.read_rewards()] == [0, 1, 2, 3, 4]
    assert [e["n"] for _, e in store.read_rewards(after=ids[2])] == [3, 4]
    assert store.read_rewards(after=ids[-1]) == []
    store.mark_acked("e1", "i", ids[1], ttl_s=60)
    assert store.feedback_state("e1", "i")[1] == ids[1]


@pytest.mark.parametrize("how, want", [("max", 2.5), ("sum", 3.0)])
def test_an_acknowledged_reward_is_folded_marked_and_told_its_first_click_in_one_call(store, how, want):
    sid = store.append_reward({"event_id": "e", "item_id": "i"}, maxlen=10_000)
    assert store.mark_acked("e", "i", sid, ttl_s=60, aggregate=(0.5, how), click=True) is True  # the first click
    assert store.mark_acked("e", "i", sid, ttl_s=60, aggregate=(2.5, how), click=True) is False  # not again
    assert store.mark_acked("e", "j", sid, ttl_s=60, aggregate=(1.0, how)) is False  # not a click: not asked
    assert store.mark_acked("e", "j", sid, ttl_s=60, click=True) is True  # the other item's first click
    assert store.feedback_state("e", "i")[1] == sid
    assert store.closing_states(["e"])[0][3] == {"i": want, "j": 1.0}
    assert 0 < store.client.pttl(store._ekey("ack", "e")) <= 60_000
    assert 0 < store.client.pttl(store.key("clicked", "{e}")) <= 60_000


def test_first_stream_entry_of_a_pair_wins_the_claim_also_on_replay(store):
    a = store.append_reward({"event_id": "e", "item_id": "i"}, maxlen=10_000)
    b = store.append_reward({"event_id": "e", "item_id": "i"}, maxlen=10_000)
    c = store.append_reward({"event_id": "e", "item_id": "j"}, maxlen=10_000)
    batch = store.read_rewards()
    assert store.claim_rewards(batch, ttl_s=60) == [1, 0, 1]  # 1: first time
    assert store.claim_rewards(batch, ttl_s=60) == [2, 0, 2]  # 2: a replay of the winner; the loser loses again
    assert [sid for sid, _ in batch] == [a, b, c]


def test_snapshots_are_versioned_and_pruned(store):
    assert store.latest_snapshot() is None
    versions = [store.put_snapshot(f"model-{n}".encode(), {"cursor": f"{n}-0"}, keep=3) for n in range(5)]
    assert versions == [1, 2, 3, 4, 5]
    blob, meta = store.latest_snapshot()
    assert blob == b"model-4" and meta["version"] == 5 and meta["cursor"] == "4-0"
    assert [m["version"] for m in store.list_snapshots()] == [3, 4, 5]
    assert not store.client.exists(store.key("model", "{model}", "v", "1"))


def test_popularity_is_replaced_as_a_whole(store):
    store.put_popularity({"a": 3.0, "b": 1.0, "c": 2.0})
    assert store.top_popular(2) == [("a", 3.0), ("c", 2.0)]
    store.put_popularity({"z": 1.0}, scope="seg:age_group=18-24")
    assert store.top_popular(5, scope="seg:age_group=18-24") == [("z", 1.0)] and store.top_popular(1)[0][0] == "a"
    store.put_popularity({"d": 1.0})
    assert store.top_popular(10) == [("d", 1.0)]
    store.put_popularity({})
    assert store.top_popular(10) == []


def test_quality_counts_are_replaced_by_a_build_and_counted_up_by_events(store):
    store.put_quality({"a": 10.0, "b": 4.0, "c": 1.0}, {"a": 2.0, "b": 3.0})
    assert store.quality_counts(2) == [("a", 10.0, 2.0), ("b", 4.0, 3.0)]
    store.bump_trending(["global"], "c", 3.0, ts=0.0, half_life_s=86400.0, keep=100, engaged=True)
    store.bump_trending(["global"], "d", 1.0, ts=0.0, half_life_s=86400.0, keep=100, engaged=False)
    store.bump_trending(["global"], "e", 1.0, ts=0.0, half_life_s=86400.0, keep=100)  # not counted
    assert sorted(store.quality_counts(10)) == [("a", 10.0, 2.0), ("b", 4.0, 3.0), ("c", 2.0, 1.0), ("d", 1.0, 0.0)]
    store.put_quality({"x": 5.0}, {})
    assert store.quality_counts(10) == [("x", 5.0, 0.0)]
    store.put_quality({}, {})
    assert store.quality_counts(10) == []


def test_long_top_lists_are_read_in_chunks_with_the_same_result(store, monkeypatch):
    import store.popularity as popularity

    events = {f"i{n}": float(100 - n) for n in range(23)}
    engaged = {f"i{n}": float(n % 4) for n in range(0, 23, 2)}
    store.put_popularity({f"p{n}": n + 0.5 for n in range(17)})
    store.put_quality(events, engaged)
    whole = store.top_popular(50), store.quality_counts(50), store.quality_counts(7)
    calls = []
    script = store._top_with_script
    monkeypatch.setattr(store, "_top_with_script", lambda **kw: calls.append(kw["args"]) or script(**kw))
    monkeypatch.setattr(popularity, "TOP_CHUNK", 5)
    assert (store.top_popular(50), store.quality_counts(50), store.quality_counts(7)) == whole
    assert calls[:4] == [[0, 4], [5, 9], [10, 14], [15, 19]]  # 17 items: the fourth chunk is short, the last
    assert len(calls) == 4 + 5 + 2
    assert whole[1] == [(f"i{n}", 100.0 - n, float(n % 4) if n % 2 == 0 else 0.0) for n in range(23)]
    assert whole[0][0] == ("p16", 16.5) and len(whole[0]) == 17


def test_top_lists_keep_any_id_without_a_line_break_and_every_score_exactly(store, monkeypatch):
    import store.popularity as popularity

    scores = {"a b": 0.1, "ü-ñ/é": 1e-300, "x\ty": 2.0 / 3.0, "i 1": 12345678.123456789, "0": 3.0, "'\"": 7e12}
    store.put_popularity(scores)
    monkeypatch.setattr(popularity, "TOP_CHUNK", 4)  # a full chunk and a short one
    expected = sorted(scores.items(), key=lambda kv: -kv[1])
    assert store.top_popular(10) == expected  # == on floats: the very numbers put
    ids, column = store.popularity_columns(10, pause_s=0.001)
    assert ids == [i for i, _ in expected] and column.tolist() == [v for _, v in expected]
    store.put_popularity({})
    ids, column = store.popularity_columns(10)
    assert ids == [] and column.shape == (0,)


def test_a_click_sent_to_feedback_and_to_events_counts_once_in_quality_whichever_comes_first(store):
    click = dict(ts=0.0, half_life_s=86400.0, keep=100, engaged=True)
    store.put_quality({"a": 10.0, "b": 10.0}, {"a": 2.0, "b": 2.0})
    store.count_engaged("a", 1, user_id="u1", attribution_ttl_s=60)  # the reward first, then the event
    store.bump_trending(["global"], "a", 3.0, attribute=("u1", 60), **click)
    store.bump_trending(["global"], "b", 3.0, attribute=("u1", 60), **click)  # the event first, then the reward
    store.count_engaged("b", 2, user_id="u1", attribution_ttl_s=60)
    store.bump_trending(["global"], "b", 3.0, attribute=("u2", 60), **click)  # another user's own click: counted
    assert sorted(store.quality_counts(10)) == [("a", 10.0, 2.0), ("b", 11.0, 3.0)]
    events, engaged, _, rewards, _ = store.item_counts(["a", "b", "c"])
    assert (events, engaged, rewards) == ([10.0, 11.0, 0.0], [2.0, 3.0, 0.0], [1.0, 1.0, None])
    store.bump_trending(["global"], "a", 3.0, attribute=("u1", 60), **click)  # each mark attributes one click
    store.count_engaged("c", 1)  # without the user: not matched
    store.bump_trending(["global"], "c", 3.0, attribute=("u1", 60), **click)
    assert sorted(store.quality_counts(10)) == [("a", 11.0, 3.0), ("b", 11.0, 3.0), ("c", 1.0, 1.0)]


def test_every_change_of_item_counts_enters_the_change_list_or_the_exposure_log(store):
    start = store.item_changes(0)
    assert (start.seq, start.trimmed, start.items, start.totals, start.counts) == (0, 0, [], None, None)
    assert start.shown == []
    assert start.epoch and start.complete
    store.count_shown([("a", 1, 1.0), ("b", 2, 0.5), ("a", 3, 0.25)])
    shown = store.item_changes(start.seq)
    assert shown.items == [] and shown.seq > start.seq  # exposure is logged, not listed
    assert shown.shown == [(shown.seq, ["a", "b"], [1.25, 0.5])]
    store.count_engaged("b", 2, user_id="u1")
    store.bump_trending(["global"], "c", 1.0, ts=0.0, half_life_s=3600, keep=100, engaged=False)
    store.bump_trending(["global"], "d", 1.0, ts=0.0, half_life_s=3600, keep=100)  # trending only: no count
    later = store.item_changes(shown.seq)
    assert later.epoch == start.epoch and sorted(later.items) == ["b", "c"] and later.totals == (1.75, 1.0)
    assert later.shown == []
    zero = [[float(v or 0.0) for v in column] for column in store.item_counts(later.items)[:4]]
    assert [[float(v or 0.0) for v in column] for column in later.counts] == zero  # the counts come along
    assert store.item_changes(shown.seq, counts_up_to=1).counts is None  # ... only for a short list
    assert store.item_changes(later.seq).items == []
    assert not store.item_changes(start.seq, limit=1).complete and not store.item_changes(0, shown_limit=1).complete
    *_, exposure, _, asof = store.counts_as_of(["a", "b", "e"])
    assert exposure == [1.25, 0.5, None] and asof == later.seq
    store.put_quality({"a": 3.0}, {"a": 1.0})  # a build replaced the counts: everything kept is stale
    assert store.item_changes(later.seq).epoch != start.epoch


def test_the_change_list_is_trimmed_and_says_up_to_where(store):
    for start in range(0, 101_500, 5_000):
        pipe = store.client.pipeline(transaction=False)
        store._touch(pipe, [f"i{n}" for n in range(start, min(start + 5_000, 101_500))])
        pipe.execute()
    changes = store.item_changes(0, limit=200_000)
    assert len(changes.items) <= 100_000 and changes.trimmed > 0
    assert "i0" not in changes.items and "i101499" in changes.items


def test_the_exposure_log_is_trimmed_and_says_up_to_where(store):
    slates = [[(f"i{n}", 1, 1.0) for n in range(start, start + 10_000)] for start in range(0, 205_000, 10_000)]
    for slate in slates:
        store.count_shown(slate)
    changes = store.item_changes(0, shown_limit=1000)
    kept = sum(len(ids) for _, ids, _ in changes.shown)
    assert 190_000 <= kept <= 200_000 and changes.trimmed == changes.shown[0][0] - 1
    assert changes.shown[-1][1][-1] == "i209999" and changes.shown[0][1][0] != "i0"
    assert store.item_counts(["i0"])[2] == [1.0]  # trimmed from the log, still counted


def test_item_counts_carry_the_live_totals_over_all_items(store):
    assert store.item_counts(["a"])[4] is None  # nothing shown yet
    store.count_shown([("a", 1, 1.0), ("b", 2, 0.5)])
    store.count_shown([("c", 1, 1.0)])
    store.count_engaged("b", 2)
    assert store.item_counts(["a"])[2:] == ([1.0], [None], (2.5, 1.0))
    assert store.item_counts([])[4] == (2.5, 1.0)


def test_live_exposure_ranks_as_a_sorted_set_would_and_counts_read_it(store):
    store.count_shown([("a", 1, 1.0), ("b", 2, 0.5), ("c", 3, 0.5), ("d", 4, 0.25)])
    store.count_shown([("d", 1, 1.0)])
    store.count_engaged("c", 3)
    assert store.live_counts(10) == [("d", 1.25, 0.0), ("a", 1.0, 0.0), ("c", 0.5, 1.0), ("b", 0.5, 0.0)]
    assert store.live_counts(3) == [("d", 1.25, 0.0), ("a", 1.0, 0.0), ("c", 0.5, 1.0)]  # a tie: the greater id
    assert store.item_counts(["b", "x"])[2] == [0.5, None]
    found = {i: n for ids, counts in store.scan_counts(store.EXPOSURE) for i, n in zip(ids, counts.tolist())}
    assert found == {"a": 1.0, "b": 0.5, "c": 0.5, "d": 1.25}


def test_live_exposure_ranked_from_many_chunks_keeps_the_sorted_set_order(store):
    """Read in chunks and cut to the best ~2n on the way: the same n as one sort of all of them
    (five levels of exposure, so ties fall on every cut)."""
    shown = [(f"i{k:05d}", 1, float(k % 5 + 1)) for k in range(6000)]
    for start in range(0, len(shown), 500):
        store.count_shown(shown[start:start + 500])
    everything = sorted(((w, item_id) for item_id, _, w in shown), reverse=True)
    for n in (1, 7, 1300, 7000):
        assert [(i, e) for i, e, _ in store.live_counts(n)] == [(i, w) for w, i in everything[:n]]


def test_live_exposure_a_release_before_kept_in_a_sorted_set_is_read_beside_the_hash_and_never_written(store):
    old = store._pkey(store.LEGACY_EXPOSURE, "global")
    store.client.zadd(old, {"a": 2.0, "b": 0.5, **{f"x{n}": 0.125 for n in range(3000)}})  # the release before's
    store.count_shown([("a", 1, 1.0), ("c", 2, 0.25)])  # this release's
    store.count_engaged("a", 1)  # (on the change list: its counts come with the changes)
    assert store.item_counts(["a", "b", "c", "x7", "none"])[2] == [3.0, 0.5, 0.25, 0.125, None]
    assert store.item_changes(0).counts[2] == [3.0]
    found = {}
    for ids, counts in store.scan_counts(store.EXPOSURE):  # later chunks replace earlier ones, as a load does
        found.update(zip(ids, counts.tolist()))
    assert len(found) == 3003 and (found["a"], found["b"], found["c"], found["x9"]) == (3.0, 0.5, 0.25, 0.125)
    assert store.live_counts(3) == [("a", 3.0, 1.0), ("b", 0.5, 0.0), ("c", 0.25, 0.0)]
    assert store.client.zscore(old, "a") == 2.0 and store.client.zcard(old) == 3002  # never written


def test_position_impressions_count_a_slate_in_one_field_and_read_as_every_position(store):
    """A slate of k counts at positions 1..k; a batch of slates of several sizes likewise; the
    per-position fields a release before wrote (n<p>) are read beside them."""
    key = store._pkey("lpos", "global")
    store.client.hset(key, mapping={"n1": 4.0, "n2": 3.0, "n7": 1.0, "r1": 2.0})  # the release before's
    store.count_shown([(f"i{p}", p, 1.0) for p in range(1, 51)])  # one slate of 50
    assert store.client.hlen(key) == 4  # the release before's fields alone: it would read others as rewards
    assert store.client.hgetall(store._pkey(store.SLATE_SIZES, "global")) == {b"50": b"1"}  # one field, not 50
    store.count_exposure({"a": 3.0}, {1: 3, 2: 3, 3: 1, 9: 2})  # a batch: two slates of 2, one of 3, and stray ones
    impressions, rewards = store.position_counts()
    expected = {p: 1.0 for p in range(1, 51)}
    for p, n in {1: 4.0 + 3, 2: 3.0 + 3, 3: 1.0, 7: 1.0, 9: 2.0}.items():
        expected[p] += n
    assert impressions == expected and rewards == {1: 2.0}


def test_users_round_trip_with_vectors_per_space(store):
    vec = np.arange(8, dtype=np.float32) / 10
    assert store.put_users([("u1", {"vector": vec, "taste": ["shoes", "bags"], "n": 4, "age_group": "25-34"}),
                            ("u 2/ü{x}", {"location": "DE"})], space="v1") == 2
    u1 = store.user_state("u1")
    np.testing.assert_array_equal(u1["vectors"]["v1"], vec)
    assert (u1["taste"], u1["n"], u1["profile"]) == (["shoes", "bags"], 4, {"age_group": "25-34"})
    assert store.user_state("u 2/ü{x}")["profile"] == {"location": "DE"}
    assert store.user_state("nobody") is None
    store.put_users([("u1", {"vector": 2 * vec, "n": 5})], space="v2", drop_spaces=["v0"])
    assert set(store.user_state("u1")["vectors"]) == {"v1", "v2"}
    store.put_users([("u1", {"vector": 3 * vec, "n": 6})], space="v3", drop_spaces=["v1"])
    state = store.user_state("u1")
    assert set(state["vectors"]) == {"v2", "v3"} and state["taste"] == [] and state["profile"] == {"age_group": "25-34"}


def test_a_vector_changed_between_the_read_and_the_write_is_read_and_stepped_again(store):
    """`update_user_vector` writes only over the vector its step saw: another event's write in
    between is stepped on, not overwritten; a change of another field of the user is no conflict."""
    key = store.key("user", "{u1}")
    seen = []

    def step(old):
        seen.append(None if old is None else old.tolist())
        if len(seen) == 1:  # another event lands between this read and this write
            store.client.hset(key, "vec:s", np.array([5.0, 5.0], dtype=np.float32).tobytes())
        return (old if old is not None else np.zeros(2, np.float32)) + 1

    assert store.update_user_vector("u1", "s", step)
    assert seen == [None, [5.0, 5.0]]
    np.testing.assert_array_equal(store.user_state("u1")["vectors"]["s"], [6.0, 6.0])

    seen.clear()
    bump = lambda old: store.client.hincrby(key, "n", 1) and old + 1  # noqa: E731 (the user's count moves meanwhile)
    assert store.update_user_vector("u1", "s", lambda old: seen.append(1) or bump(old))
    assert seen == [1]
    np.testing.assert_array_equal(store.user_state("u1")["vectors"]["s"], [7.0, 7.0])
    assert store.update_user_vector("u1", "s", lambda old: None) is False  # None: left as it is

    # an event reads the vector with its other writes; a stale copy is read again, not written over
    profile, raw = store.record_user_event("u1", entry={"i": "i1", "t": "click", "ts": 1.0}, ts=1.0, recent_n=5,
                                           recent_ttl_s=60, seen=None, seen_max=2, seen_ttl_s=60, vector_of="s")
    assert profile == {} and np.frombuffer(raw, np.float32).tolist() == [7.0, 7.0]
    assert store.record_user_event("u1", entry={"i": "i1", "t": "click", "ts": 1.0}, ts=1.0, recent_n=5,
                                   recent_ttl_s=60, seen=None, seen_max=2, seen_ttl_s=60, vector_of="t")[1] is None
    stale = np.array([1.0, 1.0], dtype=np.float32).tobytes()
    assert store.update_user_vector("u1", "s", lambda old: old * 2, old=stale)
    np.testing.assert_array_equal(store.user_state("u1")["vectors"]["s"], [14.0, 14.0])


def test_a_user_event_updates_state_atomically(store):
    for n in range(7):
        store.record_user_event("u1", entry={"i": f"i{n}", "t": "click", "ts": 100.0 + n, "c": "shoes"},
                                ts=100.0 + n, recent_n=5, recent_ttl_s=60,
                                seen=(f"i{n}", 100.0 + n) if n % 2 else None, seen_max=2, seen_ttl_s=60)
    store.record_user_event("u1", entry={"i": "late", "t": "view", "ts": 50.0}, ts=50.0, recent_n=5,
                            recent_ttl_s=60, seen=None, seen_max=2, seen_ttl_s=60)
    state = store.user_state("u1")
    assert state["n"] == 8 and state["last"] == 106.0  # a late event does not move "last" back
    state["recent"] = state["recent"][1:]
    assert [e["i"] for e in state["recent"]] == ["i6", "i5", "i4", "i3"]  # newest first, last 5 kept
    assert state["seen"] == {"i3", "i5"}  # consuming events only, newest 2
    assert 0 < store.client.pttl(store.key("recent", "{u1}")) <= 60_000


def test_trending_counts_decay_with_time(store):
    day = 86400.0
    for _ in range(10):
        store.bump_trending(["global"], "old-hit", 1.0, ts=0.0, half_life_s=day, keep=100)
    store.bump_trending(["global"], "new", 1.0, ts=5 * day, half_life_s=day, keep=100)  # 10 x 2^-5 < 1
    assert store.top_trending(2) == ["new", "old-hit"]
    store.bump_trending(["global", "cat:x"], "old-hit", 40.0, ts=5 * day, half_life_s=day, keep=100)
    assert store.top_trending(1) == ["old-hit"] and store.top_trending(5, scope="cat:x") == ["old-hit"]
    for n in range(30):
        store.bump_trending(["small"], f"i{n}", 1.0 + n, ts=0.0, half_life_s=day, keep=10)
    assert len(store.top_trending(100, scope="small")) <= 11 and store.top_trending(1, scope="small") == ["i29"]


def test_catalog_changes_are_read_in_order_past_a_page(store):
    for n in range(25):
        store.append_item({"item_id": f"n{n}"}, np.full(4, n, dtype=np.float32), space="v1")
    store.append_item({"item_id": "n3", "deleted": True}, None)
    changes = list(store.iter_items())
    assert [item["item_id"] for _, item, _, _ in changes] == [f"n{n}" for n in range(25)] + ["n3"]
    assert changes[7][2].tolist() == [7.0] * 4 and changes[7][3] == "v1"
    assert changes[-1][2] is None and changes[-1][1]["deleted"] is True
    assert [i["item_id"] for _, i, _, _ in store.read_items(after=changes[22][0], fast=True)] == ["n23", "n24", "n3"]


def test_keys_are_under_the_prefix_and_deleted_with_it(store):
    store.put_decision("e1", {"ts": 0, "items": {}}, ttl_s=60)
    store.put_meta("build", "v000001")
    keys = list(store.client.scan_iter(match=f"{store.prefix}:*"))
    assert keys and all(k.decode().startswith(store.prefix + ":") for k in keys)
    assert store.delete_all() == len(keys)
    assert store.get_meta("build") is None


def test_an_unreachable_redis_is_a_store_error():
    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, socket_timeout=0.2)
    with pytest.raises(StoreError, match="redis unavailable"):
        Store(client, "x").append_reward({"event_id": "e", "item_id": "i"}, maxlen=1000)


def test_request_path_timeouts_do_not_block_writes(store, redis_url):
    from banditrec.config import Config
    from store import make_client

    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.05, socket_timeout=0.05)
    split = Store(store.client, store.prefix, fast=dead, retry_after_s=30.0)
    for _ in range(3):
        with pytest.raises(StoreError):
            split.user_state("u1")  # fast reads fail, and their breaker opens
    with pytest.raises(StoreError, match="failing fast"):
        split.user_state("u1")
    assert split.append_event({"user_id": "u1", "item_id": "i1", "type": "view", "timestamp": 1.0}, 1000)
    assert split.user_state("u1", fast=False) is None  # the normal client is untouched
    assert make_client(redis_url, Config().redis)  # (the fixture's server is fine)


def test_snapshot_parts_are_compressed_staged_and_pruned_with_their_version(store):
    model, replicas = bytes(range(256)) * 4000, [b"r0" * 50_000, b"r1" * 50_000]
    v1 = store.put_snapshot(model, {"cursor": "1-0"}, keep=1, replicas=replicas)
    blob, meta = store.latest_snapshot()
    assert blob == model and meta["replica_blobs"] == replicas and "codec" not in meta
    stored = store.client.get(store.key("model", "{model}", "v", f"{v1}:p0"))
    assert stored is not None and len(stored) < len(model) / 10  # compressed
    assert not store.client.keys(store.key("model", "{model}", "tmp", "*"))  # staging keys were renamed
    v2 = store.put_snapshot(b"next", {"cursor": "2-0"}, keep=1)
    assert store.latest_snapshot()[0] == b"next"
    assert not store.client.exists(*[store.key("model", "{model}", "v", f"{v1}{s}") for s in ("", ":p0", ":p1", ":p2")])
    # a writer that lost the race leaves no staged parts behind
    assert store.put_snapshot(b"late", {"cursor": "3-0"}, keep=1, expect_latest=v1) is None
    assert not store.client.keys(store.key("model", "{model}", "tmp", "*")) and store.latest_version() == v2


def test_snapshots_whose_parts_an_older_release_compressed_with_zlib_still_load(store):
    import zlib

    store.put_snapshot(b"now", {"cursor": "1-0"}, keep=3)
    version = store.latest_version() + 1
    for i, part in enumerate((b"zlib-model" * 100, b"zlib-r0" * 100)):
        store.client.set(store.key("model", "{model}", "v", f"{version}:p{i}"), zlib.compress(part, 1))
    store.client.hset(store.key("model", "{model}", "v", str(version)),
                      mapping={"version": version, "parts": 2,
                               "meta": json.dumps({"cursor": "2-0", "replicas": 1, "codec": "zlib"})})
    store.client.set(store.key("model", "{model}", "latest"), version)
    blob, meta = store.latest_snapshot()
    assert blob == b"zlib-model" * 100 and meta["replica_blobs"] == [b"zlib-r0" * 100] and "codec" not in meta
    meta_key = store.key("model", "{model}", "v", str(version))
    store.client.hset(meta_key, "meta", json.dumps({"cursor": "2-0", "replicas": 1, "codec": "lz9"}))
    with pytest.raises(ValueError, match="'lz9'"):  # a newer release's codec: said, not handed to VW as bytes
        store.latest_snapshot()


def test_snapshots_written_inline_by_an_older_release_still_load(store):
    key = store.key("model", "{model}", "v", "7")
    store.client.hset(key, mapping={"version": 7, "blob": b"old-model", "r0": b"old-r0",
                                    "meta": json.dumps({"cursor": "9-0", "replicas": 1})})
    store.client.set(store.key("model", "{model}", "latest"), 7)
    blob, meta = store.latest_snapshot()
    assert blob == b"old-model" and meta["replica_blobs"] == [b"old-r0"] and meta["cursor"] == "9-0"


def test_the_embedded_server_persists_by_its_append_only_file_alone(embedded_redis):
    client = embedded_redis.client(Config().redis)
    config = {**client.config_get("save"), **client.config_get("appendonly")}
    assert config == {"save": "", "appendonly": "yes"}  # no snapshot forks under load
