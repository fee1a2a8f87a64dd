"""How long a model snapshot blocks Redis: the longest PING another client sees while a
Thompson-sized snapshot (the model + 8 bootstrap replicas) is written and read back.

    .venv/bin/python -m benchmarks.snapshot_stall --rewards 200000

Trains real VW models (the shipped `model` settings) on random users, items and contexts
until they are the size a busy deployment's are, then compares storing the parts inline in
one hash in one command (what snapshots did before) with `Store.put_snapshot` (parts
compressed, staged one command each, switched in by a Lua script), on the bench's Redis
(REDIS_URL, else an embedded one).
"""

from __future__ import annotations

import argparse
import random
import threading
import time
import uuid
import zlib

from bandit.vw import VWModel
from banditrec.config import Config
from store import Store, make_client


class Pinger(threading.Thread):
    """PINGs Redis back to back on its own connection; remembers the slowest answer."""

    def __init__(self, url: str, cfg):
        super().__init__(daemon=True)
        self.client, self.worst, self.stop = make_client(url, cfg), 0.0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            t = time.perf_counter()
            self.client.ping()
            self.worst = max(self.worst, time.perf_counter() - t)

    def measure(self, fn) -> tuple[float, float]:
        """(seconds fn took, worst PING in ms while it ran)."""
        self.worst = 0.0
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t, self.worst * 1000.0


def trained_blobs(rewards: int, replicas: int, seed: int = 0) -> list[bytes]:
    cfg = Config().model
    rng = random.Random(seed)
    model = VWModel(cfg.vw_args())
    for _ in range(rewards):
        shared = f"|U u{rng.randrange(100_000)} |C dev={rng.choice('abc')} hour={rng.randrange(24)}"
        action = f"|I i{rng.randrange(1_000_000)} c{rng.randrange(50)} |R Sim:{rng.random():.3f}"
        model.learn(shared, action, rng.random(), 0.5)
    blob = model.to_bytes()
    model.close()
    # replicas of one model differ in their Poisson draws, not in size or sparsity
    return [blob] * (1 + replicas)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rewards", type=int, default=200_000)
    parser.add_argument("--replicas", type=int, default=8)
    parser.add_argument("--redis", default="", help="Redis URL (default $REDIS_URL, else an embedded server)")
    args = parser.parse_args(argv)
    import os

    cfg = Config().redis
    url, embedded = args.redis or os.environ.get("REDIS_URL", ""), None
    if not url:
        import tempfile

        from store import EmbeddedRedis

        embedded = EmbeddedRedis(tempfile.mkdtemp(prefix="stall-"), "everysec")
        url = embedded.url
    t = time.perf_counter()
    blobs = trained_blobs(args.rewards, args.replicas)
    print(f"trained {args.rewards} rewards in {time.perf_counter() - t:.0f} s: {len(blobs)} parts of "
          f"{len(blobs[0]) / 2**20:.1f} MB ({sum(map(len, blobs)) / 2**20:.0f} MB; zlib level 1: "
          f"{sum(len(zlib.compress(b, 1)) for b in blobs) / 2**20:.0f} MB)")
    store = Store(make_client(url, cfg), f"stall-{uuid.uuid4().hex[:8]}")
    pinger = Pinger(url, cfg)
    pinger.start()
    try:
        rows = []
        for run in range(3):
            key = store.key("inline", str(run))
            fields = {"blob": blobs[0], **{f"r{i}": b for i, b in enumerate(blobs[1:])}, "meta": b"{}"}
            took, worst = pinger.measure(lambda: store.client.hset(key, mapping=fields))
            rows.append(("inline, one HSET (before)", "write", took, worst))
            took, worst = pinger.measure(lambda: store.client.hgetall(key))
            rows.append(("inline, one HSET (before)", "read", took, worst))
            took, worst = pinger.measure(lambda: store.put_snapshot(blobs[0], {"cursor": "0-0"}, 3, blobs[1:]))
            rows.append(("staged parts, compressed (now)", "write", took, worst))
            took, worst = pinger.measure(lambda: store.latest_snapshot())
            rows.append(("staged parts, compressed (now)", "read", took, worst))
        print("\n| snapshot layout | op | time ms (median of 3) | worst PING during it, ms (max of 3) |\n"
              "| --- | --- | --- | --- |")
        for layout in dict.fromkeys(r[0] for r in rows):
            for op in ("write", "read"):
                sel = [r for r in rows if r[0] == layout and r[1] == op]
                print(f"| {layout} | {op} | {sorted(r[2] for r in sel)[1] * 1000:.0f} | "
                      f"{max(r[3] for r in sel):.1f} |")
    finally:
        pinger.stop.set()
        pinger.join()
        store.delete_all()
        store.close()
        if embedded is not None:
            embedded.close()


if __name__ == "__main__":
    main()
