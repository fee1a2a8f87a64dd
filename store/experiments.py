"""Counters of the A/B holdout: one hash per experiment (salt), fields `<arm>:<counter>`, and
each user's current session (for sessions, their length and revenue)."""

from __future__ import annotations

from store.base import guarded, text
from store.once import Once, mark

# KEYS[1]: the user's session hash. ARGV: ts, gap_s, revenue, purchase (0/1), ttl_ms.
# Returns the changes to the arm's counters as strings (Lua numbers would be truncated):
# new session (0/1), duration added, duration^2 added, revenue added, revenue^2 added,
# first purchase of the session (0/1). Sums of squares of per-session totals give the
# variance of per-session means (for confidence intervals) without keeping every session.
_SESSION = """
local function num(x) return string.format('%.17g', x) end
local ts, gap = tonumber(ARGV[1]), tonumber(ARGV[2])
local revenue, purchase = tonumber(ARGV[3]), tonumber(ARGV[4])
local last = tonumber(redis.call('HGET', KEYS[1], 'last') or '-1')
local new, dur, rev, conv, step = 0, 0, 0, 0, 0
if last < 0 or ts - last > gap then
  new = 1
else
  dur = tonumber(redis.call('HGET', KEYS[1], 'dur') or '0')
  rev = tonumber(redis.call('HGET', KEYS[1], 'rev') or '0')
  conv = tonumber(redis.call('HGET', KEYS[1], 'conv') or '0')
  if ts > last then step = ts - last end
end
local ndur, nrev = dur + step, rev + revenue
local nconv = conv
if purchase > 0 then nconv = 1 end
if new == 1 or ts > last then last = ts end
redis.call('HSET', KEYS[1], 'last', num(last), 'dur', num(ndur), 'rev', num(nrev), 'conv', nconv)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {num(new), num(step), num(step * (ndur + dur)), num(revenue), num(revenue * (nrev + rev)), num(nconv - conv)}
"""


class ExperimentOps:
    def _xkey(self, salt: str) -> str:
        return self.key("exp", "{" + salt + "}")

    def queue_arm_counts(self, pipe, salt: str, arm: str, counts: dict[str, float]) -> None:
        """Add the increments of an arm's counters to `pipe` (zeros are skipped)."""
        for name, value in counts.items():
            if value:
                pipe.hincrbyfloat(self._xkey(salt), f"{arm}:{name}", value)

    @guarded
    def count_arm(self, salt: str, arm: str, counts: dict[str, float]) -> None:
        pipe = self.client.pipeline(transaction=False)
        self.queue_arm_counts(pipe, salt, arm, counts)
        pipe.execute()

    @guarded
    def first_click(self, event_id: str, item_id: str, ttl_s: float) -> bool:
        """True the first time (event_id, item_id) is clicked (atomic: concurrent retries agree)."""
        key = self.key("clicked", "{" + event_id + "}")
        pipe = self.client.pipeline(transaction=False)
        pipe.hsetnx(key, item_id, 1)
        pipe.pexpire(key, max(1, int(ttl_s * 1000)))
        return bool(pipe.execute()[0])

    @guarded
    def session_event(self, salt: str, arm: str, user_id: str, ts: float, gap_s: float, revenue: float,
                      purchase: bool, once: Once | None = None) -> None:
        """One event of a user: extends their session (or starts one) and counts it for the arm
        (with `once`, the counting is marked done; the session itself is not: a retry after the
        counting failed adds the event's revenue to the session once more, best effort)."""
        key = self.key("sess", salt, "{" + user_id + "}")
        new, dur, dur2, rev, rev2, converted = (float(x) for x in self._session(
            keys=[key], args=[repr(float(ts)), repr(float(gap_s)), repr(float(revenue)), int(purchase),
                              max(1, int(gap_s * 2000))]))
        pipe = self.client.pipeline(transaction=False)
        self.queue_arm_counts(pipe, salt, arm, {"events": 1, "sessions": new, "duration": dur, "duration_sq": dur2,
                                                "revenue": rev, "revenue_sq": rev2, "converted_sessions": converted,
                                                "purchases": int(purchase)})
        mark(pipe, once, "session")
        pipe.execute()

    @guarded
    def arm_counts(self, salt: str) -> dict[str, dict[str, float]]:
        """{arm: {counter: value}} of the experiment `salt`."""
        out: dict[str, dict[str, float]] = {}
        for field, value in self.client.hgetall(self._xkey(salt)).items():
            arm, _, name = text(field).partition(":")
            out.setdefault(arm, {})[name] = float(value)
        return out
