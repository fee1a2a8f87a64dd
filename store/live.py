"""The live exploration: an exploration config promoted from a canary, which every serving
process and the learner apply over their config file's `[exploration]` until the file's own
section changes (`serving.live`).

One small JSON value (`model:{model}:exploration`): the exploration section as the config
file writes it, the file's section it was promoted over (`base`), the canary it came from and
when. Written by a promotion, read by every process every `canary.check_s`, dropped by
`banditrec config clear-live`.
"""

from __future__ import annotations

import json

from store.base import guarded

# KEYS[1]: the live exploration. ARGV[1]: a canary id. Deleted only if it is that canary's.
_CLEAR_IF = """
local value = redis.call('GET', KEYS[1])
if value and cjson.decode(value)['canary'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LiveOps:
    def _live_key(self) -> str:
        return self._mkey("exploration")

    @guarded
    def live_exploration(self) -> dict | None:
        """The promoted exploration ({"exploration", "base", "canary", "at"}), or None."""
        raw = self.client.get(self._live_key())
        return None if raw is None else json.loads(raw)

    @guarded
    def set_live_exploration(self, value: dict) -> None:
        self.client.set(self._live_key(), json.dumps(value, sort_keys=True))

    @guarded
    def clear_live_exploration(self, canary_id: str | None = None) -> bool:
        """Drop the promoted exploration (every process goes back to its file's); with
        `canary_id`, only if it is that canary's. True if one was dropped."""
        if canary_id is None:
            return bool(self.client.delete(self._live_key()))
        return bool(self._live_clear(keys=[self._live_key()], args=[canary_id]))
