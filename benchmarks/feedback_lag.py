"""Feedback: how fast the learner learns, and how long a reward waits between its 200 and "learned".

    .venv/bin/python -m benchmarks.feedback_lag --items 100000 --users 10000

Runs the service with 2 workers and the separate learner process (`feedback.aggregation =
"earliest"`, so a client's reward is learnable at once; under "max", the default, rewards
are learned together when the decision's wait ends, by design). Then:

- lag: POST /feedback at a steady rate for real decisions; the learner's progress (its
  cursor in the reward stream, which it records in Redis) is polled every few ms; a
  reward's lag is from its 200 to the first poll at which the cursor has passed it;
- throughput: a backlog of reward entries (copies of real ones under new event ids) is
  appended at once; rewards learned per second is the backlog over the time the learner
  takes to pass it.
Per strategy: Thompson's bootstrap replicas learn every reward too (about B more updates).
"""

from __future__ import annotations

import http.client
import json
import threading
import time

from benchmarks.harness import Bench, bench_for, parser_for, percentiles, user_ids
from benchmarks.http_load import Server
from serving.config import FeedbackConfig
from store import StoreError

SNAPSHOT_S = 5.0  # snapshot.interval_s of the measured service


def _post(conn, path, body):
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = json.loads(resp.read())
    if resp.status != 200:
        raise RuntimeError(f"{path} answered {resp.status}: {data}")
    return data


class ProgressWatch(threading.Thread):
    """Polls the learner's progress: a list of (time, cursor as (ms, seq))."""

    def __init__(self, store, every_s: float = 0.003):
        super().__init__(daemon=True)
        self.store, self.every_s, self.samples, self.stop = store, every_s, [], threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                progress = self.store.learner_progress()
            except StoreError:  # Redis stalled (it does while it stores a large snapshot): poll again
                progress = None
            if progress:
                self.samples.append((time.time(), _sid(progress["cursor"])))
            time.sleep(self.every_s)

    def passed(self, sid: tuple[int, int], after: float) -> float | None:
        """The first sample time >= `after` at which the cursor had reached `sid`."""
        for t, cursor in self.samples:
            if t >= after and cursor >= sid:
                return t
        return None


class HealthWatch(threading.Thread):
    """Asks /health on new connections (so every worker answers some): (time, pid, model version)."""

    def __init__(self, port: int, every_s: float = 0.02):
        super().__init__(daemon=True)
        self.port, self.every_s, self.samples, self.stop = port, every_s, [], threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/health")
                health = json.loads(conn.getresponse().read())
                conn.close()
                self.samples.append((time.time(), health["pid"], health["model_version"]))
            except (OSError, ValueError, KeyError, http.client.HTTPException):
                pass
            time.sleep(self.every_s)

    def served_at(self, version: int, after: float) -> float | None:
        """When every worker had answered with `version` or newer (after `after`)."""
        firsts = {}
        for t, pid, v in self.samples:
            firsts.setdefault(pid, None)
            if t >= after and v >= version and firsts[pid] is None:
                firsts[pid] = t
        return None if not firsts or None in firsts.values() else max(firsts.values())


