"""The real-data benchmark's replay runs end to end, on a tiny made-up data set in the
MovieLens 100k file format (no download), against a real `banditrec serve` subprocess.

Asserted: only what holds whatever the timing and the draws (answers, exclusions, the
report's shape, truths that hold by construction); nothing is timed.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from benchmarks import realdata, realdata_report
from simulations.movielens import load_movielens
from simulations.ratings import baselines, discount, fit_truth, split_history

GENRES = ["Action", "Comedy", "Drama", "Sci-Fi", "Children's", "Film-Noir"]
OCCUPATIONS = ["student", "engineer", "writer", "other"]


def write_tiny_movielens(directory, n_users=40, n_items=100, per_user=(25, 50), seed=3):
    """ml-100k.{inter,item,user} with ratings from a seeded rank-3 model (about 1,500 ratings)."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    U, V = rng.normal(size=(n_users, 3)), rng.normal(size=(n_items, 3))
    with open(directory / "ml-100k.item", "w", encoding="latin-1") as fh:
        fh.write("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n")
        for i in range(n_items):
            genres = rng.choice(GENRES, size=rng.integers(1, 4), replace=False)
            year = "unkonwn" if i == 7 else str(1930 + i % 69)  # (as the real file spells a missing year)
            fh.write(f"{i + 1}\tMovie \"number\" {i + 1}\t{year}\t{' '.join(genres)}\n")
    with open(directory / "ml-100k.user", "w", encoding="latin-1") as fh:
        fh.write("user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n")
        for u in range(n_users):
            zip_code = "T8H1N" if u == 5 else f"{rng.integers(0, 100000):05d}"
            fh.write(f"{u + 1}\t{rng.integers(12, 70)}\t{'MF'[u % 2]}\t{OCCUPATIONS[u % 4]}\t{zip_code}\n")
    popularity = np.exp(rng.normal(size=n_items))
    with open(directory / "ml-100k.inter", "w", encoding="latin-1") as fh:
        fh.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
        for u in range(n_users):
            items = rng.choice(n_items, size=rng.integers(*per_user), replace=False, p=popularity / popularity.sum())
            start = 880_000_000 + rng.integers(0, 10_000_000)
            for n, i in enumerate(items):
                rating = int(np.clip(np.rint(3.4 + 0.8 * U[u] @ V[i] + rng.normal(0, 0.5)), 1, 5))
                fh.write(f"{u + 1}\t{i + 1}\t{rating}\t{start + 3600 * n + rng.integers(0, 3000)}\n")
    return directory


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_movielens(tmp_path_factory.mktemp("ml-tiny"))


