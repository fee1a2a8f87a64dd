"""What the real-data benchmark tells a fresh service before its live rounds (`benchmarks.realdata`):
MovieLens's catalog, profiles and rating history, either through the API (flow "api": PUT
/items, PUT /users, POST /events, one request per event, on several keep-alive connections,
each user's events in order on one) or as the files `banditrec build` reads, built before the
service starts (flow "build")."""

from __future__ import annotations

import csv
import json
import subprocess
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from benchmarks.harness import ROOT
from benchmarks.served import Client, banditrec_cmd, clean_env
from simulations.movielens import MovieLens
from simulations.ratings import History, item_record, user_profile

# --- flow "api" ----------------------------------------------------------------------------

def feed_api(port: int, ml: MovieLens, history: History, shift: float, *, threads: int = 8,
             events_mode: str = "click-or-view", progress: bool = True) -> dict:
    """Catalog, profiles and history through PUT /items, PUT /users and POST /events.
    Each user's events go in time order on one connection; users are spread over `threads`."""
    local = threading.local()
    statuses: dict[str, Counter] = defaultdict(Counter)
    lock = threading.Lock()
    clients: list[Client] = []

    def client() -> Client:
        if not hasattr(local, "client"):
            local.client = Client(port)
            with lock:
                clients.append(local.client)
        return local.client

    def send(kind, calls, bar):
        def one(batch):
            out = Counter()
            for method, path, body in batch:
                out[client().call(method, path, body)[0]] += 1
            with lock:
                statuses[kind].update(out)
                bar.update(len(batch))

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, calls))

    started = time.perf_counter()
    seconds = {}
    items = [[("PUT", f"/items/{ml.item_ids[i]}", item_record(ml, i, shift))] for i in range(ml.shape[1])]
    users = [[("PUT", f"/users/{ml.user_ids[u]}", user_profile(ml, u))] for u in range(ml.shape[0])]
    per_user = defaultdict(list)
    for user_id, item_id, kind, ts in history.events(ml, shift, events_mode):
        per_user[user_id].append(("POST", "/events", {"user_id": user_id, "item_id": item_id, "type": kind,
                                                      "timestamp": ts}))
    events = sorted(per_user.values(), key=len, reverse=True)  # the longest first: threads end together
    for kind, calls in (("items", items), ("users", users), ("events", events)):
        t = time.perf_counter()
        with tqdm(total=sum(map(len, calls)), desc=f"api: {kind}", disable=not progress, unit="req") as bar:
            send(kind, calls, bar)
        seconds[kind] = round(time.perf_counter() - t, 1)
    for c in clients:
        c.close()
    return {"statuses": {k: {str(s): n for s, n in v.items()} for k, v in statuses.items()}, "seconds": seconds,
            "total_seconds": round(time.perf_counter() - started, 1),
            "requests": {"items": len(items), "users": len(users), "events": history.n_events(events_mode)}}


# --- flow "build" --------------------------------------------------------------------------

def write_build_files(directory: Path, ml: MovieLens, history: History, shift: float,
                      events_mode: str = "click-or-view") -> dict:
    """catalog.jsonl, users.jsonl and interactions.csv in the formats `banditrec build` reads."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"catalog": directory / "catalog.jsonl", "users": directory / "users.jsonl",
             "interactions": directory / "interactions.csv"}
    with open(paths["catalog"], "w", encoding="utf-8") as fh:
        for i in range(ml.shape[1]):
            fh.write(json.dumps({"item_id": ml.item_ids[i], **item_record(ml, i, shift)}) + "\n")
    with open(paths["users"], "w", encoding="utf-8") as fh:
        for u in range(ml.shape[0]):
            fh.write(json.dumps({"user_id": ml.user_ids[u], **user_profile(ml, u)}) + "\n")
    with open(paths["interactions"], "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["user_id", "item_id", "type", "timestamp"])
        writer.writerows(history.events(ml, shift, events_mode))
    return paths


def run_build(data_dir: Path, paths: dict, now: float, log_path: Path, config: Path | None = None) -> float:
    """`banditrec build --data-dir DIR --catalog ... --users ... --interactions ... --now T`;
    seconds it took. (It starts and stops the data dir's embedded Redis itself.)"""
    cmd = [*banditrec_cmd(), "build", "--data-dir", str(data_dir), "--catalog", str(paths["catalog"]),
           "--users", str(paths["users"]), "--interactions", str(paths["interactions"]), "--now", str(int(now)),
           "--no-progress"]
    if config:
        cmd += ["--config", str(config)]
    t = time.perf_counter()
    with open(log_path, "ab") as out:
        out.write((" ".join(cmd) + "\n").encode())
        out.flush()
        done = subprocess.run(cmd, cwd=ROOT, env=clean_env(), stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise RuntimeError(f"banditrec build failed ({done.returncode}):\n{log_path.read_text()[-3000:]}")
    return time.perf_counter() - t
