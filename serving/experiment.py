"""The A/B holdout: which arm a user is in, and the report that compares the arms.

A user is in the holdout when a hash of (`experiment.salt`, user_id) falls below
`experiment.holdout_share`: the same user always gets the same arm, and a new salt draws a
new assignment. Holdout users get the popularity baseline (`"arm": "holdout"`,
`"strategy": "popularity"`), logged like every other decision.

Counted per arm: decisions and impressions (items shown) when a decision is logged; clicks
(the first reward > 0 of an (event, item)) at /feedback; events, sessions (events further
apart than `experiment.session_gap_s` start a new one), session length, purchases, sessions
with a purchase and revenue (the `value` of purchase events) at /events. The report gives
each arm's rates and the relative lift of the personalized arm over the holdout with a 95 %
confidence interval (normal approximation on the log of the ratio; impressions of one slate
are not independent, so the interval for CTR is somewhat too narrow).
"""

from __future__ import annotations

import hashlib
import math
from statistics import NormalDist

from banditrec.config import ExperimentConfig

# The normal distribution's quantile and tail, from the standard library: the same functions
# as scipy.stats.norm (tests/test_experiment.py compares them), without the 51 MB that
# importing scipy.stats adds to every worker.
_NORMAL = NormalDist()

TREATMENT, HOLDOUT = "personalized", "holdout"
HOLDOUT_SCOPE = "arm:holdout"  # the holdout's own popularity list: the build's history + its users' events


def arm_of(user_id: str, cfg: ExperimentConfig) -> str:
    """The user's arm: deterministic in (salt, user_id).

    >>> cfg = ExperimentConfig(holdout_share=0.5, salt="s")
    >>> arm_of("u1", cfg) == arm_of("u1", cfg)
    True
    >>> arm_of("u1", ExperimentConfig(holdout_share=0.0))
    'personalized'
    """
    if cfg.holdout_share <= 0:
        return TREATMENT
    return HOLDOUT if in_share(cfg.salt, user_id, cfg.holdout_share) else TREATMENT


