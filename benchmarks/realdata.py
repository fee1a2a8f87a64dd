"""Real data over HTTP: MovieLens 100k replayed against a fresh banditrec service, next to baselines.

    .venv/bin/python -m benchmarks.realdata --flow both --rounds 20000 --seed 1 --out runs/realdata

What it does (the world, the truth and the baselines are in `simulations/ratings.py`):

1. Reads MovieLens 100k from the `recbole==1.2.1` wheel (installed, without dependencies, if
   missing; research use only, no redistribution: fetched at run time, never committed) or
   from `--data DIR` (any directory with ml-100k.{inter,item,user}).
2. Fits a ground truth to all ratings: click probability p(u, i) per user and item, times
   1 / log2(position + 1).
3. Splits each user's ratings by time: the older half is the history (rating >= 4: click,
   else view; `--events view-and-click`: every rating a view, and >= 4 also a click a second
   later; the build's warm start labels views by whether the same user clicked the item, so
   under the default mapping it sees no positive example at all). Timestamps keep their
   gaps but are moved as a whole so that the history ends a minute before the run starts
   (`--time shift`, the default): the service compares event times with its own clock
   (sessions, inactive users, trending decay, "no events from the future"), so 1998
   timestamps would make every user 27 years inactive. `--time original` sends them
   unchanged.
4. Starts a fresh service, `banditrec serve --data-dir DIR --port P [--config FILE]`, in a
   process group of its own with its own embedded Redis (REDIS_URL and BANDITREC_* removed
   from its environment), waits for GET /ready, and always stops it at the end (SIGINT, then
   SIGKILL after 60 s). Flow `api`: the catalog (PUT /items), the profiles (PUT /users) and
   the history (POST /events, one request per event: there is no batch form; several
   keep-alive connections, each user's events in order on one) go through the API. Flow
   `build`: the same data as `banditrec build --catalog --users --interactions --now <end of
   history>` files, built before the service starts.
5. Live rounds, one client, in sequence: a random user (seeded) asks POST /recommend with
   k = 10, its own event_id and `exclude` = every item of the user's history plus what the
   user clicked in earlier rounds. Item j of the slate is clicked with p(u, i) / log2(j + 1)
   (seeded draws); each click goes to POST /feedback (reward 1) and POST /events (a click
   timestamped with the wall clock, the service's clock). By default the client also marks
   the whole slate seen (`"seen"` in the first feedback of the round, or alone), so that
   unclicked items are learned as the default reward when the decision's wait ends, as
   the README asks of a well-behaved client (`--no-seen`: only clicks are sent).
   The rounds run in real time (`--rate` caps rounds per second; one client unthrottled does
   ~40-140/s on 2 cores, by the machine): 20,000 rounds over ~3-30 minutes means each of the
   943 users comes back every minute or two, more compressed than real traffic, and the
   shipped `feedback.reward_wait_s` (60 s, aggregation "max") means nothing is learned from a
   decision until 90 s after it (GET /learning is sampled along the way). Unthrottled, the
   round at which learning starts depends on the machine's speed (~13,000 at 143 rounds/s):
   compare machines at the same `--rate` (the README's table: 12).
6. Baselines on the same rounds, in-process, each in its own loop: the same users, the
   same click draws (common random numbers), and exclude sets that follow the baseline's own
   clicks (what the user would have used up had it served them): the oracle (the user's top
   k by true p), the best non-personalised ranking (items by their mean true p over all
   users), popularity (most clicked so far, its own clicks included) and random. Also
   `best_static_open`: the best ranking scored on banditrec's exclude sets, as reports before
   December 2026 scored every baseline; it never uses up its own best items, so it
   overstates what that ranking would have earned (see `simulations.ratings.baselines`).
7. Report (`benchmarks/realdata_report.py`): per policy the mean expected clicks per slate
   over the last half of the rounds and per window (the learning curve); paired differences
   banditrec - baseline with 95 %
   intervals; the share of slate items flagged explored; /recommend latency; degraded
   answers; rewards learned. The primary interval is a normal interval over batch means
   (batches of `--batch` consecutive rounds, 500 by default, at least 5 batches): rounds are
   autocorrelated (the model and the popularity counts carry over), so an interval from
   per-round differences as if independent (also reported) is too narrow.
   Written to `--out`: `<flow>.md`, `<flow>.json`, `<flow>-curve.png`, `<flow>-rounds.csv`,
   `<flow>-serve.log` (and `<flow>-build.log`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tqdm import tqdm

from benchmarks.harness import machine
from benchmarks.realdata_feed import feed_api, run_build, write_build_files
from benchmarks.realdata_report import markdown, plot, report, write_rounds
from benchmarks.served import Client, Service
from simulations.movielens import LICENCE, MovieLens, load_movielens, movielens_dir
from simulations.ratings import (
    EVENT_MODES,
    History,
    Truth,
    baselines,
    discount,
    fit_truth,
    split_history,
    user_context,
)

# --- live rounds ---------------------------------------------------------------------------

@dataclass
class RoundLog:
    """What happened in each live round (arrays indexed by round)."""

    users: np.ndarray
    expected: np.ndarray      # expected clicks of banditrec's slate (sum of p x discount)
    clicks: np.ndarray        # clicks drawn
    returned: np.ndarray      # items in the answer
    explored: np.ndarray      # of them flagged explored
    status: np.ndarray        # HTTP status of /recommend
    latency_ms: np.ndarray
    model_version: np.ndarray
    strategy: list[str]
    arm: list[str]                # "personalized" or "holdout" (experiment.holdout_share > 0)
    live_clicks: list[list[int]]  # item indices clicked per round
    draws: np.ndarray             # (rounds, k) the uniforms each position's click was drawn with
    excluded_returned: int = 0    # items returned although in `exclude` (must stay 0)
    unknown_returned: int = 0     # item ids not in the catalog (p = 0)
    duplicate_returned: int = 0   # an item twice in one slate
    feedback_status: Counter = field(default_factory=Counter)
    events_status: Counter = field(default_factory=Counter)
    learning: list[dict] = field(default_factory=list)  # GET /learning samples
    seconds: float = 0.0


def _learning(client: Client, n: int) -> dict:
    status, body = client.call("GET", "/learning")
    return {"round": n, "time": round(time.time(), 1), "status": status,
            **{k: body.get(k) for k in ("learned_total", "learned_here", "model_version", "strategy", "mode")}}


def run_rounds(port: int, ml: MovieLens, truth: Truth, history: History, *, rounds: int, k: int = 10,
               seed: int = 1, mark_seen: bool = True, with_context: bool = False, rate: float = 0.0,
               samples: int = 20, progress: bool = True) -> RoundLog:
    """The live phase: one client, rounds in sequence (see the module docstring)."""
    n_users, n_items = ml.shape
    disc = discount(k)
    users = np.random.default_rng([seed, 10]).integers(n_users, size=rounds)
    rng_clicks = np.random.default_rng([seed, 11])
    row_of = {item_id: i for i, item_id in enumerate(ml.item_ids)}
    excluded = [set(items) for items in history.seen]
    log = RoundLog(users=users, expected=np.zeros(rounds), clicks=np.zeros(rounds, dtype=np.int64),
                   returned=np.zeros(rounds, dtype=np.int64), explored=np.zeros(rounds, dtype=np.int64),
                   status=np.zeros(rounds, dtype=np.int64), latency_ms=np.zeros(rounds),
                   model_version=np.full(rounds, -1, dtype=np.int64), strategy=[""] * rounds, arm=[""] * rounds,
                   live_clicks=[[] for _ in range(rounds)], draws=np.ones((rounds, k)))
    client = Client(port)
    every = max(1, rounds // samples)
    started = time.perf_counter()
    try:
        log.learning.append(_learning(client, 0))
        for r in tqdm(range(rounds), desc="rounds", disable=not progress, unit="round", mininterval=2.0):
            if rate > 0:
                time.sleep(max(0.0, started + r / rate - time.perf_counter()))
            u = int(users[r])
            body = {"user_id": ml.user_ids[u], "k": k, "event_id": f"rd{seed}-{r}",
                    "exclude": [ml.item_ids[i] for i in sorted(excluded[u])]}
            if with_context:
                body["context"] = user_context(ml, u)
            t = time.perf_counter()
            status, answer = client.call("POST", "/recommend", body)
            log.latency_ms[r] = (time.perf_counter() - t) * 1000.0
            log.status[r] = status
            draws = log.draws[r] = rng_clicks.random(k)  # k draws every round: the stream does not depend on answers
            if status != 200:
                log.strategy[r] = f"error-{status}"
                continue
            items = answer.get("items", [])
            log.strategy[r] = answer.get("strategy", "")
            log.arm[r] = answer.get("arm", "")
            log.model_version[r] = answer.get("model_version") or 0
            log.returned[r] = len(items)
            log.explored[r] = sum(bool(it.get("explored")) for it in items)
            shown, clicked = [], []
            for j, it in enumerate(items[:k]):
                i = row_of.get(it["item_id"])
                shown.append(it["item_id"])
                if i is None:
                    log.unknown_returned += 1
                    continue
                if i in excluded[u]:
                    log.excluded_returned += 1
                p = truth.p[u, i] * disc[j]
                log.expected[r] += p
                if draws[j] < p:
                    clicked.append(i)
            log.duplicate_returned += len(shown) - len(set(shown))
            log.clicks[r] = len(clicked)
            log.live_clicks[r] = clicked
            seen = mark_seen and bool(shown)
            for n, i in enumerate(clicked):
                fb = {"event_id": answer["event_id"], "item_id": ml.item_ids[i], "reward": 1.0}
                if seen and n == 0:
                    fb["seen"] = shown
                log.feedback_status[client.call("POST", "/feedback", fb)[0]] += 1
                log.events_status[client.call("POST", "/events", {
                    "user_id": ml.user_ids[u], "item_id": ml.item_ids[i], "type": "click",
                    "timestamp": round(time.time(), 3)})[0]] += 1
                excluded[u].add(i)
            if seen and not clicked:
                log.feedback_status[client.call("POST", "/feedback", {"event_id": answer["event_id"],
                                                                      "seen": shown})[0]] += 1
            if (r + 1) % every == 0:
                log.learning.append(_learning(client, r + 1))
        if not log.learning or log.learning[-1]["round"] != rounds:
            log.learning.append(_learning(client, rounds))
    finally:
        client.close()
    log.seconds = time.perf_counter() - started
    return log


# --- one flow, end to end ------------------------------------------------------------------

def run_flow(flow: str, ml: MovieLens, truth: Truth, history: History, *, out: Path, rounds: int, k: int = 10,
             seed: int = 1, config: Path | None = None, work: Path | None = None, time_mode: str = "shift",
             threads: int = 8, events_mode: str = "click-or-view", mark_seen: bool = True,
             with_context: bool = False, rate: float = 0.0,
             windows: int = 10, batch: int = 500, progress: bool = True, data_meta: dict | None = None) -> dict:
    """Fresh service, history in (through the API or a build), live rounds, baselines, report.
    Writes `<flow>.json|md|-curve.png|-rounds.csv|-serve.log` to `out`; returns the result dict
    (its `meta.service_stopped` says the service was stopped)."""
    if flow not in ("api", "build"):
        raise ValueError(f"flow must be api or build, got {flow!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    own_work = work is None
    work = Path(tempfile.mkdtemp(prefix=f"realdata-{flow}-")) if own_work else Path(work) / flow
    if work.exists() and not own_work:
        shutil.rmtree(work)  # a fresh service: nothing left from an earlier run
    work.mkdir(parents=True, exist_ok=True)
    data_dir = work / "data"
    log_path, build_log = out / f"{flow}-serve.log", out / f"{flow}-build.log"
    for stale in (log_path, build_log):
        stale.unlink(missing_ok=True)
    started = time.time()
    shift = float(int(started) - 60 - int(history.last_timestamp)) if time_mode == "shift" else 0.0
    seconds: dict[str, float] = {}
    meta = {"flow": flow, "k": k, "seed": seed, "rounds": rounds, "config": str(config) if config else None,
            "config_text": Path(config).read_text() if config else "(shipped defaults)",
            "time_mode": time_mode, "shift_s": shift, "history_end": history.last_timestamp + shift,
            "mark_seen": mark_seen, "user_context": with_context, "rate": rate, "machine": machine(),
            "data": data_meta or {}, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "truth": {"slope": truth.slope, "threshold": truth.threshold, "rmse": truth.rmse,
                      "mean_p_rated_4_plus": truth.mean_liked, "mean_p_all": truth.mean_all},
            "history": {"ratings": int(len(history.user)), "events": history.n_events(events_mode),
                        "clicks": int(history.click.sum()), "events_mode": events_mode}}
    service = None
    try:
        if flow == "build":
            t = time.perf_counter()
            paths = write_build_files(work / "files", ml, history, shift, events_mode)
            seconds["build"] = round(run_build(data_dir, paths, history.last_timestamp + shift, build_log, config), 1)
            meta["build_files_seconds"] = round(time.perf_counter() - t - seconds["build"], 1)
        t = time.perf_counter()
        service = Service(data_dir, log_path, config)
        seconds["start"] = round(time.perf_counter() - t, 1)
        meta["command"] = " ".join(service.command)
        if flow == "api":
            feed = feed_api(service.port, ml, history, shift, threads=threads, events_mode=events_mode,
                            progress=progress)
            meta["feed"] = feed
            seconds["feed"] = feed["total_seconds"]
        log = run_rounds(service.port, ml, truth, history, rounds=rounds, k=k, seed=seed, mark_seen=mark_seen,
                         with_context=with_context, rate=rate, progress=progress)
        seconds["rounds"] = round(log.seconds, 1)
        client = Client(service.port)
        try:
            meta["stats_end"] = client.call("GET", "/stats")[1]
            meta["experiments_end"] = client.call("GET", "/experiments")[1]
        finally:
            client.close()
    finally:
        if service is not None:
            t = time.perf_counter()
            meta["service_exit"] = service.stop()
            meta["service_stopped"] = service.stopped
            seconds["stop"] = round(time.perf_counter() - t, 1)
        if own_work:
            shutil.rmtree(work, ignore_errors=True)
    t = time.perf_counter()
    base = baselines(truth, history, log.users, log.live_clicks, k, seed, draws=log.draws)
    seconds["baselines"] = round(time.perf_counter() - t, 1)
    seconds["total"] = round(time.time() - started, 1)
    meta["seconds"] = seconds
    result = report(flow, log, base, windows=windows, batch=batch, meta=meta)
    (out / f"{flow}.json").write_text(json.dumps(result, indent=1, default=_jsonable))
    (out / f"{flow}.md").write_text(markdown(result) + "\n")
    write_rounds(out / f"{flow}-rounds.csv", log, base, ml)
    plot(result, out / f"{flow}-curve.png")
    return result


def _jsonable(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def prepare(data: Path | None, *, users_limit: int = 0, items_limit: int = 0, seed: int = 0,
            install: bool = True) -> tuple[MovieLens, Truth, History, dict]:
    """Load the data (the recbole wheel's MovieLens 100k unless `data` is given), fit the
    truth, split the history."""
    source = Path(data) if data else movielens_dir(install=install)
    t = time.perf_counter()
    ml = load_movielens(source, users_limit=users_limit, items_limit=items_limit)
    truth = fit_truth(ml, seed=seed)
    history = split_history(ml)
    info = {"source": str(source), "licence": LICENCE if not data else "(given with --data)",
            "users": ml.shape[0], "items": ml.shape[1], "ratings": int(len(ml.rating)),
            "prepare_seconds": round(time.perf_counter() - t, 1)}
    return ml, truth, history, info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flow", choices=("api", "build", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--config", type=Path, help="TOML settings for the service (default: shipped defaults)")
    parser.add_argument("--out", type=Path, default=Path("runs/realdata"))
    parser.add_argument("--data", type=Path, help="a directory with ml-100k.{inter,item,user} (default: recbole's)")
    parser.add_argument("--users-limit", type=int, default=0, help="keep the N users with most ratings (0: all)")
    parser.add_argument("--items-limit", type=int, default=0, help="keep the N most rated items (0: all)")
    parser.add_argument("--work", type=Path, help="keep the service's data dir here (default: a temporary one)")
    parser.add_argument("--time", dest="time_mode", choices=("shift", "original"), default="shift",
                        help="move the history to end just before the run (default) or keep 1997-98 timestamps")
    parser.add_argument("--threads", type=int, default=8, help="connections feeding the history (flow api)")
    parser.add_argument("--events", dest="events_mode", choices=EVENT_MODES, default="click-or-view",
                        help="history ratings as events: >= 4 a click, else a view (default); or every rating "
                             "a view and >= 4 also a click")
    parser.add_argument("--no-seen", dest="mark_seen", action="store_false",
                        help="send only clicks, not the slate as seen")
    parser.add_argument("--user-context", action="store_true",
                        help="send gender and occupation as request context (no profile field holds them)")
    parser.add_argument("--rate", type=float, default=0.0, help="at most this many rounds per second (0: no limit)")
    parser.add_argument("--windows", type=int, default=10)
    parser.add_argument("--batch", type=int, default=500, help="rounds per batch for the batch-means interval")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args(argv)
    if not args.data:
        print(f"data: {LICENCE}", file=sys.stderr)
    ml, truth, history, info = prepare(args.data, users_limit=args.users_limit, items_limit=args.items_limit)
    print(f"data: {info['users']} users, {info['items']} items, {info['ratings']} ratings; history "
          f"{len(history.user)} events; truth: rmse {truth.rmse:.3f}, mean p {truth.mean_all:.3f} "
          f"(rated >= 4: {truth.mean_liked:.3f})", file=sys.stderr)
    flows = ("api", "build") if args.flow == "both" else (args.flow,)
    for flow in flows:
        result = run_flow(flow, ml, truth, history, out=args.out, rounds=args.rounds, k=args.k, seed=args.seed,
                          config=args.config, work=args.work, time_mode=args.time_mode, threads=args.threads,
                          events_mode=args.events_mode,
                          mark_seen=args.mark_seen, with_context=args.user_context, rate=args.rate,
                          windows=args.windows, batch=args.batch, progress=args.progress, data_meta=info)
        print(markdown(result))
        print()
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    # a SIGTERM unwinds like an error: the service is stopped and the temporary dir removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    sys.exit(main())
