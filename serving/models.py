"""The model's lifecycle: a fresh model that starts from its priors, a learner from a
snapshot (or a fresh model) for a strategy, and adopting a newer snapshot written elsewhere
(a rollback, a build's warm start, the separate learner's)."""

from __future__ import annotations

import logging
from typing import Callable

from bandit.features import prior_examples
from bandit.linear import LinearModel
from bandit.saved import saved_options
from bandit.strategies import Strategy
from bandit.vw import Replicas, VWModel
from banditrec.config import Config, ModelConfig
from serving.learner import Learner, fitted_replicas
from serving.metrics import LINEAR_DECLINED
from store import Store

log = logging.getLogger("serving.service")


def fresh_model(cfg: ModelConfig) -> VWModel:
    """A model that has learned nothing yet but `model.similarity_prior`,
    `model.popularity_prior`, `model.quality_prior` and `model.session_prior`: it ranks by
    retrieval similarity, popularity, quality and the live session until rewards say otherwise
    (README, "How it works": why a model does not start from all-zero weights)."""
    model = VWModel(cfg.vw_args())
    if max(cfg.similarity_prior, cfg.popularity_prior, cfg.quality_prior, cfg.session_prior) > 0:
        for shared, action, reward in prior_examples(cfg.similarity_prior, cfg.popularity_prior, cfg.quality_prior,
                                                     cfg.session_prior):
            model.learn(shared, action, reward, 1.0 / cfg.offline_weight)  # as firmly whatever the rate
    return model


def make_learner(config: Config, store: Store, strategy: Strategy, snapshot, *, learns: bool = False,
                 replicas: int | None = None, serves: bool = True) -> Learner:
    """A learner for `strategy` from a snapshot (or a fresh model), with `replicas` bootstrap
    replicas (default: as many as the strategy needs; more while an exploration canary needs
    them). Replicas the snapshot lacks start as copies of the model, so switching strategies
    never throws away what was learned. It learns when the serving process learns inline or
    `learns` (the separate learner, which does not serve: `serves` False); else it only serves."""
    args = config.model.vw_args()
    if snapshot is None:
        model, meta = fresh_model(config.model), {"cursor": "0-0", "version": 0, "t": 0, "replica_blobs": []}
    else:
        blob, meta = snapshot
        model = VWModel(args, blob=blob)
    n = strategy.replicas if replicas is None else replicas
    blobs = list(meta.get("replica_blobs", []))[:n]
    serves_only = not (learns or config.server.learns_inline)  # a worker beside a separate learner
    # Scored from the weights (bandit.linear): a worker serves the snapshot unchanged; a process
    # that learns inline keeps its copies exact as it learns; the separate learner scores nothing.
    direct = config.server.direct_scoring and serves
    saved = snapshot[0] if snapshot is not None else None
    from_blobs = None
    if direct and serves_only and blobs:
        model.linear = LinearModel.of(model, saved)
        from_blobs = replicas_from_weights(args, model, saved, blobs)
    if from_blobs is None:
        from_blobs = Replicas.from_blobs(args, blobs) if blobs else None
        if direct:
            read_weights(model, saved, from_blobs, blobs, learns=not serves_only)
    kept = fitted_replicas(from_blobs, n, model, args, learns=not serves_only)
    for replica in kept.models if kept is not None and serves_only else ():
        replica.release()  # scored from its weights only (if it has them): VW's copy is ~5 MB a replica
    return Learner(store, model, config.feedback, cursor=meta["cursor"], version=meta["version"],
                   total=meta.get("t", 0), replicas=kept, importance_weighted=strategy.importance_weighted,
                   enabled=config.learning.mode != "logging_only" and not serves_only,
                   position_bias=config.model.position_bias)


def read_weights(model: VWModel, blob: bytes | None, replicas: Replicas | None, blobs: list[bytes], *,
                 learns: bool = False) -> None:
    """Give a model (and its replicas) a `bandit.linear` copy of its weights: its candidates are
    then scored without VW's text parser (`learns`: a copy the model keeps exact as it learns).
    A model whose weights cannot be read, or do not give VW's scores, is scored through VW
    (logged and counted)."""
    pairs = [(model, blob), *zip(replicas.models if replicas is not None else (), blobs)]
    for one, saved in pairs:
        one.linear = one.linear if one.linear is not None else LinearModel.of(one, saved, learns=learns)
    if any(one.linear is None for one, _ in pairs):
        LINEAR_DECLINED.inc()
        log.warning("model scored through VW's parser: its weights could not be read as a linear model (args %r)",
                    model.args)


def replicas_from_weights(args: str, model: VWModel, blob: bytes | None, blobs: list[bytes]) -> Replicas | None:
    """A serving worker's bootstrap replicas read straight from their saved weights, never
    loaded into VW: the learner saved them with the mean, under its command line, and the
    mean's weights were checked against VW. Loading each into VW and checking it took ~7 ms
    a replica at 1M items here, holding the GIL while the worker's requests waited (~60 ms per
    Thompson adoption). None if the mean has no checked weights or a replica's header (bits,
    label range, command line) or layout differ: then they are loaded and checked one by one."""
    found = saved_options(blob) if blob is not None and model.linear is not None else None
    if found is None:
        return None
    linear = [LinearModel.like(model.linear, blob[:found[1]], one) for one in blobs]
    return None if any(one is None for one in linear) else Replicas([VWModel.released(args, one) for one in linear])


def adopt_latest(config: Config, store: Store, strategy: Strategy, learner: Learner, *, learns: bool,
                 needed: Callable[[], int] | None = None, serves: bool = True) -> bool:
    """Continue from the newest snapshot if it is newer than what `learner` has (any origin:
    the separate learner's, a rollback, a previous learner's last one). `needed()`: how many
    bootstrap replicas to keep (default: the strategy's), asked again when the new model goes in.
    `serves`: as `make_learner`'s."""
    if store.latest_version() <= learner.version:
        return False
    snapshot = store.latest_snapshot()
    if snapshot is None or snapshot[1]["version"] <= learner.version:
        return False
    fresh = make_learner(config, store, strategy, snapshot, learns=learns,
                         replicas=needed() if needed is not None else None, serves=serves)
    learner.adopt(fresh.model, fresh.replicas, snapshot[1], needed=needed, args=config.model.vw_args())
    origin = snapshot[1].get("origin", "learner")
    if origin == "rollback":
        log.info("now at model v%d (rolled back to v%s)", snapshot[1]["version"], snapshot[1].get("from_version"))
    elif origin != "learner" or learns:
        log.info("now at model v%d (%s)", snapshot[1]["version"], origin)
    else:
        log.debug("now at model v%d (%s)", snapshot[1]["version"], origin)
    return True
