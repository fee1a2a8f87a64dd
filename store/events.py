"""What an event changes after its record (`StreamOps.append_event`) and the user's state
(`UserOps.record_user_event`), in one round trip: the user's long-term vector, the item's
counts, the user's session. Three round trips before; each step still marks itself done for a
retry (`store.once`), and the experiment's counting of the session follows with its answer."""

from __future__ import annotations

from typing import Callable, NamedTuple

from store.base import guarded
from store.once import Once


class EventCounts(NamedTuple):
    session: list | None       # the session script's answer, for `count_session` (None: not asked, or it failed)
    session_error: str | None  # why the session script failed (its counting is best effort)


class EventOps:
    @guarded
    def event_counts(self, user_id: str, *, vector: tuple[str, Callable, bytes | None] | None = None,
                     trending: dict | None = None, session: tuple | None = None,
                     once: Once | None = None) -> EventCounts:
        """`vector` (space, step, the vector's bytes as `record_user_event` read them): the
        long-term vector stepped (`update_user_vector`, which it falls back to when another
        event moved the vector meanwhile); `trending`: `bump_trending`'s keyword arguments;
        `session` (salt, ts, gap_s, revenue, purchase): `queue_session`. The vector and the
        counts raise StoreError when Redis refuses them; the session's failure is returned."""
        pipe = self.client.pipeline(transaction=False)
        stepped = vector is not None and self.queue_vector_step(pipe, user_id, vector[0], vector[1], vector[2], once)
        if trending is not None:
            self.queue_trending(pipe, once=once, **trending)
        if session is not None:
            self.queue_session(pipe, session[0], user_id, *session[1:])
        answers = pipe.execute(raise_on_error=False) if len(pipe) else []
        last = answers[-1] if session is not None else None
        refused = [a for a in (answers[:-1] if session is not None else answers) if isinstance(a, Exception)]
        if refused:
            raise refused[0]
        if stepped and not answers[0]:  # another event moved the vector meanwhile: read it and step again
            self.update_user_vector(user_id, vector[0], vector[1], once=once)
        if isinstance(last, Exception):  # (redis-py's error, in its place)
            return EventCounts(None, f"{last.__class__.__name__}: {last}")
        return EventCounts(last, None)
