"""Counters of the A/B holdout: one hash per experiment (salt), fields `<arm>:<counter>`, and
each user's current session (for sessions, their length and revenue)."""

from __future__ import annotations

from store.base import guarded, in_pipeline, text
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
    def count_click(self, arms: list[tuple[str, str]], counts: dict[str, float], item_id: str, position: int,
                    user_id: str | None = None, attribution_ttl_s: float = 3600.0) -> None:
        """A decision's first click of an item, in one round trip: `counts` for each (experiment,
        arm) it was served in, and the item's engagement at `position` (`count_engaged`)."""
        pipe = self.client.pipeline(transaction=False)
        for salt, arm in arms:
            self.queue_arm_counts(pipe, salt, arm, counts)
        self.queue_engaged(pipe, item_id, position, user_id, attribution_ttl_s)
        pipe.execute()

    def queue_first_click(self, pipe, event_id: str, item_id: str, ttl_s: float) -> None:
        """Queue on `pipe` whether (event_id, item_id) is clicked for the first time: the HSETNX's
        answer (1 the first time; atomic, so concurrent retries agree), then the PEXPIRE's."""
        key = self.key("clicked", "{" + event_id + "}")
        pipe.hsetnx(key, item_id, 1)
        pipe.pexpire(key, max(1, int(ttl_s * 1000)))

    def queue_session(self, pipe, salt: str, user_id: str, ts: float, gap_s: float, revenue: float,
                      purchase: bool) -> None:
        """Queue one event of a user on `pipe`: it extends their session (or starts one); its
        answer is what the event adds to the arm's counters, for `count_session`."""
        in_pipeline(self._session, pipe, [self.key("sess", salt, "{" + user_id + "}")],
                    [repr(float(ts)), repr(float(gap_s)), repr(float(revenue)), int(purchase),
                     max(1, int(gap_s * 2000))])

    @guarded
    def count_session(self, salt: str, arm: str, added: list, purchase: bool, once: Once | None = None) -> None:
        """Count an event for the arm: `added`, the session script's answer (`queue_session`).
        With `once`, the counting is marked done; the session itself is not: a retry after the
        counting failed extends the session once more (its revenue added again), best effort."""
        new, dur, dur2, rev, rev2, converted = (float(x) for x in added)
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