def in_share(salt: str, user_id: str, share: float) -> bool:
    """Whether a hash of (salt, user_id) falls below `share`: the same user, the same answer."""
    digest = hashlib.blake2b(f"{salt}\x1f{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64 < share


def _rate(x: float, n: float) -> float | None:
    return x / n if n else None


def _ratio_lift(t: tuple[float, float], h: tuple[float, float], z: float) -> dict | None:
    """Lift of proportion t = (successes, trials) over h: ratio - 1 with a 95 % interval."""
    (xt, nt), (xh, nh) = t, h
    if min(xt, xh) <= 0 or min(nt, nh) <= 0:
        return None
    log_ratio = math.log((xt / nt) / (xh / nh))
    se = math.sqrt(max(1 / xt - 1 / nt + 1 / xh - 1 / nh, 0.0))
    return _lift(log_ratio, se, z)


def _mean_lift(t: tuple[float, float, float], h: tuple[float, float, float], z: float) -> dict | None:
    """Lift of a per-session mean, from (sum, sum of squares, sessions) per arm."""
    parts = []
    for total, squares, n in (t, h):
        if n < 2 or total <= 0:
            return None
        mean = total / n
        var = max(squares / n - mean * mean, 0.0) * n / (n - 1)
        parts.append((mean, var / n))
    (mt, vt), (mh, vh) = parts
    return _lift(math.log(mt / mh), math.sqrt(vt / mt**2 + vh / mh**2), z)


def _lift(log_ratio: float, se: float, z: float) -> dict | None:
    if not (math.isfinite(log_ratio) and math.isfinite(se)):
        return None
    if se > 0:
        p = 2 * (1 - _NORMAL.cdf(abs(log_ratio) / se))
    else:  # no spread at all: equal arms are not different, unequal ones cannot be judged
        p = 1.0 if log_ratio == 0 else None

    def lift(x: float) -> float:
        return round(math.expm1(min(x, 700.0)), 4)  # (e^700 is near float's limit)

    return {"lift": lift(log_ratio), "ci95": [lift(log_ratio - z * se), lift(log_ratio + z * se)],
            "p_value": None if p is None else round(p, 6)}


def arm_summary(c: dict[str, float]) -> dict:
    sessions = c.get("sessions", 0.0)
    return {"decisions": int(c.get("decisions", 0)), "impressions": int(c.get("impressions", 0)),
            "clicks": int(c.get("clicks", 0)), "ctr": _rate(c.get("clicks", 0), c.get("impressions", 0)),
            "events": int(c.get("events", 0)), "sessions": int(sessions),
            "purchases": int(c.get("purchases", 0)), "converted_sessions": int(c.get("converted_sessions", 0)),
            "conversion_rate": _rate(c.get("converted_sessions", 0), sessions),
            "revenue": round(c.get("revenue", 0.0), 2), "revenue_per_session": _rate(c.get("revenue", 0.0), sessions),
            "session_length_s": _rate(c.get("duration", 0.0), sessions),
            "events_per_session": _rate(c.get("events", 0.0), sessions)}


def report(counts: dict[str, dict[str, float]], cfg: ExperimentConfig) -> dict:
    """Each arm's counts and rates, and the personalized arm's lift over the holdout."""
    z = _NORMAL.inv_cdf(0.975)
    t, h = counts.get(TREATMENT, {}), counts.get(HOLDOUT, {})
    g = lambda c, k: c.get(k, 0.0)  # noqa: E731
    lift = {
        "ctr": _ratio_lift((g(t, "clicks"), g(t, "impressions")), (g(h, "clicks"), g(h, "impressions")), z),
        "conversion_rate": _ratio_lift((g(t, "converted_sessions"), g(t, "sessions")),
                                       (g(h, "converted_sessions"), g(h, "sessions")), z),
        "revenue_per_session": _mean_lift((g(t, "revenue"), g(t, "revenue_sq"), g(t, "sessions")),
                                          (g(h, "revenue"), g(h, "revenue_sq"), g(h, "sessions")), z),
        "session_length": _mean_lift((g(t, "duration"), g(t, "duration_sq"), g(t, "sessions")),
                                     (g(h, "duration"), g(h, "duration_sq"), g(h, "sessions")), z),
    }
    return {"experiment": cfg.salt, "holdout_share": cfg.holdout_share, "session_gap_s": cfg.session_gap_s,
            "arms": {TREATMENT: arm_summary(t), HOLDOUT: arm_summary(h)}, "lift": lift,
            "lift_is": "personalized / holdout - 1, with a 95 % confidence interval; null until both arms have data"}


def format_report(result: dict) -> str:
    """The report as a markdown table (`banditrec report`, `simulate --http`)."""
    def fmt(value, digits=4):
        return "n/a" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    rows = [("decisions", "decisions"), ("impressions", "impressions"), ("clicks", "clicks"), ("CTR", "ctr"),
            ("sessions", "sessions"), ("conversion rate (sessions with a purchase)", "conversion_rate"),
            ("revenue per session", "revenue_per_session"), ("session length (s)", "session_length_s")]
    arms = result["arms"]
    lines = [f"experiment {result['experiment']!r}: holdout share {result['holdout_share']:g}", "",
             "| | personalized | holdout | lift (95 % CI) |", "| --- | --- | --- | --- |"]
    lifts = {"ctr": "ctr", "conversion_rate": "conversion_rate", "revenue_per_session": "revenue_per_session",
             "session_length_s": "session_length"}
    for label, key in rows:
        lift = result["lift"].get(lifts.get(key, ""), None)
        text = "" if key not in lifts else "n/a" if lift is None else \
            f"{lift['lift']:+.1%} ({lift['ci95'][0]:+.1%} to {lift['ci95'][1]:+.1%})"
        lines.append(f"| {label} | {fmt(arms['personalized'][key])} | {fmt(arms['holdout'][key])} | {text} |")
    return "\n".join(lines)
