"""Gunicorn serves with threads: concurrent recommends, feedback and upserts must not error."""

from __future__ import annotations

import threading

from serving import put_item
from serving.feedback import feedback
from serving.recommend import recommend


def test_concurrent_requests_and_upserts_do_not_error(build, open_service):
    service = open_service(build(retrieval={"n_candidates": 50, "fresh_candidates": 20}))
    errors: list[BaseException] = []

    def guarded(fn):
        def run():
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)
        return run

    def upserts(prefix):
        for n in range(150):
            put_item(service, f"{prefix}{n}", {"category": "books", "title": f"book {n}", "in_stock": n % 7 != 0})

    def requests(user):
        for _ in range(150):
            out = recommend(service, {"user_id": user, "k": 5})
            feedback(service, {"event_id": out["event_id"], "item_id": out["items"][0]["item_id"], "reward": 1})

    threads = [threading.Thread(target=guarded(fn)) for fn in
               (lambda: upserts("a"), lambda: upserts("b"), lambda: requests("u1"), lambda: requests("nobody"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung (a deadlock?)"
    assert not errors, errors[:3]
    assert service.learner.learned == 300
    assert len(service.catalog) == 400 + 300
