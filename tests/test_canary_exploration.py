"""Canary of an exploration config on a real Redis, through the HTTP API and the CLI: its users
get the candidate strategy with the current model and their decisions are logged under it;
the current model keeps the bootstrap replicas the candidate needs; promoted, it becomes the
live exploration every serving process and the learner switch to, until the config file's
own [exploration] changes or `banditrec config clear-live`; aborted, nothing changes."""

from __future__ import annotations

import pytest
from conftest import url_of
from test_canary import _visit

from app import create_app
from banditrec.cli import main
from banditrec.config import dump_toml, to_dict
from serving.canary import CANARY, CURRENT, experiment_of, in_canary
from serving.experiment import TREATMENT, arm_of
from serving.learn_loop import LearnerProcess
from serving.live import effective, section

USERS = [f"u{i}" for i in range(60)]


def _tools(service, tmp_path, monkeypatch):
    """A test client; a CLI on the same Redis and the same config file; a candidate file that
    says Thompson with 4 replicas."""
    path = tmp_path / "cli.toml"
    path.write_text(dump_toml(to_dict(service.config.replace(redis={"url": "", "prefix": service.store.prefix}))))
    candidate = tmp_path / "candidate.toml"
    candidate.write_text('[exploration]\nstrategy = "thompson"\n[exploration.thompson]\nreplicas = 4\n')
    monkeypatch.setenv("REDIS_URL", url_of(service.store))
    return create_app(deps=service).test_client(), lambda *args: main([*args, "--config", str(path)]), candidate


@pytest.fixture
def deployment(build, open_service, tmp_path, monkeypatch):
    """A service exploring epsilon-greedy by its file; a candidate file that says Thompson
    with 4 replicas; and a CLI on the same Redis and the same config file."""
    config = build(experiment={"holdout_share": 0.2, "salt": "t1"}, canary={"share": 0.5},
                   exploration={"strategy": "epsilon_greedy"})
    service = open_service(config)
    client, cli, candidate = _tools(service, tmp_path, monkeypatch)
    return service, client, cli, candidate


def _logged_strategies(store) -> dict[str, str]:
    return {entry["event_id"]: entry["strategy"] for _, entry in store.read_decision_log()}


def test_its_users_get_the_candidate_strategy_with_the_current_model(deployment, capsys):
    service, client, cli, candidate = deployment
    assert service.strategy.name == "epsilon_greedy" and service.learner.replicas is None
    assert cli("canary", "start", "--exploration", str(candidate)) == 0
    assert "exploration thompson" in capsys.readouterr().out
    record = service.store.canary()
    assert record["kind"] == "exploration" and record["exploration"]["strategy"] == "thompson"
    service.watch_canary()
    assert service.canary.held.strategy.name == "thompson" and len(service.learner.replicas) == 4
    assert service.strategy.name == "epsilon_greedy"  # everyone else: as before
    learned = service.learner.learned
    bodies = _visit(client, USERS, click=lambda body: True)
    in_it = [u for u in USERS if arm_of(u, service.config.experiment) == TREATMENT and in_canary(u, record)]
    assert 5 < len(in_it) < 40 and len(bodies[CANARY]) == len(in_it)
    version = service.learner.version
    assert {b["model_version"] for b in bodies[CANARY] + bodies[TREATMENT]} == {version}  # one model for both
    logged = _logged_strategies(service.store)
    assert {logged[b["event_id"]] for b in bodies[CANARY]} == {"thompson"}
    assert {logged[b["event_id"]] for b in bodies[TREATMENT]} == {"epsilon_greedy"}
    assert service.learner.learned - learned == len(USERS)  # the current model learns every user's rewards
    counts = service.store.arm_counts(experiment_of(record["id"]))
    assert counts[CANARY]["decisions"] == len(in_it) and counts[CURRENT]["decisions"] == len(bodies[TREATMENT])
    assert cli("canary", "status") == 0
    assert "exploration thompson (with the current model)" in capsys.readouterr().out


