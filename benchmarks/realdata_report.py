"""The real-data benchmark's report: what one flow's rounds measured (`report`), as markdown
(`markdown`), a learning-curve plot (`plot`) and a per-round CSV (`write_rounds`). The rounds
themselves are driven by `benchmarks.realdata`.

Each policy's mean expected clicks per slate over the last half of the rounds, with a normal
95 % interval over batch means (rounds are autocorrelated) and, for reference, one from
per-round values as if independent; paired differences banditrec - baseline; the learning
curve per window; the explored share; latency; the A/B arms when a holdout was configured.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from benchmarks.harness import percentiles
from simulations.movielens import MovieLens

if TYPE_CHECKING:
    from benchmarks.realdata import RoundLog

POLICIES = ("banditrec", "oracle", "best_static", "popularity", "random", "best_static_open")
BASELINES = POLICIES[1:]


def _interval(x: np.ndarray, batch: int) -> dict:
    """Mean of x with two 95 % intervals: normal over means of consecutive batches (primary;
    batch shrunk to give at least 5 batches), and per round as if independent."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    size = max(1, min(batch, n // 5)) if n >= 5 else 1
    nb = n // size
    means = x[: nb * size].reshape(nb, size).mean(axis=1) if nb else np.zeros(0)
    half = 1.96 * means.std(ddof=1) / math.sqrt(nb) if nb > 1 else float("nan")
    half_iid = 1.96 * x.std(ddof=1) / math.sqrt(n) if n > 1 else float("nan")
    m = float(x.mean()) if n else float("nan")
    return {"mean": m, "ci95": [m - half, m + half], "ci95_iid": [m - half_iid, m + half_iid],
            "batches": nb, "batch_size": size}


def ab_test(log: RoundLog, part: slice) -> dict | None:
    """The A/B holdout as the truth scores it (`experiment.holdout_share` > 0): expected clicks
    per slate of each arm's rounds in `part`, and the personalized arm's lift over the
    holdout, relative, with a 95 % interval (delta method; the arms are disjoint user groups,
    so rounds are taken as independent). None without holdout rounds."""
    arms = np.asarray(log.arm[part])
    x = log.expected[part]
    groups = {name: x[arms == name] for name in ("personalized", "holdout")}
    if min(len(g) for g in groups.values()) < 2:
        return None
    stats = {name: {"rounds": int(len(g)), "mean": float(g.mean()), "se": float(g.std(ddof=1) / math.sqrt(len(g)))}
             for name, g in groups.items()}
    t, h = stats["personalized"], stats["holdout"]
    lift = t["mean"] / h["mean"] - 1.0
    se = (t["mean"] / h["mean"]) * math.sqrt((t["se"] / t["mean"]) ** 2 + (h["se"] / h["mean"]) ** 2)
    return {"arms": stats, "lift": lift, "lift_ci95": [lift - 1.96 * se, lift + 1.96 * se]}


def _windows(x: np.ndarray, n: int) -> list[float]:
    return [float(w.mean()) if len(w) else float("nan") for w in np.array_split(np.asarray(x, dtype=float), n)]


