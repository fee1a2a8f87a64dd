"""Where a request's time goes: a lap timer passed down the request path.

    laps = Laps()
    ...fetch the user state...
    laps("user_state")      # the time since the previous lap (or since Laps()) goes to "user_state"

A lap costs one `perf_counter` call and a dict update (well under a microsecond), so every
request carries one; the benchmarks read them per stage, the metrics endpoint can too.
`NO_LAPS` ignores everything, for callers that do not care.
"""

from __future__ import annotations

from time import perf_counter

# The stages of POST /recommend, in request order (see serving/recommend.py, serving/decide.py).
RECOMMEND_STAGES = ("parse", "user_state", "query_vector", "retrieval", "filter", "features", "vw_score", "replicas",
                    "slate", "decision_log", "serialise")


class Laps:
    __slots__ = ("t", "stages")

    def __init__(self) -> None:
        self.t = perf_counter()
        self.stages: dict[str, float] = {}

    def __call__(self, stage: str) -> None:
        now = perf_counter()
        self.stages[stage] = self.stages.get(stage, 0.0) + (now - self.t)
        self.t = now

    def ms(self) -> dict[str, float]:
        return {stage: seconds * 1000.0 for stage, seconds in self.stages.items()}


class _NoLaps(Laps):
    __slots__ = ()

    def __call__(self, stage: str) -> None:
        pass


NO_LAPS = _NoLaps()
