"""The policy contract of the simulator: what a recommender must do to be compared."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from simulations.world import SimWorld


class Policy(ABC):
    """One contender. Items and users are the world's indices (item i is "i{i}", user u "u{u}")."""

    name: str = "policy"

    def setup(self, world: SimWorld, seed: int, workdir: Path) -> None:
        """Learn what exists before the run (the world's catalog, users and history)."""
        self.world = world

    def apply(self, change: tuple, now: float) -> None:
        """A catalog or user-base change: ("item", doc), ("stock_out", doc), ("user", profile)."""

    @abstractmethod
    def recommend(self, user: int, context: dict, k: int, now: float) -> tuple[object, list[int]]:
        """A slate for this visit: (a handle for its rewards, item indices best first)."""

    def reward(self, handle, item: int, position: int, reward: float, now: float) -> None:
        """A (late) reward for one shown item; 0 means shown and not clicked."""

    def observe(self, user: int, item: int, kind: str, now: float, value: float | None = None) -> None:
        """An interaction the user made (click, purchase with its value), as a client would report it."""

    def allowed(self, user: int):
        """Items this user may be shown: available, and not excluded by the world's client."""
        allowed = self.world.available.copy()
        allowed[self.world.excluded(user)] = False
        return allowed

    def request(self, user: int, context: dict, k: int) -> dict:
        """A /recommend body for this visit, with the world's exclusions."""
        body = {"user_id": f"u{user}", "context": context, "k": k}
        excluded = self.world.excluded(user)
        if excluded:
            body["exclude"] = [f"i{i}" for i in excluded]
        return body

    def tick(self, now: float) -> None:
        """Periodic housekeeping (every few dozen rounds)."""

    def close(self) -> None:
        pass