def report(flow: str, log: RoundLog, base: dict[str, np.ndarray], *, windows: int = 10, batch: int = 500,
           meta: dict | None = None) -> dict:
    """Everything the run measured, as a JSON-able dict (`markdown(result)` renders it)."""
    rounds = len(log.users)
    half = slice(rounds // 2, rounds)
    values = {"banditrec": log.expected, **base}
    oracle_last = float(values["oracle"][half].mean())
    policies = {}
    for name, x in values.items():
        policies[name] = {"last_half": _interval(x[half], batch), "all": float(x.mean()),
                          "share_of_oracle": float(x[half].mean()) / oracle_last if oracle_last > 0 else float("nan"),
                          "curve": _windows(x, windows)}
    paired = {b: {"last_half": _interval(log.expected[half] - base[b][half], batch),
                  "all": _interval(log.expected - base[b], batch)} for b in base}
    ok = log.status == 200
    strategies = Counter(log.strategy)
    bounds = np.array_split(np.arange(rounds), windows)
    window_strategies = [dict(Counter(log.strategy[i] for i in w.tolist())) for w in bounds]
    explored_curve = [float(log.explored[w].sum() / max(1, log.returned[w].sum())) for w in bounds]
    lat = log.latency_ms[ok]
    return {"ab": ab_test(log, half),
        "flow": flow, "rounds": rounds, "windows": windows,
        "window_rounds": [[int(w[0]), int(w[-1]) + 1] if len(w) else [] for w in bounds],
        "policies": policies, "paired": paired,
        "service": {
            "recommend_ok": int(ok.sum()), "recommend_errors": {str(s): int(n) for s, n in
                                                                Counter(log.status[~ok].tolist()).items()},
            "full_slates": int((log.returned == log.returned.max(initial=0)).sum()) if rounds else 0,
            "returned_per_slate_min": int(log.returned[ok].min()) if ok.any() else 0,
            "excluded_returned": log.excluded_returned, "unknown_returned": log.unknown_returned,
            "duplicate_returned": log.duplicate_returned,
            "latency_ms": dict(zip(("p50", "p99"), percentiles(lat))),
            "degraded_share": strategies.get("degraded", 0) / rounds if rounds else float("nan"),
            "strategies": dict(strategies), "strategies_per_window": window_strategies,
            "explored_share": float(log.explored.sum() / max(1, log.returned.sum())),
            "explored_share_per_window": explored_curve,
            "model_versions": [int(log.model_version[ok].min()), int(log.model_version[ok].max())] if ok.any() else [],
            "feedback_status": {str(s): n for s, n in log.feedback_status.items()},
            "events_status": {str(s): n for s, n in log.events_status.items()},
            "learning": log.learning,
            "learned_total": (log.learning[-1] or {}).get("learned_total") if log.learning else None,
            "clicks_drawn": int(log.clicks.sum()), "clicks_per_slate": float(log.clicks.mean()) if rounds else 0.0,
            "rounds_seconds": round(log.seconds, 1),
            "rounds_per_second": round(rounds / log.seconds, 1) if log.seconds else None,
        },
        "meta": meta or {},
    }


def _f(x, digits=3) -> str:
    return "nan" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def markdown(result: dict) -> str:
    flow, pol, svc = result["flow"], result["policies"], result["service"]
    meta = result["meta"]
    hist = meta.get("history", {})
    lines = [f"### Flow `{flow}`: {result['rounds']} rounds, k = {meta.get('k', 10)}, seed {meta.get('seed')}", "",
             f"History: {hist.get('events')} events ({hist.get('events_mode')}) from {hist.get('ratings')} ratings; "
             f"config: {meta.get('config') or 'shipped defaults'}; client: slate marked seen "
             f"{'yes' if meta.get('mark_seen') else 'no'}, at most {meta.get('rate') or 'unlimited'} rounds/s, "
             f"time {meta.get('time_mode')}.", "",
             "Expected clicks per slate (sum of true p x 1/log2(position + 1)); last half of the rounds, 95 % "
             f"interval over batch means ({pol['banditrec']['last_half']['batches']} batches of "
             f"{pol['banditrec']['last_half']['batch_size']} rounds):", "",
             "| policy | clicks / slate (last half) | 95 % | share of oracle | whole run |",
             "| --- | --- | --- | --- | --- |"]
    for name in POLICIES:
        p = pol[name]
        lo, hi = p["last_half"]["ci95"]
        lines.append(f"| {name} | {_f(p['last_half']['mean'])} | [{_f(lo)}, {_f(hi)}] | "
                     f"{_f(p['share_of_oracle'], 2)} | {_f(p['all'])} |")
    lines += ["", "Paired, per round, banditrec - baseline (last half):", "",
              "| banditrec - | mean | 95 % (batch means) | 95 % (per round, iid) | whole run |",
              "| --- | --- | --- | --- | --- |"]
    for name in BASELINES:
        d = result["paired"][name]
        lo, hi = d["last_half"]["ci95"]
        li, hi2 = d["last_half"]["ci95_iid"]
        lines.append(f"| {name} | {_f(d['last_half']['mean'], 4)} | [{_f(lo, 4)}, {_f(hi, 4)}] | "
                     f"[{_f(li, 4)}, {_f(hi2, 4)}] | {_f(d['all']['mean'], 4)} |")
    lines += ["", "Learning curve (mean expected clicks per slate per window of "
              f"{result['rounds'] // result['windows']} rounds):", "",
              "| window | " + " | ".join(POLICIES) + " | explored share | learned_total |",
              "| --- | " + " | ".join("---" for _ in POLICIES) + " | --- | --- |"]
    samples = svc["learning"]
    for w, (start, end) in enumerate(result["window_rounds"]):
        learned = max((s.get("learned_total") or 0 for s in samples if s["round"] <= end), default=0)
        lines.append(f"| {start + 1}-{end} | " + " | ".join(_f(pol[name]["curve"][w]) for name in POLICIES) +
                     f" | {_f(svc['explored_share_per_window'][w], 3)} | {learned} |")
    lat = svc["latency_ms"]
    strategies = ", ".join(f"{k} {v}" for k, v in sorted(svc["strategies"].items(), key=lambda kv: -kv[1]))
    lines += ["", f"Service: /recommend p50 {_f(lat['p50'], 1)} ms, p99 {_f(lat['p99'], 1)} ms (one client, "
                  f"keep-alive); {svc['recommend_ok']} answers 200, errors {svc['recommend_errors'] or 'none'}; "
                  f"degraded {_f(100 * svc['degraded_share'], 2)} %; served by: {strategies}; items flagged explored "
                  f"{_f(100 * svc['explored_share'], 1)} %; model versions {svc['model_versions']}; "
                  f"rewards learned (GET /learning learned_total) at the end: {svc['learned_total']}; "
                  f"feedback statuses {svc['feedback_status']}, events statuses {svc['events_status']}; "
                  f"excluded items returned: {svc['excluded_returned']}; clicks drawn {svc['clicks_drawn']} "
                  f"({_f(svc['clicks_per_slate'], 3)} per slate); {svc['rounds_per_second']} rounds/s."]
    ab = result.get("ab")
    if ab:
        t, h = ab["arms"]["personalized"], ab["arms"]["holdout"]
        lo, hi = ab["lift_ci95"]
        lines += ["", f"A/B holdout (last half, from the truth): personalized {_f(t['mean'])} clicks per slate "
                      f"({t['rounds']} rounds), holdout {_f(h['mean'])} ({h['rounds']} rounds): lift "
                      f"{_f(100 * ab['lift'], 1)} % [{_f(100 * lo, 1)} %, {_f(100 * hi, 1)} %]."]
        service_view = meta.get("experiments_end") or {}
        if service_view.get("lift") is not None:
            lines += [f"The service's own `GET /experiments` at the end: {json.dumps(service_view.get('lift'))}."]
    timing = meta.get("seconds", {})
    if timing:
        lines += ["", "Timings (s): " + ", ".join(f"{k} {v}" for k, v in timing.items()) + "."]
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mids = [(a + b) / 2 for a, b in result["window_rounds"]]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1.4]})
    for name in POLICIES:
        top.plot(mids, result["policies"][name]["curve"], marker="o", lw=2.5 if name == "banditrec" else 1.2,
                 label=name)
    top.set_ylabel("expected clicks per slate")
    top.set_title(f"MovieLens 100k over HTTP, flow {result['flow']}")
    top.legend(fontsize=8)
    top.grid(alpha=0.3)
    bottom.plot(mids, result["service"]["explored_share_per_window"], marker="o", color="tab:gray",
                label="explored share")
    learned = [(s["round"], s.get("learned_total") or 0) for s in result["service"]["learning"]]
    twin = bottom.twinx()
    twin.plot([r for r, _ in learned], [v for _, v in learned], color="tab:red", label="learned_total")
    bottom.set_ylabel("explored share")
    twin.set_ylabel("rewards learned", color="tab:red")
    bottom.set_xlabel("round")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_rounds(path: Path, log: RoundLog, base: dict[str, np.ndarray], ml: MovieLens) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["round", "user_id", "status", "strategy", "model_version", "returned", "explored",
                         "clicks", "latency_ms", *POLICIES])
        for r in range(len(log.users)):
            writer.writerow([r, ml.user_ids[log.users[r]], int(log.status[r]), log.strategy[r],
                             int(log.model_version[r]), int(log.returned[r]), int(log.explored[r]),
                             int(log.clicks[r]), f"{log.latency_ms[r]:.2f}", f"{log.expected[r]:.5f}",
                             *(f"{base[b][r]:.5f}" for b in BASELINES)])
