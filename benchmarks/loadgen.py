"""An open-loop HTTP load generator (asyncio, keep-alive connections, stdlib only).

    python -m benchmarks.loadgen --url http://127.0.0.1:8765 --rate 200 --seconds 20 --users 100000

Requests are scheduled at a fixed rate whatever the server does, and each one's latency is
measured from its scheduled time (so a slow server is not hidden by a waiting client).
Every `--feedback-every`-th request is a POST /feedback for the first item of the latest
recommendation not yet rewarded, every `--events-every`-th (if set) a POST /events (a view or click of a
recently recommended item by a random user); the rest are POST /recommend for a random demo
user. Prints one JSON line:
achieved rate, latency percentiles per route, error counts. `--trace FILE` also writes every
request as a CSV row (its scheduled wall-clock time, route, latency in ms, status), to line slow
requests up with what the server did then (its log's timestamps).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import gc
import json
import random
import time
from collections import deque
from urllib.parse import urlparse


class Connection:
    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def request(self, path: str, body: dict) -> tuple[int, dict]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        data = json.dumps(body).encode()
        self.writer.write(f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
                          f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split()[1])
        length, close = 0, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and value.strip().lower() == "close":
                close = True
        payload = await self.reader.readexactly(length) if length else b""
        if close:
            self.close()
        return status, json.loads(payload) if payload else {}

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def run(url: str, rate: float, seconds: float, users: int, feedback_every: int, connections: int,
              seed: int = 0, events_every: int = 0, k: int = 50, trace: str | None = None) -> dict:
    parsed = urlparse(url)
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(Connection(parsed.hostname, parsed.port))
    rng = random.Random(seed)
    slates: deque = deque(maxlen=1000)
    latencies: dict[str, list[float]] = {"recommend": [], "feedback": [], "events": []}
    errors: dict[str, int] = {}
    rows: list[tuple] = []  # (scheduled, route, ms, status) with --trace
    tasks = []

    async def one(n: int, due: float) -> None:
        conn = await pool.get()
        route = "?"
        try:
            if feedback_every and n % feedback_every == feedback_every - 1 and slates:
                route = "feedback"
                event_id, item_id = slates.pop()  # the newest: the oldest of 1000 is ~60 s old at 20 req/s,
                # past feedback.reward_wait_s (the soak's 410s were that, not the server)
                status, _ = await conn.request("/feedback", {"event_id": event_id, "item_id": item_id,
                                                             "reward": float(rng.random() < 0.2)})
            elif events_every and n % events_every == events_every - 1 and slates:
                route = "events"
                status, _ = await conn.request("/events", {"user_id": f"u{rng.randrange(users)}",
                                                           "item_id": rng.choice(slates)[1],
                                                           "type": rng.choice(("view", "view", "click"))})
            else:
                route = "recommend"
                status, out = await conn.request("/recommend", {"user_id": f"u{rng.randrange(users)}", "k": k})
                if status == 200 and out.get("items"):
                    slates.append((out["event_id"], out["items"][0]["item_id"]))
            latencies[route].append((time.perf_counter() - due) * 1000.0)
            if trace:
                rows.append((due, route, latencies[route][-1], status))
            if status != 200:
                errors[str(status)] = errors.get(str(status), 0) + 1
        except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
            conn.close()
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            if trace:
                rows.append((due, route, (time.perf_counter() - due) * 1000.0, type(exc).__name__))
        finally:
            pool.put_nowait(conn)

    # No collections of our own while requests are timed: a gen-2 pass over the step's tasks took
    # this process 10-20 ms at 200 req/s, and the answers that arrived meanwhile were counted late.
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        wall = time.time() - start  # perf_counter -> wall clock, for the trace
        total = int(rate * seconds)
        for n in range(total):
            due = start + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n, due)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    while not pool.empty():
        pool.get_nowait().close()
    if trace:
        with open(trace, "w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(("scheduled_unix_s", "route", "ms", "status"))
            writer.writerows((f"{due + wall:.4f}", route, f"{ms:.2f}", status)
                             for due, route, ms, status in sorted(rows))

    def pct(xs, q):
        xs = sorted(xs)
        return round(xs[min(len(xs) - 1, int(q / 100 * len(xs)))], 2) if xs else None

    done = sum(len(v) for v in latencies.values())
    return {"target_rate": rate, "achieved_rate": round(done / elapsed, 1), "seconds": round(elapsed, 1),
            "errors": errors,
            **{f"{route}_{name}": pct(xs, q) for route, xs in latencies.items()
               for name, q in (("p50", 50), ("p99", 99))},
            "all_p99": pct([x for xs in latencies.values() for x in xs], 99),
            "requests": {route: len(xs) for route, xs in latencies.items()}}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8765")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second (recommend + feedback)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=2000, help="user ids u0..u{n-1}")
    parser.add_argument("--feedback-every", type=int, default=6, help="1 feedback per 5 recommends: 6")
    parser.add_argument("--events-every", type=int, default=0, help="1 POST /events per n requests (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--k", type=int, default=50, help="items per /recommend")
    parser.add_argument("--trace", help="write every request (scheduled time, route, ms, status) to this CSV")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(run(args.url, args.rate, args.seconds, args.users, args.feedback_every,
                                     args.connections, args.seed, args.events_every, args.k, args.trace))))


if __name__ == "__main__":
    main()