def test_promoted_it_becomes_the_live_exploration_everywhere_until_the_file_changes(deployment, capsys,
                                                                                   open_service):
    service, client, cli, candidate = deployment
    learner = LearnerProcess(service.config, service.store)  # the separate learner, on the same Redis
    assert cli("canary", "start", "--exploration", str(candidate)) == 0
    record = service.store.canary()
    learner.follow()
    assert learner.strategy.name == "epsilon_greedy" and len(learner.learner.replicas) == 4  # trained for the canary
    service.watch_canary()
    _visit(client, USERS[:20], click=lambda body: True)
    assert cli("canary", "promote") == 0
    assert "is the live exploration" in capsys.readouterr().out
    assert service.store.canary()["status"] == "promoted"
    live = service.store.live_exploration()
    assert live["canary"] == record["id"] and live["base"] == section(service.config.exploration)

    service.watch_canary()  # every serving process, within canary.check_s
    assert service.strategy.name == "thompson" and service.canary.held is None
    assert service.exploring.now.source == f"canary {record['id']}" and len(service.learner.replicas) == 4
    assert client.get("/learning").get_json()["exploration_from"] == f"canary {record['id']}"
    bodies = _visit(client, USERS[:20], click=lambda body: False)
    assert CANARY not in bodies
    logged = _logged_strategies(service.store)
    assert {logged[b["event_id"]] for b in bodies[TREATMENT]} == {"thompson"}
    learner.follow()
    assert learner.strategy.name == "thompson" and len(learner.learner.replicas) == 4
    learner.learner.catch_up()
    version = learner.learner.snapshot(service.config.snapshot.keep)
    assert len(service.store.get_snapshot(version)[1]["replica_blobs"]) == 4
    again = open_service(service.config)  # a process started now serves it from its first request
    assert again.strategy.name == "thompson" and len(again.learner.replicas) == 4

    capsys.readouterr()
    assert cli("config", "show") == 0
    shown = capsys.readouterr().out
    assert f"exploration thompson, promoted from canary {record['id']}" in shown and 'strategy = "thompson"' in shown

    # a file whose [exploration] was edited since: the file wins there
    edited = service.config.replace(exploration={"epsilon_greedy": {"epsilon": 0.2}})
    assert effective(edited.exploration, live).strategy.name == "epsilon_greedy"
    assert effective(service.config.exploration, live).strategy.name == "thompson"

    assert cli("config", "clear-live") == 0
    service.watch_canary()
    assert service.strategy.name == "epsilon_greedy" and service.exploring.now.source == "file"
    assert service.learner.replicas is None  # epsilon-greedy needs none
    assert cli("config", "clear-live") == 0 and "no exploration was promoted" in capsys.readouterr().out
    learner.close()


def test_a_promotion_from_a_cli_with_another_config_applies_over_what_the_servers_run(deployment, tmp_path):
    service, client, cli, candidate = deployment
    other = tmp_path / "other.toml"  # the operator's shell: another [exploration] (the same Redis)
    other.write_text(f'[redis]\nprefix = "{service.store.prefix}"\n[exploration.epsilon_greedy]\nepsilon = 0.3\n')
    assert main(["canary", "start", "--exploration", str(candidate), "--config", str(other)]) == 0
    service.watch_canary()  # a serving process notes what its users get otherwise
    assert service.store.canary()["base"] == section(service.config.exploration)
    assert main(["canary", "promote", "--config", str(other)]) == 0
    assert service.store.live_exploration()["base"] == section(service.config.exploration)
    service.watch_canary()
    assert service.strategy.name == "thompson"


def test_aborted_everyone_keeps_the_current_exploration(deployment, capsys):
    service, client, cli, candidate = deployment
    assert cli("canary", "start", "--exploration", str(candidate)) == 0
    service.watch_canary()
    assert cli("canary", "abort") == 0
    service.watch_canary()
    assert service.canary.held is None and service.strategy.name == "epsilon_greedy"
    assert service.learner.replicas is None and service.store.live_exploration() is None
    bodies = _visit(client, USERS[:20], click=lambda body: False)
    assert CANARY not in bodies


