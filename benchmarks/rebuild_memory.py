"""Rebuilds while serving: each worker's own memory and the /recommend tail around them.

    .venv/bin/python -m benchmarks.rebuild_memory --items 1000000 --users 100000

`banditrec serve` with 2 workers (and the learner) at 1000 candidates, as
`benchmarks.worker_memory`; after a warm-up, `--rebuilds` times: load in 10 s steps from
`benchmarks.loadgen` (its own process) at --rate, PUT one new item, POST /admin/rebuild (the
incremental build of a new index version, at 1M items ~40 s), wait until both workers serve
it, keep loading --after-s, then read each worker's memory. Prints one JSON object, then a
table: own memory per worker after the warm-up and after each rebuild, the rebuild's time,
and the worst /recommend p99 of a 10 s step while it ran and the workers swapped. A build on
a worker's own thread kept 109-232 MB of that worker's memory and held its requests for
seconds; `banditrec.build.apart` runs it in a process of its own. Compare code by running
this on each, one after the other.
"""

from __future__ import annotations

import json
import threading
import time

from benchmarks.harness import Bench, bench_for, parser_for
from benchmarks.http_load import Server, load, memory_mb
from benchmarks.served import Client


def _call(client: Client, method: str, path: str, body=None) -> dict:
    status, payload = client.call(method, path, body)
    if status != 200:
        raise RuntimeError(f"{method} {path}: {status} {payload}")
    return payload


def _serving(server: Server, pids: set[int], version: str, timeout_s: float = 600.0) -> float:
    """Until every worker in `pids` serves index `version` (asked on fresh connections: each
    lands on some worker, which says its pid and version); the seconds waited."""
    start, seen = time.monotonic(), set()
    while time.monotonic() - start < timeout_s:
        client = Client(server.port)  # a new connection: any worker
        try:
            pid = _call(client, "GET", "/health")["pid"]
            if _call(client, "GET", "/ready")["index_version"] == version:  # (the same connection: that worker)
                seen.add(pid)
        finally:
            client.close()
        if pids <= seen:
            return time.monotonic() - start
        time.sleep(0.2)
    raise RuntimeError(f"workers {sorted(pids - seen)} did not serve index {version} within {timeout_s:g} s")


class _Load:
    """`load` in 10 s steps on a thread until stopped."""

    def __init__(self, server: Server, rate: float, users: int, step_s: float = 10.0):
        self.steps: list[dict] = []
        self.failed: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(server, rate, users, step_s), daemon=True)
        self._thread.start()

    def _run(self, server, rate, users, step_s):
        try:
            while not self._stop.is_set():
                self.steps.append(load(server, rate, step_s, users))
        except BaseException as exc:  # noqa: BLE001 - raised by stop(), in the caller's thread
            self.failed = exc

    def stop(self) -> list[dict]:
        self._stop.set()
        self._thread.join()
        if self.failed is not None:
            raise RuntimeError(f"the load during the rebuild failed: {self.failed!r}") from self.failed
        return self.steps


def run(bench: Bench, *, rebuilds: int = 2, warmup_s: float = 20, rate: float = 25, after_s: float = 30,
        n_candidates: int = 1000) -> dict:
    server = Server(bench, workers=2, log_name="serve-rebuild", retrieval={"n_candidates": n_candidates},
                    inactive={"after_s": 0.0})
    users = bench.config.demo.n_users
    try:
        server.wait_counts_loaded(2)
        pids = sorted(server.worker_pids())
        load(server, 50, warmup_s, users)
        out = {"after warm-up": {pid: memory_mb(pid) for pid in pids}, "rebuilds": []}
        for n in range(1, rebuilds + 1):
            steady = _Load(server, rate, users)
            client = Client(server.port, timeout=900)
            try:
                _call(client, "PUT", f"/items/rebuild-bench-{n}-{time.time_ns()}",
                      {"category": "c0", "title": f"rebuild benchmark item {n}"})
                started = time.monotonic()
                summary = _call(client, "POST", "/admin/rebuild")
                seconds = time.monotonic() - started
                if not summary.get("rebuilt"):
                    raise RuntimeError(f"POST /admin/rebuild built nothing: {summary}")
                swapped = _serving(server, set(pids), summary["index_version"])
            except BaseException:
                steady.stop()
                raise
            finally:
                client.close()
            steps = steady.stop()  # (the step under way ends first: it covers the swap)
            # then --after-s more load before memory is read, as worker_memory reads it after a step
            load(server, rate, after_s, users)
            p99s = [s["recommend_p99"] for s in steps if s["recommend_p99"] is not None]
            out["rebuilds"].append({"version": summary["index_version"], "build_s": round(seconds, 1),
                                    "swap_s": round(swapped, 1), "worst_step_p99": max(p99s, default=None),
                                    "errors": sum(sum((s["errors"] or {}).values()) for s in steps),
                                    "memory": {pid: memory_mb(pid) for pid in pids}})
        return out
    finally:
        server.stop()


def report(r: dict) -> str:
    pids = list(r["after warm-up"])
    lines = ["| worker | after warm-up | " + " | ".join(f"after rebuild {n + 1}" for n in range(len(r["rebuilds"])))
             + " |", "| --- " * (2 + len(r["rebuilds"])) + "|"]
    for pid in pids:
        cells = [f"{r['after warm-up'][pid]['own']}"] + [f"{b['memory'][pid]['own']}" for b in r["rebuilds"]]
        lines.append(f"| {pid} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Own memory, MB (private, not shared with another process). Each rebuild: " + "; ".join(
        f"{b['version']} built in {b['build_s']} s, both workers serving it {b['swap_s']} s later, worst "
        f"/recommend p99 of a 10 s step meanwhile {b['worst_step_p99']} ms, {b['errors']} errors"
        for b in r["rebuilds"]) + ".")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = parser_for(__doc__)
    parser.add_argument("--rebuilds", type=int, default=2)
    parser.add_argument("--warmup-s", type=float, default=20)
    parser.add_argument("--rate", type=float, default=25)
    parser.add_argument("--after-s", type=float, default=30)
    parser.add_argument("--candidates", type=int, default=1000)
    args = parser.parse_args(argv)
    bench = bench_for(args)
    try:
        result = run(bench, rebuilds=args.rebuilds, warmup_s=args.warmup_s, rate=args.rate, after_s=args.after_s,
                     n_candidates=args.candidates)
        print(json.dumps(result))
        print(report(result))
    finally:
        bench.close()


if __name__ == "__main__":
    main()
