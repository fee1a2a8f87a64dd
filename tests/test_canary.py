"""Canary rollout of a model snapshot on a real Redis, through the HTTP API and the CLI: who
gets the canary, what is counted, promote, abort, the automatic rule, and canaries beside
rollbacks and snapshot pruning."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import url_of

from app import create_app
from banditrec.cli import main
from banditrec.config import CanaryConfig, dump_toml, to_dict
from serving.canary import CANARY, CURRENT, experiment_of, in_canary, verdict
from serving.experiment import HOLDOUT, TREATMENT, arm_of, arm_summary
from store.canary import PROMOTING, PROMOTING_STALE_S

USERS = [f"u{i}" for i in range(60)]


def test_canary_assignment_is_deterministic_close_to_the_share_and_new_for_each_canary():
    first, second = {"id": "a1", "share": 0.2}, {"id": "b2", "share": 0.2}
    users = [f"u{i}" for i in range(20_000)]
    drawn = [in_canary(u, first) for u in users]
    assert drawn == [in_canary(u, first) for u in users]
    assert 0.19 < np.mean(drawn) < 0.21
    # another canary draws anew: both draws agree with probability 0.8^2 + 0.2^2 = 0.68
    assert 0.66 < np.mean([a == in_canary(u, second) for a, u in zip(drawn, users)]) < 0.70


def _arms(canary: tuple[int, int, int], current: tuple[int, int, int]) -> dict:
    return {arm: arm_summary(dict(zip(("decisions", "impressions", "clicks"), counts)))
            for arm, counts in ((CANARY, canary), (CURRENT, current))}


def test_the_rule_waits_for_decisions_and_for_confidence():
    cfg = CanaryConfig(min_decisions=100, max_loss=0.3)
    assert verdict(_arms((99, 396, 99), (500, 2000, 500)), cfg) == "wait"  # too few canary decisions
    assert verdict(_arms((100, 400, 100), (100, 400, 100)), cfg) == "promote"  # equal, interval within -30 %
    assert verdict(_arms((100, 400, 100), (100, 400, 100)), CanaryConfig(min_decisions=100)) == "wait"  # 2 %: unsure
    assert verdict(_arms((100, 400, 30), (100, 400, 100)), cfg) == "abort"  # worse with confidence
    assert verdict(_arms((100, 400, 0), (100, 400, 100)), cfg) == "abort"  # no clicks at all: still judged


@pytest.fixture
def deployment(build, open_service, tmp_path, monkeypatch):
    """A service with two model snapshots: v_old (what the build started from) and the current
    one, which has learned rewards since; and a CLI pointed at the same Redis."""
    config = build(experiment={"holdout_share": 0.2, "salt": "t1"}, canary={"share": 0.5, "min_decisions": 20})
    service = open_service(config)
    client = create_app(deps=service).test_client()
    old = service.learner.snapshot(config.snapshot.keep)
    for user in USERS[:20]:  # learn something, so that the two models differ
        body = client.post("/recommend", json={"user_id": user, "k": 4}).get_json()
        client.post("/feedback", json={"event_id": body["event_id"], "item_id": body["items"][-1]["item_id"],
                                       "reward": 1})
    current = service.learner.snapshot(config.snapshot.keep)
    assert current > old
    path = tmp_path / "cli.toml"
    path.write_text(f'[redis]\nprefix = "{service.store.prefix}"\n[data]\ndir = "{tmp_path / "data"}"\n'
                    f'[canary]\nshare = 0.5\n')
    monkeypatch.setenv("REDIS_URL", url_of(service.store))
    cli = lambda *args: main([*args, "--config", str(path)])  # noqa: E731
    return service, client, cli, old, current




def _visit(client, users, click) -> dict[str, list[dict]]:
    """One /recommend per user, and a click on its first item when `click(body)`; bodies by arm."""
    out: dict[str, list[dict]] = {}
    for user in users:
        body = client.post("/recommend", json={"user_id": user, "k": 4}).get_json()
        out.setdefault(body["arm"], []).append(body)
        if click(body):
            response = client.post("/feedback", json={"event_id": body["event_id"],
                                                      "item_id": body["items"][0]["item_id"], "reward": 1})
            assert response.status_code == 200
    return out


def test_canary_users_get_the_canary_model_and_both_arms_are_counted(deployment, capsys):
    service, client, cli, old, current = deployment
    assert client.get("/experiments").get_json()["canary"] is None
    assert cli("canary", "start", str(old), "--share", "0.6") == 2  # at most half of the users
    assert cli("canary", "start", str(old), "--share", "0.5") == 0
    record = service.store.canary()
    assert record["version"] == old and record["share"] == 0.5 and "canary" in capsys.readouterr().out
    service.watch_canary()
    learned = service.learner.learned
    bodies = _visit(client, USERS, click=lambda body: True)
    in_it = [u for u in USERS if arm_of(u, service.config.experiment) == TREATMENT and in_canary(u, record)]
    assert 5 < len(in_it) < 40  # (60 users, 80 % of them to the bandit, half of those to the canary)
    assert [b["model_version"] for b in bodies[CANARY]] == [old] * len(in_it)
    assert {b["model_version"] for b in bodies[TREATMENT]} == {current}
    assert all(b["strategy"] == "popularity" for b in bodies.get(HOLDOUT, []))  # the holdout is never a canary's
    assert service.learner.learned - learned == len(USERS)  # canary rewards are learned by the current model too
    report = client.get("/experiments").get_json()
    canary = report["canary"]
    assert canary["id"] == record["id"] and canary["status"] == "running" and canary["verdict"] in ("wait", "promote")
    assert canary["arms"][CANARY]["decisions"] == canary["arms"][CANARY]["clicks"] == len(in_it)
    assert canary["arms"][CURRENT]["decisions"] == len(bodies[TREATMENT])
    assert canary["arms"][CANARY]["impressions"] == 4 * len(in_it)
    assert report["arms"][TREATMENT]["decisions"] >= len(in_it) + len(bodies[TREATMENT])  # still the A/B's treatment
    assert cli("canary", "status") == 0
    assert f"model v{old}" in capsys.readouterr().out
    assert cli("canary", "start", str(current)) == 2  # one canary at a time
    assert "is running" in capsys.readouterr().err


def test_promote_makes_the_canary_model_current_for_everyone(deployment, capsys):
    service, client, cli, old, current = deployment
    assert cli("canary", "start", str(old)) == 0
    service.watch_canary()
    assert cli("canary", "promote") == 0
    promoted = service.store.latest_version()
    assert promoted > current and f"v{promoted} = v{old}" in capsys.readouterr().out
    assert service.store.get_snapshot(promoted)[0] == service.store.get_snapshot(old)[0]  # the canary's model
    assert service.adopt_newer_model() and service.learner.version == promoted
    service.watch_canary()
    assert service.canary.held is None
    bodies = _visit(client, USERS[:20], click=lambda body: False)
    assert CANARY not in bodies and {b["model_version"] for b in bodies[TREATMENT]} == {promoted}
    assert cli("model", "list") == 0
    assert f"canary of v{old}" in capsys.readouterr().out
    record = service.store.canary()
    assert record["status"] == "promoted" and record["promoted_as"] == promoted
    assert service.store.canary_model(record) is None  # its copy is dropped
    assert cli("canary", "promote") == 2 and cli("canary", "abort") == 2  # nothing running


def test_abort_sends_everyone_back_to_the_current_model(deployment, capsys):
    service, client, cli, old, current = deployment
    assert cli("canary", "start", str(old)) == 0
    service.watch_canary()
    assert service.canary.held is not None
    assert cli("canary", "abort") == 0
    service.watch_canary()
    assert service.canary.held is None and service.store.latest_version() == current
    bodies = _visit(client, USERS[:20], click=lambda body: False)
    assert CANARY not in bodies and {b["model_version"] for b in bodies[TREATMENT]} == {current}
    assert client.get("/experiments").get_json()["canary"]["status"] == "aborted"


@pytest.mark.parametrize("action, ends", [("promote", "promoted"), ("abort", "aborted")])
def test_a_promotion_whose_process_died_is_taken_over_only_once_it_is_stale(deployment, capsys, action, ends):
    service, client, cli, old, current = deployment
    assert cli("canary", "start", str(old)) == 0
    record = service.store.canary()
    # a process marked it promoting and died before it wrote the snapshot
    assert service.store.end_canary(record["id"], PROMOTING, "by hand")
    capsys.readouterr()
    assert cli("canary", action) == 2  # under way, as far as anyone can tell: left to finish
    assert "is being promoted" in capsys.readouterr().err
    assert service.store.canary()["status"] == PROMOTING and service.store.latest_version() == current
    service.store.client.hset(service.store._ckey(), "ended_at", repr(time.time() - PROMOTING_STALE_S - 1))
    assert cli("canary", action) == 0
    record = service.store.canary()
    assert record["status"] == ends and service.store.canary_model(record) is None
    assert service.store.latest_version() == (current + 1 if ends == "promoted" else current)
    assert cli("canary", action) == 2  # ended once


@pytest.mark.parametrize("canary_clicks, ends", [(False, "aborted"), (True, "promoted")])
def test_the_automatic_rule_aborts_a_worse_canary_and_promotes_one_that_is_not(deployment, canary_clicks, ends):
    service, client, cli, old, current = deployment
    service.config = service.config.replace(canary={"auto": True, "min_decisions": 20, "max_loss": 0.5})
    assert cli("canary", "start", str(old)) == 0
    service.watch_canary()
    users = [f"auto{i}" for i in range(400)]
    _visit(client, users, click=lambda body: body["arm"] != CANARY or canary_clicks)
    counts = service.store.arm_counts(experiment_of(service.store.canary()["id"]))
    assert min(counts[CANARY]["decisions"], counts[CURRENT]["decisions"]) >= 20
    service.watch_canary()  # every worker's watch applies the rule; one of them ends the canary
    record = service.store.canary()
    assert record["status"] == ends and record["reason"].startswith("automatic")
    assert service.canary.held is None
    assert (service.store.latest_version() > current) == (ends == "promoted")
    service.watch_canary()  # ended once: nothing more happens
    assert service.store.canary()["ended_at"] == record["ended_at"]


def test_rollbacks_and_pruning_leave_a_running_canary_alone_and_the_canary_buries_no_rollback(deployment, capsys,
                                                                                             open_service):
    service, client, cli, old, current = deployment
    keep = service.config.snapshot.keep
    assert cli("canary", "start", str(old)) == 0
    blob, meta = service.store.get_snapshot(current)
    for _ in range(keep + 1):  # so many snapshots follow that v_old is pruned
        service.store.put_snapshot(blob, {"cursor": meta["cursor"], "t": meta.get("t", 0)}, keep,
                                   meta["replica_blobs"])
    assert service.store.get_snapshot(old) is None
    target = service.store.latest_version() - 1
    assert cli("model", "rollback", str(target)) == 0  # and the current model is rolled back meanwhile
    rollback = service.store.latest_version()
    again = open_service(service.config)  # a worker started now serves both
    again.watch_canary()
    assert again.learner.version == rollback
    assert again.canary.held is not None and again.canary.held.learner.version == old
    bodies = _visit(create_app(deps=again).test_client(), USERS, click=lambda body: False)
    assert {b["model_version"] for b in bodies[CANARY]} == {old}
    assert {b["model_version"] for b in bodies[TREATMENT]} == {rollback}
    learned = _visit(client, USERS[:10], click=lambda body: True)  # the first service learns on ...
    assert learned and service.learner.since_snapshot > 0
    assert cli("canary", "promote") == 0
    promoted = service.store.latest_version()
    assert service.learner.snapshot(keep) != promoted and service.store.latest_version() == promoted  # ... not over it
    versions = {m["version"]: m for m in service.store.list_snapshots()}
    assert versions[promoted]["origin"] == "canary" and versions[promoted]["from_version"] == old
    assert versions[rollback]["origin"] == "rollback" and versions[rollback]["from_version"] == target
    assert service.adopt_newer_model() and service.learner.version == promoted
    capsys.readouterr()
    assert cli("model", "list") == 0
    listed = capsys.readouterr().out
    assert f"canary of v{old}" in listed and f"rollback of v{target}" in listed


def test_the_gate_compares_the_candidate_with_the_logged_policy():
    from evaluation.estimators import Estimate
    from evaluation.replay import gate

    def estimates(candidate: tuple[float, float, float], logged: float) -> dict:
        value, low, high = candidate
        return {"candidate": {"dr": Estimate("dr", value, low, high, 100.0, 500)},
                "logged": {"dr": Estimate("dr", logged, logged - 0.01, logged + 0.01, 500.0, 500)}}

    assert gate(estimates((0.10, 0.05, 0.15), 0.12))[0]  # unsure: it may start
    passed, text = gate(estimates((0.05, 0.02, 0.08), 0.12))
    assert not passed and "worse than the logged policy's 0.1200" in text
    assert gate(estimates((0.20, 0.15, 0.25), 0.12))[0]


def test_start_with_the_gate_replays_the_snapshot_on_the_decisions_logged_since(build, open_service, tmp_path,
                                                                               monkeypatch, capsys):
    import time

    import evaluation.replay

    config = build(feedback={"reward_wait_s": 1.0, "close_delay_s": 0.0})
    service = open_service(config)
    client = create_app(deps=service).test_client()
    version = service.learner.snapshot(config.snapshot.keep)
    path = tmp_path / "cli.toml"
    path.write_text(dump_toml(to_dict(config.replace(redis={"url": "", "prefix": service.store.prefix}))))
    monkeypatch.setenv("REDIS_URL", url_of(service.store))
    cli = lambda *args: main([*args, "--config", str(path)])  # noqa: E731
    assert cli("canary", "start", str(version), "--gate") == 2  # nothing logged since it was written
    assert "only 0 settled decisions" in capsys.readouterr().out and service.store.canary() is None
    liked = lambda body: sum(map(ord, body["items"][0]["item_id"])) % 3 == 0  # noqa: E731 (a taste of items)
    _visit(client, [f"g{i}" for i in range(150)], click=liked)
    time.sleep(1.5)  # every decision settled (its reward wait is 1 s)
    with monkeypatch.context() as patched:  # a verdict against it: not started
        patched.setattr(evaluation.replay, "gate", lambda estimates: (False, "it is worse"))
        assert cli("canary", "start", str(version), "--gate") == 2
        assert "it is worse" in capsys.readouterr().out and service.store.canary() is None
    assert cli("canary", "start", str(version), "--gate") == 0  # the model that logged them: not worse
    out = capsys.readouterr().out
    assert "150 logged decisions" in out and "not worse than the logged policy" in out
    assert service.store.canary()["version"] == version


def test_a_start_cut_short_leaves_nothing_behind_after_the_next_start(store):
    from bandit.vw import VWModel

    model = VWModel("--cb_adf --quiet")
    version = store.put_snapshot(model.to_bytes(), {"cursor": "0-0", "t": 0}, keep=5)
    model.close()
    orphan = store._ckey("dead1", "p0")  # a start that died after copying its model, before its record
    store.client.hset(store._ckey("models"), "dead1", 1)
    store.client.set(orphan, b"x")
    first = store.start_canary(version, 0.1)
    assert not store.client.exists(orphan) and store.client.hkeys(store._ckey("models")) == [first["id"].encode()]
    with pytest.raises(Exception, match="is running"):
        store.start_canary(version, 0.1)
    assert store.client.hkeys(store._ckey("models")) == [first["id"].encode()]  # the refused one's copy is gone
    assert store.canary_model(first)[1]["version"] == version


def test_a_canary_started_by_the_release_before_zstd_still_serves_its_model(store):
    import zlib

    version = store.put_snapshot(b"model" * 100, {"cursor": "1-0"}, keep=3, replicas=[b"r0" * 100])
    record = store.start_canary(version, 0.1)
    assert record["codec"] == "zstd" and store.canary_model(record)[0] == b"model" * 100
    for i, part in enumerate((b"old-model" * 100, b"old-r0" * 100)):  # as that release copied them
        store.client.set(store._ckey(record["id"], f"p{i}"), zlib.compress(part, 1))
    store.client.hdel(store._ckey(), "codec")
    old = store.canary()
    blob, meta = store.canary_model(old)
    assert old["codec"] == "zlib" and blob == b"old-model" * 100 and meta["replica_blobs"] == [b"old-r0" * 100]