def test_the_automatic_rule_promotes_an_exploration_canary_that_is_not_worse(deployment):
    service, client, cli, candidate = deployment
    service.config = service.config.replace(canary={"auto": True, "min_decisions": 20, "max_loss": 0.5})
    assert cli("canary", "start", "--exploration", str(candidate)) == 0
    service.watch_canary()
    _visit(client, [f"auto{i}" for i in range(400)], click=lambda body: True)
    trained = service.learner.replicas.models  # the replicas that learned during the canary
    service.watch_canary()  # the rule promotes it, and the same watch switches to it
    assert service.store.canary()["status"] == "promoted" and service.store.live_exploration() is not None
    assert service.strategy.name == "thompson" and service.learner.replicas.models == trained  # kept, not remade


def test_a_strategy_is_served_only_once_its_replicas_are_there(deployment, monkeypatch):
    service, client, cli, candidate = deployment
    seen = []  # at every change of the replicas: their count before, and what was served then
    resize = service.learner.resize_replicas

    def watched(n, args, **kw):
        held = service.canary.held
        seen.append((len(service.learner.replicas or ()), service.strategy.name,
                     held.strategy.name if held is not None else None))
        return resize(n, args, **kw)

    monkeypatch.setattr(service.learner, "resize_replicas", watched)
    assert cli("canary", "start", "--exploration", str(candidate)) == 0
    service.watch_canary()
    assert seen[0] == (0, "epsilon_greedy", None)  # grown before the canary's Thompson was served
    assert cli("canary", "promote") == 0
    service.watch_canary()
    assert service.strategy.name == "thompson" and len(service.learner.replicas) == 4
    assert all(count == 4 for count, strategy, held in seen if "thompson" in (strategy, held))


def test_a_snapshot_adopted_during_the_canary_keeps_the_replicas_it_needs(deployment):
    service, client, cli, candidate = deployment
    assert cli("canary", "start", "--exploration", str(candidate)) == 0
    service.watch_canary()
    blob = service.learner.model.to_bytes()
    service.store.put_snapshot(blob, {"cursor": service.learner.cursor, "t": service.learner.total}, 5)  # none
    assert service.adopt_newer_model() and len(service.learner.replicas) == 4


def test_an_abort_after_a_promotion_that_failed_halfway_takes_it_out_of_the_live_exploration(deployment):
    service, client, cli, candidate = deployment
    assert cli("canary", "start", "--exploration", str(candidate)) == 0
    record = service.store.canary()
    # a promotion wrote the live exploration, then Redis went away before the record was ended
    service.store.set_live_exploration({"exploration": record["exploration"], "canary": record["id"], "at": 0.0,
                                        "base": section(service.config.exploration)})
    assert service.store.end_canary(record["id"], "promote_failed", "by hand", from_statuses=("running",))
    assert cli("canary", "abort") == 0
    assert service.store.live_exploration() is None
    service.watch_canary()
    assert service.strategy.name == "epsilon_greedy"


def test_a_promotion_applies_over_the_same_settings_written_another_way():
    from banditrec.config import exploration_from_dict

    base = {"strategy": "epsilon_greedy", "epsilon_greedy": {"epsilon": 0}}  # an int in one file ...
    live = {"exploration": {"strategy": "thompson"}, "base": base, "canary": "c1"}
    same = exploration_from_dict({"strategy": "epsilon_greedy", "epsilon_greedy": {"epsilon": 0.0}})  # ... a float
    assert effective(same, live).source == "canary c1"
    other = exploration_from_dict({"strategy": "epsilon_greedy", "epsilon_greedy": {"epsilon": 0.1}})
    assert effective(other, live).source == "file"
    unrelated = exploration_from_dict({"strategy": "epsilon_greedy", "epsilon_greedy": {"epsilon": 0},
                                       "thompson": {"replicas": 16}})  # another strategy's settings
    assert effective(unrelated, live).source == "canary c1"


