"""Is there personal signal to learn on real ratings within a benchmark run? In-process.

    .venv/bin/python -m benchmarks.personal_replay --rounds 20000 --seed 1

The world, users, click draws and loop of `benchmarks.quality_replay` (each policy in its own
loop). The policy here learns a biased matrix factorisation, refitted every `--every` rounds
by alternating least squares on everything it could know: the history (rating >= 4 a click,
else a view; label 1 or 0) and every live impression (the click divided by the position's
discount, weighted by it), around the items' history quality put on a click's scale. It
ranks each user's allowed items by the model (greedy). Compared with the quality-only
ranking (`quality_replay`'s `live`) and the best non-personalised ranking, it says whether
what a service sees of a user in ~21 visits predicts more than item quality does.
"""

from __future__ import annotations

import numpy as np

from bandit.features import quality
from benchmarks.quality_replay import arguments, setup


def _als(users, items, y, w, shape, rank: int, reg: float, sweeps: int = 6, seed: int = 0):
    n_users, n_items = shape
    rng = np.random.default_rng(seed)
    P, Q = rng.normal(0, 0.05, (n_users, rank)), rng.normal(0, 0.05, (n_items, rank))
    bu, bi = np.zeros(n_users), np.zeros(n_items)
    by_user = np.split(np.argsort(users, kind="stable"), np.cumsum(np.bincount(users, minlength=n_users))[:-1])
    by_item = np.split(np.argsort(items, kind="stable"), np.cumsum(np.bincount(items, minlength=n_items))[:-1])
    eye = reg * np.eye(rank + 1)

    def solve(rows, other, own_bias_target):
        X = np.hstack([np.ones((len(rows), 1)), other])
        W = w[rows][:, None]
        return np.linalg.solve(X.T @ (W * X) + eye, X.T @ (w[rows] * own_bias_target))

    for _ in range(sweeps):
        for u, rows in enumerate(by_user):
            if len(rows):
                sol = solve(rows, Q[items[rows]], y[rows] - bi[items[rows]])
                bu[u], P[u] = sol[0], sol[1:]
        for i, rows in enumerate(by_item):
            if len(rows):
                sol = solve(rows, P[users[rows]], y[rows] - bu[users[rows]])
                bi[i], Q[i] = sol[0], sol[1:]
    return bu[:, None] + bi[None, :] + P @ Q.T


def replay(rounds: int, seed: int, rank: int = 8, reg: float = 5.0, every: int = 1000, k: int = 10,
           data: str | None = None) -> tuple[float, float]:
    """(last half, whole run) mean expected clicks per slate of the factorisation policy."""
    w = setup(rounds, seed, k, data)
    truth, hist, disc, share = w.truth, w.hist, w.disc, w.share
    n_users, n_items = w.excluded.shape
    base = quality(w.engaged, w.events, share) * (truth.mean_all / share)  # history quality on a click's scale
    log_u, log_i = hist.user.tolist(), hist.item.tolist()
    log_y = (hist.click.astype(float) * truth.mean_all / share).tolist()
    log_w = [1.0] * len(log_u)
    score = np.tile(base, (n_users, 1))
    for r, u in enumerate(w.users.tolist()):
        if r and r % every == 0:
            U, It = np.asarray(log_u), np.asarray(log_i)
            Y, W = np.asarray(log_y), np.asarray(log_w)
            score = base[None, :] + _als(U, It, Y - base[It], W, (n_users, n_items), rank, reg)
        top, clicked = w.serve(r, score[u])
        log_u += [u] * k
        log_i += top.tolist()
        log_y += (clicked / disc).tolist()
        log_w += disc.tolist()
    return w.result()


def main(argv: list[str] | None = None) -> None:
    parser = arguments(__doc__)
    parser.add_argument("--every", type=int, default=1000, help="refit every this many rounds")
    args = parser.parse_args(argv)
    print("| rank, ridge | clicks / slate, last half | whole run |\n| --- | --- | --- |")
    for rank, reg in ((0, 5.0), (8, 5.0), (8, 20.0), (16, 10.0)):
        last, whole = replay(args.rounds, args.seed, rank=rank, reg=reg, every=args.every, data=args.data)
        print(f"| {rank}, {reg:g} | {last:.3f} | {whole:.3f} |", flush=True)


if __name__ == "__main__":
    main()
