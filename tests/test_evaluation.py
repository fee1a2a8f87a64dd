"""The decision log, its DSJson export (read by VW's own parser), and `banditrec evaluate`."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import vowpalwabbit  # VW's own DSJson parser checks the export; the service only uses bandit/vw.py

from app import create_app
from banditrec.cli import main
from banditrec.config import dump_toml, to_dict
from evaluation.estimators import EvaluationError
from evaluation.log import _namespaces, from_store, read_dsjson, to_dsjson, write_dsjson
from evaluation.replay import POLICIES, estimate, replay

DEVICES = ("mobile", "desktop", "tablet")


@pytest.fixture
def traffic(build, open_service, small_world):
    """400 decisions through the app, every shown item rewarded by the hidden click model."""
    config = build()
    service = open_service(config)
    client = create_app(deps=service).test_client()
    rng = np.random.default_rng(8)
    for r in range(400):
        user = int(rng.integers(len(small_world.users)))
        context = {"device": DEVICES[int(rng.integers(3))]}
        body = client.post("/recommend", json={"user_id": f"u{user}", "k": 3, "context": context,
                                               "event_id": f"ev-{r}"}).get_json()
        for item in body["items"]:
            p = small_world.click_probability(user, [int(item["item_id"][1:])], context)[0]
            client.post("/feedback", json={"event_id": body["event_id"], "item_id": item["item_id"],
                                           "reward": float(rng.random() < p)})
    return config, service


def _settled(service):
    return from_store(service.store, service.catalog, default_reward=0.0, settled_after_s=60, now=time.time() + 3600)


def test_the_decision_log_joins_first_positions_with_their_rewards(traffic):
    config, service = traffic
    decisions = _settled(service)
    assert len(decisions) == 400
    rewards = {e["event_id"]: e["reward"] for _, e in service.store.read_rewards(count=100_000) if e["position"] == 1}
    for d in decisions:
        assert abs(d.probs.sum() - 1.0) < 1e-6 or len(d.probs) == config.log.max_candidates
        assert 0 < d.logged_p <= 1 and d.reward == rewards[d.event_id]
        assert d.actions[d.chosen].startswith("|Item ")
    assert sum(d.reward for d in decisions) > 0


def test_dsjson_export_is_read_by_vw_and_round_trips(traffic, tmp_path):
    _, service = traffic
    decisions = _settled(service)
    path = tmp_path / "log.dsjson"
    assert write_dsjson(decisions, path) == 400
    vw = vowpalwabbit.Workspace("--dsjson --cb_explore_adf --chain_hash --quiet")
    for line in path.read_text().splitlines():
        examples = vw.parse(line)
        assert len(examples) == 1 + len(json.loads(line)["c"]["_multi"])
        vw.learn(examples)
        vw.finish_example(examples)
    assert vw.get_weighted_examples() == 400
    vw.finish()
    back = list(read_dsjson(path))
    for a, b in zip(decisions, back):
        assert (a.event_id, a.chosen, a.reward, a.item_ids) == (b.event_id, b.chosen, b.reward, b.item_ids)
        np.testing.assert_allclose(a.probs, b.probs)
        assert [_namespaces(x) for x in a.actions] == [_namespaces(x) for x in b.actions]  # same features and values
        assert _namespaces(a.shared) == _namespaces(b.shared)
    doc = json.loads(to_dsjson(decisions[0]))
    assert doc["_label_cost"] == -decisions[0].reward and doc["a"][0] == doc["_label_Action"]
    assert doc["p"][0] == doc["_label_probability"] and doc["EventId"] == decisions[0].event_id


def test_replay_scores_every_policy(traffic):
    config, service = traffic
    decisions = _settled(service)
    estimates = estimate(replay(decisions, config))
    assert set(estimates) == set(POLICIES)
    mean = np.mean([d.reward for d in decisions])
    assert estimates["logged"]["ips"].value == pytest.approx(mean) and estimates["logged"]["snips"].ess == 400
    for policy, by_method in estimates.items():
        for est in by_method.values():
            assert est.low <= est.value <= est.high and est.n == 400, (policy, est)
    assert estimates["uniform"]["snips"].ess < 400  # a policy unlike the logged one has fewer effective samples


def test_evaluate_and_export_commands(traffic, tmp_path, monkeypatch, redis_url, capsys):
    config, service = traffic
    path = tmp_path / "log.dsjson"
    write_dsjson(_settled(service), path)
    candidate = tmp_path / "candidate.toml"
    candidate.write_text('[exploration]\nstrategy = "epsilon_greedy"\n[model]\nlearning_rate = 0.3\n')
    out = tmp_path / "eval"
    assert main(["evaluate", "--log", str(path), "--candidate", str(candidate), "--importance", "--out", str(out)]) == 0
    text = (out / "evaluation.md").read_text()
    assert "| candidate |" in text and "| uniform |" in text and "feature importance" in text and "| User |" in text
    assert (out / "evaluation.png").read_bytes()[:4] == b"\x89PNG"
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("BANDITREC_REDIS_PREFIX", service.store.prefix)
    monkeypatch.setenv("BANDITREC_DATA_DIR", str(config.data.path))
    exported = tmp_path / "fresh.dsjson"
    settings = tmp_path / "config.toml"
    settings.write_text(dump_toml(to_dict(config)))  # the same embedding size as the built index
    assert main(["export", "--config", str(settings), "--format", "dsjson", "--out", str(exported)]) == 0
    assert exported.read_text() == ""  # nothing is settled yet: the wait (3600 s here) is not over


def test_bad_logs_are_clear_errors(tmp_path):
    with pytest.raises(EvaluationError, match="the log is empty"):
        replay([], None)
    bad = tmp_path / "bad.dsjson"
    bad.write_text('{"c": {"_multi": []}, "a": [1], "p": [1.0]}\n')
    with pytest.raises(EvaluationError, match=r"bad.dsjson:1: not a DSJson decision \("):
        list(read_dsjson(bad))