def test_world_by_construction(tiny):
    ml = load_movielens(tiny)
    assert ml.shape == (40, 100) and 1000 < len(ml.rating) < 2000
    assert ml.items[7]["year"] is None and ml.items[0]["title"] == 'Movie "number" 1'  # QUOTE_NONE
    truth = fit_truth(ml, seed=0)
    assert truth.p.shape == ml.shape and np.all((truth.p > 0) & (truth.p < 1))
    assert truth.mean_liked == pytest.approx(0.3, abs=1e-6)
    assert np.array_equal(fit_truth(ml, seed=0).p, truth.p)  # deterministic
    history = split_history(ml)
    for u in range(ml.shape[0]):  # the older half of each user's ratings, never a newer one
        own = ml.timestamp[ml.user == u]
        assert len(history.seen[u]) == len(own) // 2
        assert history.timestamp[history.user == u].max() <= np.sort(own)[len(own) // 2]
    assert np.all(np.diff(history.timestamp) >= 0)
    assert history.click.sum() == sum(int((ml.rating[(ml.user == u)][np.argsort(ml.timestamp[ml.user == u],
                                                                                 kind="stable")][:len(history.seen[u])]
                                           >= 4).sum()) for u in range(ml.shape[0]))
    # nobody clicks (every draw 1): every policy meets the same exclude sets, so the oracle is
    # the best slate of every round and each baseline stays within (0, oracle]
    rng = np.random.default_rng(0)
    users = rng.integers(ml.shape[0], size=200)
    clicks = [[int(rng.integers(ml.shape[1]))] if rng.random() < 0.3 else [] for _ in users]
    base = baselines(truth, history, users, [[] for _ in users], 10, seed=1, draws=np.ones((len(users), 10)))
    for name in ("best_static", "popularity", "random", "best_static_open"):
        assert np.all(base[name] <= base["oracle"] + 1e-12) and np.all(base[name] > 0)
    assert base["oracle"].max() <= discount(10).sum()
    assert base["best_static"].mean() >= base["random"].mean()  # mean true p ranks the population's mean best
    assert np.allclose(base["best_static"], base["best_static_open"])
    # each policy uses up its own clicks: with every shown item clicked (draws 0), a user's next
    # best-static slate holds the next 10 items, whatever banditrec's user clicked
    one = np.array([0, 0, 0])
    closed = baselines(truth, history, one, [[], [], []], 10, seed=1, draws=np.zeros((3, 10)))
    static = [i for i in np.argsort(-truth.item_mean, kind="stable") if i not in history.seen[0]]
    p = truth.p[0]
    for r in range(3):
        assert closed["best_static"][r] == pytest.approx(p[static[10 * r:10 * r + 10]] @ discount(10))
    assert closed["best_static_open"][2] == pytest.approx(closed["best_static"][0])  # nothing used up
    assert closed["oracle"][1] < closed["oracle"][0]  # its own best items are gone
    # banditrec's clicks only bind the open-loop score
    shifted = baselines(truth, history, users, clicks, 10, seed=1, draws=np.ones((len(users), 10)))
    assert np.array_equal(shifted["best_static"], base["best_static"])
    assert not np.allclose(shifted["best_static_open"], base["best_static_open"])


def _config(tmp_path):
    path = tmp_path / "service.toml"
    # a loaded CI machine must not turn answers "degraded"; everything else: shipped defaults
    path.write_text("[redis]\nrequest_timeout_ms = 2000\n[index]\nn_trees = 10\n")
    return path


@pytest.mark.slow
def test_replay_both_flows_against_a_served_subprocess(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # must not reach the child: it has its own Redis
    out, work = tmp_path / "out", tmp_path / "work"
    assert realdata.main(["--flow", "both", "--rounds", "300", "--data", str(tiny), "--out", str(out),
                          "--work", str(work), "--config", str(_config(tmp_path)), "--threads", "4",
                          "--no-progress", "--batch", "50"]) == 0
    for flow in ("api", "build"):
        result = json.loads((out / f"{flow}.json").read_text())
        svc, pol = result["service"], result["policies"]
        assert result["meta"]["service_stopped"] and result["meta"]["service_exit"] is not None
        assert not list((work / flow / "data").rglob("*.settings")), "embedded Redis left running"
        assert svc["recommend_ok"] == 300 and not svc["recommend_errors"]
        assert svc["returned_per_slate_min"] == 10 and svc["full_slates"] == 300
        assert svc["excluded_returned"] == 0 and svc["unknown_returned"] == 0 and svc["duplicate_returned"] == 0
        assert set(pol) == set(realdata_report.POLICIES) and set(result["paired"]) == set(realdata_report.BASELINES)
        for p in pol.values():
            numbers = [p["last_half"]["mean"], *p["last_half"]["ci95"], *p["curve"], p["share_of_oracle"]]
            assert all(math.isfinite(x) for x in numbers)
            assert p["last_half"]["ci95"][0] <= p["last_half"]["mean"] <= p["last_half"]["ci95"][1]
        for d in result["paired"].values():
            assert all(math.isfinite(x) for x in [d["last_half"]["mean"], *d["last_half"]["ci95"],
                                                  *d["last_half"]["ci95_iid"]])
        assert len(pol["banditrec"]["curve"]) == 10 and len(svc["explored_share_per_window"]) == 10
        assert all(0.0 <= s <= 1.0 for s in svc["explored_share_per_window"])
        assert svc["learned_total"] is not None and svc["learning"][0]["status"] == 200
        if flow == "api":  # every PUT and event accepted
            feed = result["meta"]["feed"]["statuses"]
            assert feed["items"] == {"200": 100} and feed["users"] == {"200": 40}
            assert feed["events"] == {"200": result["meta"]["history"]["events"]}
        # by construction: on a user's first visit every policy meets the same exclude set (the
        # history), and there the oracle's slate is the best one; later each policy has used up
        # its own clicks
        rows = (out / f"{flow}-rounds.csv").read_text().splitlines()
        header = rows[0].split(",")
        table = np.array([[float(x) for x in row.split(",")[header.index("banditrec"):]] for row in rows[1:]])
        assert table.shape == (300, len(realdata_report.POLICIES))
        assert np.all((table >= 0) & (table <= discount(10).sum() + 1e-4))
        ids = [row.split(",")[1] for row in rows[1:]]
        first = np.array([ids.index(u) == r for r, u in enumerate(ids)])
        oracle = table[:, realdata_report.POLICIES.index("oracle")]
        assert first.sum() > 20 and np.all(table[first] <= oracle[first, None] + 1e-4)
        assert (out / f"{flow}-curve.png").stat().st_size > 1000
        assert (out / f"{flow}.md").read_text().startswith(f"### Flow `{flow}`")
    # both flows replayed the same user sequence
    users = [[row.split(",")[1] for row in (out / f"{f}-rounds.csv").read_text().splitlines()[1:]]
             for f in ("api", "build")]
    assert users[0] == users[1]


def test_the_simulators_movielens_scenario_runs_on_the_ratings_world(tiny, embedded_redis):
    """`banditrec simulate --scenario movielens`: the same world in-process (a truth fitted to
    the ratings, their older half as the history); what a user rated or clicked is excluded
    for every policy and worth nothing; the oracle's regret is 0 by definition."""
    import dataclasses

    from simulations.config import load_scenario
    from simulations.ratings import RatingsWorld
    from simulations.runner import run_one

    scenario = load_scenario("movielens")
    scenario = dataclasses.replace(scenario, world=dataclasses.replace(scenario.world, data_dir=str(tiny)),
                                   run=dataclasses.replace(scenario.run, rounds=60))
    world = RatingsWorld(scenario.world, 1, 60)
    ml, history = load_movielens(tiny), split_history(load_movielens(tiny))
    assert len(world.initial_log) == len(history.user) and world.start >= max(t for *_, t in world.initial_log)
    assert {r[2] for r in world.initial_log} == {"click", "view"} and len(world.truth.items) == ml.shape[1]
    rated = sorted(history.seen[4])
    assert world.excluded(4) == rated and not world.click_probability(4, np.array(rated), {}, 0).any()
    results = {spec: run_one(scenario, spec, 1, {}, embedded_redis.url)
               for spec in ("oracle", "popularity", "banditrec")}
    assert results["oracle"].regret.sum() == 0.0
    assert all(r.regret.min() >= -1e-9 for r in results.values())


def test_the_ab_section_scores_each_arm_by_the_truth():
    """With a holdout, each arm's rounds are scored apart and the lift has an interval around it."""
    from types import SimpleNamespace

    arms = ["personalized", "holdout"] * 100
    expected = np.array([1.2 + 0.01 * (n % 3) if a == "personalized" else 1.0 + 0.01 * (n % 3)
                         for n, a in enumerate(arms)])
    ab = realdata_report.ab_test(SimpleNamespace(arm=arms, expected=expected), slice(0, 200))
    assert ab["arms"]["personalized"]["rounds"] == ab["arms"]["holdout"]["rounds"] == 100
    assert ab["lift"] == pytest.approx(expected[0::2].mean() / expected[1::2].mean() - 1)
    assert ab["lift_ci95"][0] < ab["lift"] < ab["lift_ci95"][1] and ab["lift_ci95"][0] > 0.15
    assert realdata_report.ab_test(SimpleNamespace(arm=["personalized"] * 10, expected=np.ones(10)),
                                   slice(0, 10)) is None


def test_quality_replay_runs_every_policy_on_a_tiny_file(tiny):
    """`benchmarks.quality_replay`: each policy in its own loop, scores within a slate's range;
    the same seed gives the same numbers."""
    from benchmarks import quality_replay

    for policy in ("best_static", "events", "events_fixed", "live"):
        last, whole = quality_replay.replay(policy, 200, seed=1, data=str(tiny))
        assert 0.0 < last <= discount(10).sum() and 0.0 < whole <= discount(10).sum()
    assert quality_replay.replay("live", 200, seed=1, data=str(tiny)) == \
        quality_replay.replay("live", 200, seed=1, data=str(tiny))


def test_personal_replay_learns_on_a_tiny_file(tiny):
    """`benchmarks.personal_replay`: refits during the run, scores within a slate's range,
    the same seed gives the same numbers."""
    from benchmarks import personal_replay

    for rank in (0, 3):
        last, whole = personal_replay.replay(200, seed=1, rank=rank, every=50, data=str(tiny))
        assert 0.0 < last <= discount(10).sum() and 0.0 < whole <= discount(10).sum()
    assert personal_replay.replay(200, seed=1, rank=3, every=50, data=str(tiny)) == \
        personal_replay.replay(200, seed=1, rank=3, every=50, data=str(tiny))


def test_placement_benchmark_runs_both_encoders_on_a_tiny_file(tiny, capsys):
    """`benchmarks.placement`: overlaps are shares, the same seeds give the same numbers, and the
    cost rows come from child processes (tiny sizes: nothing here is timed)."""
    from benchmarks import placement

    result = placement.placement(seeds=2, min_ratings=10, data=str(tiny))
    assert set(result) == {"tfidf", "minilm", "random"}
    assert all(0.0 <= x <= 1.0 and len(v) == 2 for by_k in result.values() for v in by_k.values() for x in v)
    assert placement.placement(seeds=2, min_ratings=10, data=str(tiny)) == result
    placement.main(["--seeds", "1", "--min-ratings", "10", "--data", str(tiny), "--build-items", "300",
                    "--model-items", "100"])
    out = capsys.readouterr().out
    assert "| tfidf | 300 |" in out and "| minilm | 100 |" in out and "| random |" in out
