"""banditrec itself: the real Service (VW, Annoy, Redis) driven through the functions the
HTTP routes call, on the simulator's clock; or a running server over HTTP (`--http`).

The simulated client behaves as the README asks a client to: it marks every shown item as
seen, reports clicks and purchases as rewards (and as events), and says nothing about the
rest, which then get the default reward when the wait is over.
"""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.parse
import uuid
from pathlib import Path

from banditrec.build import STEPS, run_build
from banditrec.config import Config, from_dict, load_config, to_dict
from banditrec.errors import Gone
from serving import Service, put_item, put_user, record_event
from serving.feedback import feedback
from serving.recommend import recommend
from serving.rewards import close_due
from simulations.policies.base import Policy
from store import Store, make_client


def variant_config(base: Config, spec: str, service_sections: dict) -> Config:
    """`banditrec[:strategy][:noboost]` on top of the scenario's service sections."""
    data = to_dict(base)
    for section, values in service_sections.items():
        data.setdefault(section, {}).update(values)
    for part in spec.split(":")[1:]:
        if part == "noboost":
            data["fresh"]["boost"] = 0.0
        else:
            data["exploration"]["strategy"] = part
    return from_dict(data)


class Banditrec(Policy):
    def __init__(self, spec: str, base: Config, service_sections: dict, redis_url: str):
        self.name = spec
        self.config = variant_config(base, spec, service_sections)
        self.redis_url = redis_url
        self.now = 0.0

    def setup(self, world, seed, workdir: Path):
        super().setup(world, seed, workdir)
        self.seed = seed
        config = self.config.replace(data={"dir": str(workdir / "data")})
        self.store = Store(make_client(self.redis_url, config.redis), prefix=f"sim-{uuid.uuid4().hex[:10]}")
        self.now = world.start
        run_build(config, self.store, **world.write_initial(workdir / "input"), now=world.start, progress=False)
        self.service = Service.open(config, store=self.store, start_threads=False, build=STEPS)
        self.service.clock = lambda: self.now
        self._rebuilt_at = world.start

    def apply(self, change, now):
        self.now = now
        kind, doc = change
        if kind in ("item", "stock_out"):
            body = {k: v for k, v in doc.items() if k not in ("item_id", "published_at")}
            put_item(self.service, doc["item_id"], body)  # published now, on the simulated clock
        else:
            put_user(self.service, doc["user_id"], {k: v for k, v in doc.items() if k != "user_id"})

    def recommend(self, user, context, k, now):
        self.now = now
        event_id = f"sim-{self.seed}-{self.world.current_round}"  # seeds the draws: runs replay exactly
        out = recommend(self.service, {**self.request(user, context, k), "event_id": event_id})
        items = [i["item_id"] for i in out["items"]]
        if items:
            feedback(self.service, {"event_id": out["event_id"], "seen": items})
        return out["event_id"], [int(i[1:]) for i in items]

    def reward(self, handle, item, position, reward, now):
        self.now = now
        if reward > 0:  # silence is the default reward, learned when the wait is over
            try:
                feedback(self.service, {"event_id": handle, "item_id": f"i{item}", "reward": reward})
            except Gone:
                pass  # arrived after the reward wait: lost, as it would be for a real client

    def observe(self, user, item, kind, now, value=None):
        self.now = now
        event = {"user_id": f"u{user}", "item_id": f"i{item}", "type": kind, "timestamp": now}
        record_event(self.service, event if value is None else {**event, "value": value})

    def tick(self, now):
        self.now = now
        close_due(self.service, now=now)
        interval = self.config.index.rebuild_interval_s
        if interval and now - self._rebuilt_at >= interval:
            self._rebuilt_at = now
            self.service.rebuild()

    def close(self):
        self.service.close()
        self.store.delete_all()
        self.store.close()


class BanditrecHTTP(Policy):
    """A running banditrec server, over HTTP. It keeps its own (real) clock, so rewards are
    sent at once rather than late, and its config is whatever it was started with. Events
    carry the simulated time, moved as a whole so that the run ends at the moment it
    started on the server's clock: the experiment's sessions and the histories keep the
    world's spacing (sent at the server's now, a day of visits would fall into one session)
    and no event lies in the server's future. The server's live-session features compare
    with its real clock, so they see most of that past as old. Use a server dedicated to the
    simulation: the world's catalog and users are PUT into it (ids i0, i1, ... and u0, u1,
    ...), and items it knows beyond those are not scored."""

    def __init__(self, url: str):
        parsed = urllib.parse.urlparse(url)
        self.name = f"banditrec@{parsed.netloc}"
        self._conn = http.client.HTTPConnection(parsed.hostname, parsed.port or 80, timeout=30)

    def _call(self, method, path, body=None):
        self._conn.request(method, path, json.dumps(body) if body is not None else None,
                           {"Content-Type": "application/json"})
        response = self._conn.getresponse()
        payload = json.loads(response.read() or b"{}")
        if response.status >= 500:
            raise RuntimeError(f"{method} {path}: {response.status} {payload}")
        return response.status, payload

    def setup(self, world, seed, workdir):
        super().setup(world, seed, workdir)
        self.offset = time.time() - world.clock(world.rounds)  # simulated time -> the server's past
        for doc in world.initial_items:
            self._call("PUT", f"/items/{urllib.parse.quote(doc['item_id'])}",
                       {k: v for k, v in doc.items() if k != "item_id"})
        for u in world.active_users:
            profile = world.truth.users[int(u)]
            self._call("PUT", f"/users/{profile['user_id']}", {k: v for k, v in profile.items() if k != "user_id"})
        for user_id, item_id, kind, ts in world.initial_log[-5000:]:  # the recent history, as events
            self._call("POST", "/events", {"user_id": user_id, "item_id": item_id, "type": kind,
                                           "timestamp": float(ts) + self.offset})

    def apply(self, change, now):
        kind, doc = change
        if kind in ("item", "stock_out"):
            self._call("PUT", f"/items/{doc['item_id']}",
                       {k: v for k, v in doc.items() if k not in ("item_id", "published_at")})
        else:
            self._call("PUT", f"/users/{doc['user_id']}", {k: v for k, v in doc.items() if k != "user_id"})

    def recommend(self, user, context, k, now):
        _, out = self._call("POST", "/recommend", self.request(user, context, k))
        known = len(self.world.truth.items)  # a server may hold items the simulated world does not know
        items = [i["item_id"] for i in out["items"]
                 if re.fullmatch(r"i\d+", i["item_id"]) and int(i["item_id"][1:]) < known]
        if items:
            self._call("POST", "/feedback", {"event_id": out["event_id"], "seen": items})
        return out["event_id"], [int(i[1:]) for i in items]

    def reward(self, handle, item, position, reward, now):
        if reward > 0:
            self._call("POST", "/feedback", {"event_id": handle, "item_id": f"i{item}", "reward": reward})

    def observe(self, user, item, kind, now, value=None):
        event = {"user_id": f"u{user}", "item_id": f"i{item}", "type": kind, "timestamp": now + self.offset}
        self._call("POST", "/events", event if value is None else {**event, "value": value})

    def experiment(self) -> dict:
        """The server's A/B report (GET /experiments)."""
        return self._call("GET", "/experiments")[1]

    def close(self):
        self._conn.close()


def base_config(path: str | None) -> Config:
    """The banditrec config the simulated policies start from (defaults, or your file)."""
    return load_config(path, env={})
