"""What a simulation reports: per policy, means and 95 % confidence intervals over seeds,
per-round CSV, a markdown table, and plots (cumulative regret, click rate, fresh exposure)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from scipy import stats

from simulations.runner import RunResult

COLUMNS = [("regret", "cumulative regret"), ("ctr", "CTR"), ("reward_per_visit", "reward / visit"),
           ("fresh_share", "fresh share"), ("reached_20", "high-appeal new items shown 20×"),
           ("time_to_20", "rounds to 20 shows (censored)"),
           ("cold_ctr", "cold-user CTR (first 10 visits)"), ("decisions_per_s", "decisions / s")]


def mean_ci(values) -> tuple[float, float]:
    """Mean and the half-width of its 95 % confidence interval (t distribution), over the
    finite values (a metric a run could not measure, such as cold-user CTR without new
    users, is NaN and left out)."""
    values = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    if len(values) == 0:
        return float("nan"), float("nan")
    if len(values) == 1:
        return float(values[0]), float("nan")
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean()), float(half)


def per_run(result: RunResult) -> dict[str, float]:
    impressions = result.impressions.sum()
    return {"regret": float(result.regret.sum()), "ctr": result.clicks.sum() / impressions if impressions else 0.0,
            "reward_per_visit": float(result.reward.mean()),
            "fresh_share": result.fresh.sum() / impressions if impressions else 0.0,
            "time_to_20": result.time_to_20, "reached_20": result.reached_20, "cold_ctr": result.cold_ctr,
            "decisions_per_s": result.decisions_per_s}


def summarize(results: list[RunResult]) -> dict[str, dict[str, tuple[float, float]]]:
    """policy -> metric -> (mean, CI half-width), policies in the order they first appear."""
    by_policy: dict[str, list[dict]] = {}
    for result in results:
        by_policy.setdefault(result.policy, []).append(per_run(result))
    return {policy: {key: mean_ci([run[key] for run in runs]) for key, _ in COLUMNS}
            for policy, runs in by_policy.items()}


def markdown(summary: dict, title: str) -> str:
    lines = [f"### {title}", "", "| policy | " + " | ".join(label for _, label in COLUMNS) + " |",
             "| --- " * (len(COLUMNS) + 1) + "|"]
    for policy, metrics in sorted(summary.items(), key=lambda kv: kv[1]["regret"][0]):
        cells = []
        for key, _ in COLUMNS:
            mean, half = metrics[key]
            digits = (3 if key in ("ctr", "fresh_share", "cold_ctr", "reward_per_visit")
                      else 2 if key == "reached_20" else 0)
            cells.append("n/a" if not np.isfinite(mean) else
                         f"{mean:.{digits}f}" + (f" ± {half:.{digits}f}" if np.isfinite(half) else ""))
        lines.append(f"| {policy} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_runs(results: list[RunResult], path: Path) -> None:
    """One row per (policy, seed) with the summary's metrics, for paired comparisons across runs."""
    keys = [key for key, _ in COLUMNS]
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["policy", "seed", *keys])
        for res in results:
            metrics = per_run(res)
            writer.writerow([res.policy, res.seed, *(round(float(metrics[key]), 6) for key in keys)])


def write_csv(results: list[RunResult], path: Path, every: int) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["policy", "seed", "round", "cumulative_regret", "ctr_window", "fresh_share_window"])
        for res in results:
            cum = np.cumsum(res.regret)
            for end in range(every, len(res.regret) + 1, every):
                window = slice(end - every, end)
                shown = res.impressions[window].sum()
                writer.writerow([res.policy, res.seed, end, round(float(cum[end - 1]), 4),
                                 round(float(res.clicks[window].sum() / shown), 5) if shown else 0.0,
                                 round(float(res.fresh[window].sum() / shown), 5) if shown else 0.0])


def plot(results: list[RunResult], directory: Path, title: str, every: int) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_policy: dict[str, list[RunResult]] = {}
    for res in results:
        by_policy.setdefault(res.policy, []).append(res)
    paths = []
    for name, series, ylabel in (("regret", lambda r: np.cumsum(r.regret), "cumulative regret"),
                                 ("ctr", lambda r: _windowed(r.clicks, r.impressions, every), "click rate"),
                                 ("fresh", lambda r: _windowed(r.fresh, r.impressions, every), "share of new items")):
        fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
        for policy, runs in by_policy.items():
            data = np.vstack([series(r) for r in runs])
            x = np.arange(1, data.shape[1] + 1) * (1 if name == "regret" else every)
            mean = data.mean(axis=0)
            ax.plot(x, mean, label=policy)
            if len(runs) > 1:
                half = stats.t.ppf(0.975, len(runs) - 1) * data.std(axis=0, ddof=1) / np.sqrt(len(runs))
                ax.fill_between(x, mean - half, mean + half, alpha=0.2)
        ax.set_xlabel("round")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title}: {ylabel}")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = directory / f"{name}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def _windowed(numerator, denominator, every):
    n = len(numerator) // every * every
    num = numerator[:n].reshape(-1, every).sum(axis=1)
    den = denominator[:n].reshape(-1, every).sum(axis=1)
    return np.divide(num, den, out=np.zeros_like(num, dtype=float), where=den > 0)
