"""The A/B holdout on a real Redis: deterministic assignment, the popularity baseline for the
holdout, per-arm counts from decisions, feedback and events, and the lift report."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import NOW, url_of

from app import create_app
from banditrec.build import run_build
from banditrec.cli import main
from banditrec.config import ExperimentConfig
from serving.experiment import HOLDOUT, HOLDOUT_SCOPE, TREATMENT, arm_of, format_report, report


def test_assignment_is_deterministic_and_close_to_the_share():
    cfg = ExperimentConfig(holdout_share=0.2, salt="s1")
    arms = [arm_of(f"u{i}", cfg) for i in range(20_000)]
    assert arms == [arm_of(f"u{i}", cfg) for i in range(20_000)]
    assert 0.19 < arms.count(HOLDOUT) / len(arms) < 0.21
    other = [arm_of(f"u{i}", ExperimentConfig(holdout_share=0.2, salt="s2")) for i in range(20_000)]
    # a new salt draws anew: independent draws agree with probability 0.8^2 + 0.2^2 = 0.68
    assert 0.66 < np.mean([a == b for a, b in zip(arms, other)]) < 0.70


def test_lift_and_its_interval_cover_the_truth():
    """Simulated arms with a known 20 % CTR lift: the 95 % interval covers it in most seeds."""
    covered = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        n = 20_000
        counts = {TREATMENT: {"impressions": n, "clicks": rng.binomial(n, 0.06)},
                  HOLDOUT: {"impressions": n, "clicks": rng.binomial(n, 0.05)}}
        lo, hi = report(counts, ExperimentConfig(holdout_share=0.1))["lift"]["ctr"]["ci95"]
        covered += lo <= 0.2 <= hi
    assert covered >= 34  # 95 % nominal: 38 of 40 expected


def test_per_session_means_and_their_lift():
    # treatment: sessions with revenue 10, 20, 30; holdout: 10, 10, 10, 10 (sum, sum of squares, n)
    counts = {TREATMENT: {"sessions": 3, "revenue": 60, "revenue_sq": 1400, "duration": 300, "duration_sq": 50_000},
              HOLDOUT: {"sessions": 4, "revenue": 40, "revenue_sq": 400, "duration": 400, "duration_sq": 40_000}}
    out = report(counts, ExperimentConfig(holdout_share=0.5))
    assert out["arms"][TREATMENT]["revenue_per_session"] == 20 and out["arms"][HOLDOUT]["revenue_per_session"] == 10
    assert math.isclose(out["lift"]["revenue_per_session"]["lift"], 1.0)
    lo, hi = out["lift"]["revenue_per_session"]["ci95"]
    assert lo < 1.0 < hi
    assert out["lift"]["ctr"] is None  # no impressions yet: no lift rather than a division by zero


@pytest.fixture
def ab(build, open_service):
    service = open_service(build(experiment={"holdout_share": 0.5, "salt": "t1", "session_gap_s": 600.0}))
    return service, create_app(deps=service).test_client()


def test_holdout_users_get_popularity_and_every_arm_is_counted(ab):
    service, client = ab
    cfg = service.config.experiment
    users = [f"u{i}" for i in range(40)]
    seen_arms = set()
    for user in users:
        body = client.post("/recommend", json={"user_id": user, "k": 4}).get_json()
        arm = arm_of(user, cfg)
        assert body["arm"] == arm
        seen_arms.add(arm)
        if arm == HOLDOUT:
            assert body["strategy"] == "popularity" and all(i["probability"] == 1.0 for i in body["items"])
            assert not any(i["explored"] for i in body["items"])
        else:
            assert body["strategy"] in ("personalized", "cold_start")
        item = body["items"][0]["item_id"]
        assert client.post("/feedback",
                           json={"event_id": body["event_id"], "item_id": item, "reward": 1}).status_code == 200
        assert client.post("/feedback", json={"event_id": body["event_id"], "item_id": item, "reward": 1}) \
            .get_json()["duplicate"] is True  # a retry is not a second click
        t0 = service.clock()
        for dt, kind, value in ((0, "click", None), (60, "purchase", 25.0), (4000, "view", None)):
            event = {"user_id": user, "item_id": item, "type": kind, "timestamp": t0 + dt - 5000}
            if value is not None:
                event["value"] = value
            assert client.post("/events", json=event).status_code == 200
    assert seen_arms == {HOLDOUT, TREATMENT}

    out = client.get("/experiments").get_json()
    n = {arm: sum(arm_of(u, cfg) == arm for u in users) for arm in (TREATMENT, HOLDOUT)}
    for arm in (TREATMENT, HOLDOUT):
        a = out["arms"][arm]
        assert a["decisions"] == n[arm] and a["impressions"] == 4 * n[arm] and a["clicks"] == n[arm]
        assert a["ctr"] == 0.25
        # per user: a session (click, purchase 60 s later), then a new one (4000 s > the 600 s gap)
        assert a["sessions"] == 2 * n[arm] and a["purchases"] == n[arm] and a["converted_sessions"] == n[arm]
        assert a["revenue"] == 25.0 * n[arm] and math.isclose(a["session_length_s"], 30.0, rel_tol=1e-6)
        assert a["conversion_rate"] == 0.5
    assert out["lift"]["ctr"]["lift"] == 0.0 and out["lift"]["ctr"]["ci95"][0] < 0 < out["lift"]["ctr"]["ci95"][1]
    assert "| CTR | 0.2500 | 0.2500 |" in format_report(out)


def test_banditrec_report_prints_the_experiment(ab, capsys, tmp_path, monkeypatch):
    service, client = ab
    body = client.post("/recommend", json={"user_id": "u1", "k": 2}).get_json()
    assert body["arm"] in (TREATMENT, HOLDOUT)
    config = tmp_path / "report.toml"
    config.write_text(f'[experiment]\nholdout_share = 0.5\nsalt = "t1"\n[redis]\nprefix = "{service.store.prefix}"\n'
                      f'[data]\ndir = "{tmp_path / "data"}"\n')
    monkeypatch.setenv("REDIS_URL", url_of(service.store))  # the test's Redis, whichever backend this run uses
    assert main(["report", "--config", str(config), "--json"]) == 0
    assert '"decisions": 1' in capsys.readouterr().out




def test_hostile_numbers_give_a_finite_inconclusive_lift_rather_than_an_error():
    huge = {TREATMENT: {"sessions": 3, "revenue": 0.01, "revenue_sq": 2e12},
            HOLDOUT: {"sessions": 3, "revenue": 0.02, "revenue_sq": 1e-4}}
    out = report(huge, ExperimentConfig(holdout_share=0.1))  # must not raise
    lift = out["lift"]["revenue_per_session"]
    assert lift["lift"] == pytest.approx(0.01 / 0.02 - 1)  # the point estimate stands
    assert all(math.isfinite(x) for x in lift["ci95"]) and lift["ci95"][0] <= lift["lift"] <= lift["ci95"][1]
    assert lift["p_value"] == 1.0  # a variance that large says nothing
    same = {arm: {"impressions": 10, "clicks": 10} for arm in (TREATMENT, HOLDOUT)}
    assert report(same, ExperimentConfig(holdout_share=0.1))["lift"]["ctr"]["p_value"] == 1.0


def test_a_click_is_counted_once_even_after_a_zero_reward_and_retries(build, open_service):
    # under "max" aggregation every reward of a pair is recorded: 0 (seen), then a click, then its retry
    service = open_service(build(experiment={"holdout_share": 0.5, "salt": "t2"}, feedback={"aggregation": "max"}))
    client = create_app(deps=service).test_client()
    body = client.post("/recommend", json={"user_id": "u5", "k": 3}).get_json()
    item = body["items"][0]["item_id"]
    arm = body["arm"]
    before = client.get("/experiments").get_json()["arms"][arm]["clicks"]
    for reward in (0, 1, 1):
        assert client.post("/feedback", json={"event_id": body["event_id"], "item_id": item,
                                              "reward": reward}).status_code == 200
    assert client.get("/experiments").get_json()["arms"][arm]["clicks"] == before + 1
    assert client.post("/events", json={"user_id": "u5", "item_id": item, "type": "purchase",
                                        "value": -5}).status_code == 400


def test_the_normal_functions_match_scipy_stats():
    from scipy import stats

    from serving.experiment import _NORMAL

    assert math.isclose(_NORMAL.inv_cdf(0.975), stats.norm.ppf(0.975), rel_tol=1e-12)
    for x in (0.1, 1.0, 1.96, 3.5):
        assert math.isclose(2 * (1 - _NORMAL.cdf(x)), 2 * stats.norm.sf(x), rel_tol=1e-9)


def test_the_holdouts_popularity_is_fed_by_the_history_and_its_own_users_only(build, open_service, store,
                                                                              small_world, small_world_files):
    """Issue 14: the holdout served a popularity list that the personalized arm's clicks fed,
    so the lift measured banditrec against itself. Its list is the build's history (the file)
    plus its own users' events; the build keeps it so when it refits from the event stream."""
    service = open_service(build(experiment={"holdout_share": 0.5, "salt": "t3"}))
    client = create_app(deps=service).test_client()
    cfg = service.config.experiment
    before = dict(store.top_popular(100_000, scope=HOLDOUT_SCOPE))
    assert before and before == pytest.approx(dict(store.top_popular(100_000)))  # the history alone, so far
    treated = [f"t{n}" for n in range(400) if arm_of(f"t{n}", cfg) == TREATMENT][:30]
    held = [f"t{n}" for n in range(400) if arm_of(f"t{n}", cfg) == HOLDOUT][:30]
    loved, liked = small_world.items[-1]["item_id"], small_world.items[-2]["item_id"]
    for user in treated:
        assert client.post("/events", json={"user_id": user, "item_id": loved, "type": "click"}).status_code == 200
    for user in held[:5]:
        assert client.post("/events", json={"user_id": user, "item_id": liked, "type": "click"}).status_code == 200
    after = dict(store.top_popular(100_000, scope=HOLDOUT_SCOPE))
    assert after.get(loved, 0.0) == pytest.approx(before.get(loved, 0.0))  # 30 treatment clicks: not counted
    assert after[liked] == pytest.approx(before.get(liked, 0.0) + 5 * 3.0)  # 5 holdout clicks (weight 3)
    assert dict(store.top_popular(100_000))[loved] > before.get(loved, 0.0)  # the global list counts them all

    run_build(service.config, store, catalog=small_world_files["items.jsonl"],
              interactions=small_world_files["interactions.csv"], now=NOW, progress=False)  # a refit
    rebuilt = dict(store.top_popular(100_000, scope=HOLDOUT_SCOPE))
    rebuilt_global = dict(store.top_popular(100_000))
    assert rebuilt[liked] == pytest.approx(rebuilt_global[liked]) and rebuilt.get(loved, 0.0) < rebuilt_global[loved]
    service.popular.clear()
    body = client.post("/recommend", json={"user_id": held[0], "k": 3}).get_json()
    order = [item_id for item_id, _ in store.top_popular(100_000, scope=HOLDOUT_SCOPE)]
    positions = [order.index(i["item_id"]) for i in body["items"]]  # in the holdout list's order (stock skipped)
    assert (body["strategy"] == "popularity" and len(positions) == 3 and positions == sorted(positions)
            and positions[-1] < 10), body
