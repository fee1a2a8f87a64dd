"""The bandit learns through the app: a seeded world where clicks depend on user x item.

Each round: a random user asks for one item, the world's hidden click model decides the
click, the client sends the reward (1 or 0). We compare the expected click rate (the true
click probability of what was shown) early and late, and against a random choice.
"""

from __future__ import annotations

import numpy as np
import pytest

from app import create_app

DEVICES = ("mobile", "desktop", "tablet")


@pytest.mark.slow
def test_click_rate_rises_well_above_the_first_rounds_and_random(build, open_service, small_world):
    client = create_app(deps=open_service(build())).test_client()
    rng = np.random.default_rng(2024)
    n_users, n_items = len(small_world.users), len(small_world.items)
    shown_p, random_p = [], []
    for r in range(3000):
        user = int(rng.integers(n_users))
        context = {"device": DEVICES[int(rng.integers(3))]}
        body = client.post("/recommend", json={"user_id": f"u{user}", "k": 1, "context": context,
                                               "event_id": f"round-{r}"}).get_json()
        item = body["items"][0]["item_id"]
        p = small_world.click_probability(user, [int(item[1:])], context)[0]
        shown_p.append(p)
        random_p.append(small_world.click_probability(user, np.arange(n_items), context).mean())
        reward = float(rng.random() < p)
        assert client.post("/feedback", json={"event_id": body["event_id"], "item_id": item,
                                               "reward": reward}).status_code == 200
    first, last, rand = np.mean(shown_p[:300]), np.mean(shown_p[-1000:]), np.mean(random_p)
    print(f"expected click rate: first {first:.3f}, last {last:.3f}, random {rand:.3f}")
    assert last > first + 0.05, (first, last)
    assert last > 2.0 * rand, (last, rand)
