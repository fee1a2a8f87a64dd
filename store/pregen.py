"""Pre-generated slates for inactive users (the homepage cache) and when each is due."""

from __future__ import annotations

import json

from store.base import guarded, guarded_fast, text


class PregenOps:
    @guarded
    def put_pregen(self, user_id: str, slate: dict, due: float, ttl_s: float) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self._ukey("pregen", user_id), json.dumps(slate), px=max(1, int(ttl_s * 1000)))
        pipe.zadd(self.key("pregen-due"), {user_id: due})
        pipe.execute()

    @guarded_fast
    def get_pregen(self, user_id: str) -> dict | None:
        raw = self.fast.get(self._ukey("pregen", user_id))
        return json.loads(raw) if raw else None

    @guarded_fast
    def schedule_pregen(self, user_id: str, due: float) -> None:
        """Ask the background refresher for a slate (keeps an earlier due time if there is one)."""
        self.fast.zadd(self.key("pregen-due"), {user_id: due}, nx=True)

    @guarded
    def drop_pregen(self, user_id: str) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(self._ukey("pregen", user_id))
        pipe.zrem(self.key("pregen-due"), user_id)
        pipe.execute()

    @guarded
    def due_pregen(self, now: float, n: int) -> list[str]:
        return [text(u) for u in self.client.zrangebyscore(self.key("pregen-due"), "-inf", now, start=0, num=n)]