def _sid(text: str) -> tuple[int, int]:
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def measure(bench: Bench, strategy: str, n_rewards: int, rate: float, backlog: int) -> dict:
    shipped = {"reward_wait_s": FeedbackConfig.reward_wait_s, "close_delay_s": FeedbackConfig.close_delay_s}
    server = Server(bench, workers=2, log_name=f"serve-feedback-{strategy}", exploration={"strategy": strategy},
                    feedback={"aggregation": "earliest", **shipped},  # its rewards come up to ~30 s after the slates
                    inactive={"after_s": 0.0}, snapshot={"interval_s": SNAPSHOT_S})
    store = bench.store()
    watch, health = ProgressWatch(store), HealthWatch(server.port)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        slates = [_post(conn, "/recommend", {"user_id": u, "k": 5}) for u in user_ids(bench, n_rewards, seed=3)]
        degraded = sum(s["strategy"] == "degraded" for s in slates)  # not logged: feedback for them gets 404
        slates = [s for s in slates if s["strategy"] != "degraded" and s["items"]]
        watch.start()
        health.start()
        sent = []  # (event_id, item_id, time of the 200)
        start = time.perf_counter()
        for n, slate in enumerate(slates):
            due = start + n / rate
            while time.perf_counter() < due:
                time.sleep(max(0.0, due - time.perf_counter()))
            item = slate["items"][0]["item_id"]
            _post(conn, "/feedback", {"event_id": slate["event_id"], "item_id": item, "reward": 1.0})
            sent.append((slate["event_id"], item, time.time()))
        conn.close()
        time.sleep(SNAPSHOT_S + 7.0)  # the last snapshot, and every worker's model-watch (5 s +/- 20 %) adopting it
        health.stop.set()
        sids = {}
        for sid, entry in store.iter_rewards():
            sids[(entry["event_id"], entry["item_id"])] = _sid(sid)
        snapshots = sorted((m["version"], _sid(m["cursor"])) for m in store.list_snapshots())
        lags, served = [], []
        for event_id, item, acked in sent:
            sid = sids[(event_id, item)]
            learned = watch.passed(sid, acked - 0.5)
            lags.append(float("inf") if learned is None else max(0.0, (learned - acked) * 1000.0))
            version = next((v for v, cursor in snapshots if cursor >= sid), None)
            at = health.served_at(version, acked - 0.5) if version is not None else None
            served.append(float("inf") if at is None else max(0.0, (at - acked) * 1000.0))

        # throughput: a backlog appended at once
        template = [e for _, e in store.iter_rewards() if e.get("kind") == "reward"][-200:]
        entries = [{**template[i % len(template)], "event_id": f"backlog-{strategy}-{i}"} for i in range(backlog)]
        head_before = store.reward_head()
        store.append_rewards(entries, bench.config.feedback.stream_maxlen)
        t0 = time.time()  # (the learner may start before the append returns: learned/s errs low, not high)
        last = _sid(store.reward_head())
        first_sid = None
        for sid, _ in store.read_rewards(head_before, 1):
            first_sid = _sid(sid)
        deadline = time.monotonic() + 600
        done_at = None
        while time.monotonic() < deadline:
            done_at = watch.passed(last, t0)
            if done_at is not None:
                break
            time.sleep(0.05)
        started = watch.passed(first_sid, t0) if first_sid else None
        per_s = backlog / (done_at - t0) if done_at else 0.0
        return {"lag_ms": dict(zip(("p50", "p99"), percentiles(lags))),
                "served_ms": dict(zip(("p50", "p99"), percentiles(served))), "rewards": len(lags), "rate": rate,
                "degraded": degraded,
                "learned_per_s": round(per_s), "backlog": backlog,
                "first_backlog_learned_after_ms": round((started - t0) * 1000) if started else None}
    finally:
        watch.stop.set()
        health.stop.set()
        server.stop()
        store.close()


def report(results: dict) -> str:
    lines = [f"Separate learner (2 workers); rewards learned at once (`aggregation = \"earliest\"`); "
             f"`snapshot.interval_s = {SNAPSHOT_S:g}`. \"Learned\": the learner's model has it; \"served\": every "
             "worker serves a snapshot that has it (learned + the next snapshot + the workers' 5 s model-watch).", "",
             "| strategy | rewards sent | at req/s | 200 -> learned p50 ms | p99 ms | 200 -> served p50 ms | p99 ms "
             "| learned / s (backlog) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for strategy, r in results.items():
        lines.append(f"| {strategy} | {r['rewards']} | {r['rate']:.0f} | {r['lag_ms']['p50']:.1f} | "
                     f"{r['lag_ms']['p99']:.1f} | {r['served_ms']['p50']:.0f} | {r['served_ms']['p99']:.0f} | "
                     f"{r['learned_per_s']} ({r['backlog']}) |")
        if r.get("degraded"):
            lines.append(f"|  | ({r['degraded']} of the decisions made for this run were answered degraded: Redis "
                         "stalled while storing or serving a model snapshot) | | | | | | |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = parser_for(__doc__)
    parser.add_argument("--rewards", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200.0, help="feedback requests per second")
    parser.add_argument("--backlog", type=int, default=20_000)
    parser.add_argument("--strategies", default="epsilon_greedy,thompson")
    args = parser.parse_args(argv)
    bench = bench_for(args)
    try:
        results = {s: measure(bench, s, args.rewards, args.rate, args.backlog) for s in args.strategies.split(",")}
        print(report(results))
    finally:
        bench.close()


if __name__ == "__main__":
    main()
