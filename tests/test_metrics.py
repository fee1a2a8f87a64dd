"""GET /metrics: Prometheus text with the request path's stages, decisions by arm, shares,
rewards, Redis errors and learning gauges; and summed over gunicorn workers."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from app import create_app


def _samples(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.get_data(as_text=True)) for s in family.samples}


def _value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_what_was_served(build, open_service):
    service = open_service(build(experiment={"holdout_share": 0.3}))
    client = create_app(deps=service).test_client()
    before = _samples(client)
    bodies = [client.post("/recommend", json={"user_id": f"u{i}", "k": 5}).get_json() for i in range(20)]
    for body in bodies[:5]:
        client.post("/feedback", json={"event_id": body["event_id"], "item_id": body["items"][0]["item_id"],
                                       "reward": 1})
    client.post("/events", json={"user_id": "u1", "item_id": "i1", "type": "click"})
    after = _samples(client)

    def delta(name, **labels):
        return _value(after, name, **labels) - _value(before, name, **labels)

    for arm in ("personalized", "holdout"):
        served = [b for b in bodies if b["arm"] == arm]
        assert sum(delta("banditrec_decisions_total", strategy=s, arm=arm) for s in
                   ("personalized", "cold_start", "popularity", "pregenerated")) == len(served)
        assert delta("banditrec_impressions_total", arm=arm) == sum(len(b["items"]) for b in served)
        assert delta("banditrec_explored_impressions_total", arm=arm) == sum(i["explored"] for b in served
                                                                           for i in b["items"])
    assert delta("banditrec_rewards_total", outcome="accepted") == 5
    assert delta("banditrec_events_total", type="click") == 1
    for stage in ("parse", "user_state", "retrieval", "vw_score", "slate", "decision_log", "serialise"):
        assert delta("banditrec_recommend_stage_seconds_count", stage=stage) == 20, stage
    assert delta("banditrec_request_seconds_count", route="POST /recommend", status="2xx") == 20
    for gauge in ("banditrec_learn_lag_seconds", "banditrec_reward_backlog", "banditrec_model_version"):
        assert (gauge, ()) in after, f"{gauge} missing"  # (the collector leaves gauges out when Redis fails)
    assert _value(after, "banditrec_learn_lag_seconds") == 0.0 and _value(after, "banditrec_reward_backlog") == 0