@pytest.mark.parametrize("args, message", [
    (("3", "--exploration", "{candidate}"), "not both"),
    (("--exploration", "{missing}"), "does not exist"),
    (("--exploration", "{empty}"), "has no [exploration] section"),
    (("--exploration", "{unknown}"), "exploration.strategy"),
    (("--exploration", "{same}"), "what every user gets already"),
])
def test_start_refuses_what_it_cannot_try(deployment, capsys, tmp_path, args, message):
    service, client, cli, candidate = deployment
    files = {"candidate": candidate, "missing": tmp_path / "missing.toml", "empty": tmp_path / "empty.toml",
             "unknown": tmp_path / "unknown.toml", "same": tmp_path / "same.toml"}
    files["empty"].write_text('[canary]\nshare = 0.1\n')
    files["unknown"].write_text('[exploration]\nstrategy = "softmax"\n')
    files["same"].write_text('[exploration]\nstrategy = "epsilon_greedy"\n')
    assert cli("canary", "start", *(a.format(**files) for a in args)) == 2
    assert message in capsys.readouterr().err
    assert service.store.canary() is None


def test_the_gate_judges_the_exploration_with_the_newest_model_that_did_not_learn_enough_of_the_log(
        build, open_service, tmp_path, monkeypatch, capsys):
    import time

    import evaluation.replay

    config = build(feedback={"reward_wait_s": 1.0, "close_delay_s": 0.0}, exploration={"strategy": "epsilon_greedy"})
    service = open_service(config)
    client, cli, candidate = _tools(service, tmp_path, monkeypatch)
    first = service.learner.snapshot(config.snapshot.keep)
    assert cli("canary", "start", "--exploration", str(candidate), "--gate") == 2
    assert "no model snapshot has 100 settled decisions" in capsys.readouterr().out
    _visit(client, [f"g{i}" for i in range(150)], click=lambda body: sum(map(ord, body["event_id"])) % 4 == 0)
    service.learner.snapshot(config.snapshot.keep)  # a newer model, with nothing logged after it
    time.sleep(1.5)  # every decision settled (its reward wait is 1 s)
    seen = []
    with monkeypatch.context() as patched:  # the verdict is evaluation.replay.gate's (tested on its own)
        patched.setattr(evaluation.replay, "gate", lambda estimates: seen.append(estimates) or (False, "it is worse"))
        assert cli("canary", "start", "--exploration", str(candidate), "--gate") == 2
    out = capsys.readouterr().out
    assert f"model v{first} with the candidate exploration" in out and "150 logged decisions" in out
    assert "it is worse" in out and service.store.canary() is None
    assert set(seen[0]) >= {"candidate", "logged"}
    with monkeypatch.context() as patched:
        patched.setattr(evaluation.replay, "gate", lambda estimates: (True, "not worse"))
        assert cli("canary", "start", "--exploration", str(candidate), "--gate") == 0
    assert service.store.canary()["kind"] == "exploration"


def test_a_process_says_it_serves_a_promoted_exploration_only_once_it_does(deployment, monkeypatch):
    """While a worker grows the replicas a promoted strategy needs (a slow step), /learning
    answers the old exploration whole: never the canary as the source with the old strategy."""
    service, client, cli, candidate = deployment
    assert cli("canary", "start", "--exploration", str(candidate)) == 0
    service.watch_canary()
    assert cli("canary", "promote") == 0
    answered, grow = [], service._grow_replicas

    def growing(n):
        body = client.get("/learning").get_json()
        answered.append((body["strategy"], body["exploration_from"]))
        grow(n)

    monkeypatch.setattr(service, "_grow_replicas", growing)
    service.watch_canary()
    record_id = service.store.live_exploration()["canary"]
    assert answered and all(pair == ("epsilon_greedy", "file") for pair in answered), answered
    body = client.get("/learning").get_json()
    assert (body["strategy"], body["exploration_from"]) == ("thompson", f"canary {record_id}")
    assert service.strategy.name == "thompson"
