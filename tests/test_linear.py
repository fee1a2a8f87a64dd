"""Direct scoring (`bandit.linear`): a frozen model's weights read from its saved bytes score
candidates as VW does, the build stores the item features hashed, and a serving process that
does not learn draws the same slates with it as through VW's parser."""

from __future__ import annotations

import random

import numpy as np
import pytest

from bandit.features import action_line, action_lines, at_position, item_line
from bandit.linear import ItemFeatures, LinearModel, hash_line, hash_lines
from bandit.saved import dense_weights
from bandit.vw import Replicas, VWModel
from banditrec.config import ModelConfig
from serving import score as score_module
from serving.decide import decide
from serving.records import UserState
from tests.conftest import NOW


def _example(rng: random.Random) -> tuple[str, str, float, float]:
    """A random (shared line, action line, reward, probability) in our namespaces."""
    shared = (f"shared |User age={rng.randrange(5)} taste=t{rng.randrange(9)} |Context device=d{rng.randrange(3)} "
              f"hour={rng.randrange(24)} |Recent cat=t{rng.randrange(9)} len={rng.randrange(4)}")
    action = action_line(f"|Item id=i{rng.randrange(300)} cat=t{rng.randrange(9)} price={rng.randrange(6)}",
                         rng.uniform(-1, 1), rng.uniform(-1, 1), rng.random(), rng.random())
    return shared, action, float(rng.random() < 0.3), rng.choice((0.05, 0.5, 1.0))


def _trained(args: str, n: int = 3000, seed: int = 0) -> VWModel:
    rng = random.Random(seed)
    model = VWModel(args)
    for _ in range(n):
        model.learn(*_example(rng))
    return model


def _candidates(n: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    lines = [f"|Item id=i{j} cat=t{j % 9} price={j % 6}" for j in range(n)]
    extras = {"sims": rng.uniform(-1, 1, n), "live": rng.uniform(-1, 1, n),
              "pops": np.where(rng.random(n) < 0.3, 0.0, rng.random(n)), "quality": rng.random(n)}
    return lines, extras


@pytest.mark.parametrize("bits", [18, 14])
def test_weights_read_from_a_saved_model_score_as_vw_does(bits):
    args = ModelConfig(bits=bits).vw_args()
    model = _trained(args)
    linear = LinearModel.of(model)
    assert linear is not None
    lines, extras = _candidates(500)
    shared = "shared |User age=2 taste=t3 taste=t5 |Context device=d1 hour=7 |Recent cat=t3 len=2 since=1"
    ours = linear.score(shared, ItemFeatures.of_lines(lines), **extras)
    theirs = model.predict(shared, action_lines(lines, np.arange(len(lines)), **extras))
    assert np.ptp(theirs) > 0.05  # a model that learned something: the comparison can fail
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    no_live = {**extras, "live": None}  # a shape without the session feature
    np.testing.assert_allclose(linear.score(shared, ItemFeatures.of_lines(lines), **no_live),
                               model.predict(shared, action_lines(lines, np.arange(len(lines)), **no_live)),
                               atol=1e-5)


def test_a_model_that_learns_keeps_its_copy_of_the_weights_exact():
    """Each update notes the weights it moved (`LinearModel.touched`), read back from VW when
    the copy is read: after many (slate positions learned too), the copy is the model's
    weights, every one, and scores as VW does; replicas that learn each reward a random
    number of times, the places found once, too."""
    args = ModelConfig().vw_args()
    model = _trained(args, n=200)
    replicas = Replicas([_trained(args, n=200, seed=s) for s in (1, 2)])
    for one in [model, *replicas.models]:
        one.linear = LinearModel.of(one, learns=True)
        assert one.linear is not None
    before = model.linear.weights.copy()
    rng = random.Random(5)
    for n in range(500):
        shared, action, reward, p = _example(rng)
        action = at_position(action, rng.randrange(1, 9))
        touched = model.touches(shared, action)
        model.learn(shared, action, reward, p, touched)
        replicas.learn(shared, action, reward, p, seed=n, touched=touched if n % 2 else None)
    assert np.sum(before != model.synced_linear().weights) > 100  # it moved: the comparison below can fail
    for one in [model, *replicas.models]:
        assert one.synced_linear().matches(one.to_bytes())
        assert one.linear.agrees_with(one)
    plain = VWModel(args)
    plain.learn(shared, action, 1.0, 0.5)
    assert plain.linear is None and plain.touches(shared, action) is None  # no copy: nothing to keep


def test_a_copy_is_brought_up_to_date_by_the_updates_themselves_when_nobody_reads_it(monkeypatch):
    """Bounded memory: after `_MOVED_MAX` updates noted, the update reads them back itself."""
    import bandit.vw as vw

    monkeypatch.setattr(vw, "_MOVED_MAX", 7)
    model = _trained(ModelConfig().vw_args(), n=50)
    model.linear = LinearModel.of(model, learns=True)
    rng = random.Random(9)
    for _ in range(6):
        model.learn(*_example(rng))
    assert not model.linear.matches(model.to_bytes()) and len(model._moved) == 6  # noted, not yet read
    model.learn(*_example(rng))
    assert model._moved == [] and model.linear.matches(model.to_bytes())


def test_an_update_whose_weights_cannot_be_located_drops_the_copy_and_is_learned(monkeypatch):
    model = _trained(ModelConfig().vw_args(), n=50)
    model.linear = LinearModel.of(model, learns=True)
    before = model.predict("shared |User age=1", ["|Item id=i1 cat=t1 price=1"])

    def broken(self, shared, action):
        raise ValueError("a value our hasher does not read")

    monkeypatch.setattr(LinearModel, "touched", broken)
    assert model.touches("shared |User a=1", "|Item id=i1") is None
    model.learn("shared |User age=1", "|Item id=i1 cat=t1 price=1", 1.0, 0.5)
    assert model.linear is None and model.synced_linear() is None  # scored through VW from now on
    assert model.predict("shared |User age=1", ["|Item id=i1 cat=t1 price=1"]) != before  # VW learned it


def test_a_model_whose_updates_move_every_weight_gets_no_copy_to_keep():
    """L2 regularisation scales every prediction by what all updates did: a copy could not
    follow it from the weights an update touches."""
    scaled = VWModel(ModelConfig(bits=14, l2=0.01).vw_args())  # not yet scaled: its weights read as they are
    assert LinearModel.of(scaled) is not None and LinearModel.of(scaled, learns=True) is None
    assert LinearModel.of(VWModel(ModelConfig(bits=14).vw_args()), learns=True) is not None


def test_a_model_this_module_cannot_compute_is_declined():
    lrq = _trained(ModelConfig(lrq=("UI4",)).vw_args(), n=200)
    assert LinearModel.of(lrq) is None  # low-rank interactions: scored through VW
    model = _trained(ModelConfig().vw_args(), n=200)
    blob = model.to_bytes()
    assert dense_weights(blob[:-3], model.num_weights()) is None  # not a whole number of weight records
    assert dense_weights(b"not a model", model.num_weights()) is None


def test_the_weights_are_read_under_the_models_own_command_line_not_the_configs():
    trained = _trained(ModelConfig(interactions=("UI", "CI", "RI")).vw_args())
    edited = ModelConfig(interactions=("UI", "CI", "ZI")).vw_args()  # the config changed since it was saved
    blob = trained.to_bytes()
    loaded = VWModel(edited, blob=blob)  # VW keeps the saved model's own interactions
    linear = LinearModel.of(loaded, blob)
    assert linear is not None and linear.crossed == "UCR"
    lines, extras = _candidates(300)
    shared = "shared |User age=2 taste=t3 |Context device=d1 hour=7 |Recent cat=t3 len=2"
    theirs = loaded.predict(shared, action_lines(lines, np.arange(len(lines)), **extras))
    np.testing.assert_allclose(linear.score(shared, ItemFeatures.of_lines(lines), **extras), theirs, atol=1e-5)


def test_stored_hashes_are_the_lines_hashes():
    lines = [item_line({"item_id": f"sku {i}", "category": "shoes" if i % 2 else "hats",
                        "attributes": {"price": 10.0 * i, "brand": "acme", "new": i % 3 == 0}}) for i in range(50)]
    offsets, hashes, values, _ = hash_lines(lines)
    for i, line in enumerate(lines):
        one = hash_line(line)
        assert np.array_equal(hashes[offsets[i]:offsets[i + 1]], one[0])
        assert np.array_equal(values[offsets[i]:offsets[i + 1]], one[1])
    assert hash_lines(["|Item id=a |Pop p:0.5000"]) is None  # a feature outside `Item`: not stored


def test_the_build_stores_hashed_features_and_added_items_are_hashed_when_scored(build, open_service):
    service = open_service(build(server={"workers": 2}))  # a separate learner: this process only serves
    catalog = service.catalog
    assert catalog.bundle.features is not None
    rows = np.array([3, 0, 7, 3])
    owner, hashes, values = catalog.item_features(rows)
    for position, row in enumerate(rows.tolist()):
        expected = hash_line(catalog.lines[row])
        assert sorted(hashes[owner == position].tolist()) == sorted(expected[0].tolist())
    row = catalog.upsert({"item_id": "added-later", "category": "c1", "in_stock": True, "published_at": 0,
                          "attributes": {"colour": "red"}}, np.ones(catalog.dim, dtype=np.float32) / catalog.dim ** 0.5)
    owner, hashes, _ = catalog.item_features(np.array([row, 1]))
    assert sorted(hashes[owner == 0].tolist()) == sorted(hash_line(catalog.lines[row])[0].tolist())


def _learn_and_snapshot(service, rounds: int = 300, snapshot: bool = True) -> None:
    """Rewards for real slates learned into the model and its replicas (each their own Poisson
    draws), then a snapshot: item and crossed weights that are not zero, replicas that differ."""
    rng = random.Random(3)
    learner = service.learner
    for n in range(rounds):
        user = f"u{rng.randrange(150)}"
        state = UserState.from_json(service.store.user_state(user))
        slate = decide(service.ranking(), state, user_id=user, context={"device": rng.choice(("mobile", "web"))},
                       k=5, exclude=frozenset(), now=NOW, event_id=f"train-{n}")
        for item in slate.items:
            reward = float(rng.random() < (0.6 if item.item_id.endswith(("1", "2", "3")) else 0.1))
            learner.model.learn(slate.shared, item.action, reward, item.probability)
            if learner.replicas is not None:
                learner.replicas.learn(slate.shared, item.action, reward, item.probability, rng.randrange(2 ** 32))
    if snapshot:
        learner.snapshot(keep=5)


def _models(service) -> list[VWModel]:
    learner = service.learner
    return [learner.model, *(learner.replicas.models if learner.replicas is not None else ())]


@pytest.mark.parametrize("strategy", ["epsilon_greedy", "thompson"])
def test_a_serving_process_draws_the_same_slates_from_the_weights_as_through_vw(build, open_service, strategy,
                                                                               monkeypatch):
    config = build(exploration={"strategy": strategy})
    _learn_and_snapshot(open_service(config))  # one process that learns inline, as a learner would
    worker = config.replace(server={"workers": 2})  # a separate learner: these only serve the snapshot
    direct = open_service(worker)
    through_vw = open_service(worker.replace(server={"direct_scoring": False}))
    models = _models(direct)
    assert all(m.linear is not None for m in models)
    assert all(m.linear is None for m in _models(through_vw))
    if strategy == "thompson":  # replicas that learned differently: their part of the scoring is tested too
        assert np.ptp([m.linear.weights.sum() for m in models[1:]]) > 0
    _assert_same_slates(direct, through_vw, monkeypatch)


@pytest.mark.parametrize("strategy", ["epsilon_greedy", "thompson"])
def test_a_process_that_learns_inline_scores_from_copies_of_the_weights_it_keeps_exact(build, open_service, strategy,
                                                                                      monkeypatch):
    """One worker learns as it serves: its models keep their copies of the weights exact as they
    learn (no snapshot read back), so it draws the same slates from them as a process that
    learned the same rewards and scores through VW. A copy found to differ from its model when
    a snapshot is written is read again (counted)."""
    from serving.metrics import BACKGROUND_FAILURES

    config = build(exploration={"strategy": strategy})  # one worker: it learns inline
    direct = open_service(config)
    through_vw = open_service(config.replace(server={"direct_scoring": False}))
    for service in (direct, through_vw):  # the same slates (the comparison below), the same rewards
        _learn_and_snapshot(service, snapshot=False)
    models = _models(direct)
    assert all(m.linear is not None and m._ws is not None for m in models)
    assert all(m.linear is None for m in _models(through_vw))
    for mine, theirs in zip(models, _models(through_vw), strict=True):
        assert mine.synced_linear().matches(theirs.to_bytes())  # learned alike, and the copy is every weight of it
    _assert_same_slates(direct, through_vw, monkeypatch)

    copy = models[-1].linear
    copy.weights[np.flatnonzero(copy.weights)[:5]] += 1.0  # a copy that drifted
    drifted = BACKGROUND_FAILURES.labels("weights_copy")._value.get()
    direct.learner.snapshot(keep=5)
    assert BACKGROUND_FAILURES.labels("weights_copy")._value.get() == drifted + 1
    assert models[-1].linear is not copy and models[-1].linear.matches(models[-1].to_bytes())


def _assert_same_slates(direct, through_vw, monkeypatch) -> None:
    """`direct` scores every request from the weights, `through_vw` through VW's parser: the
    same items, probabilities and logged action lines; scores equal but for rounding."""
    real, calls = score_module._direct, []
    monkeypatch.setattr(score_module, "_direct", lambda *a, **k: calls.append(1) or real(*a, **k))
    users = [f"u{i}" for i in range(0, 150, 7)]
    slates, scores = {}, {}
    for service in (direct, through_vw):
        for user in users:
            state = UserState.from_json(service.store.user_state(user))
            slate = decide(service.ranking(), state, user_id=user, context={"device": "mobile"}, k=10,
                           exclude=frozenset(), now=NOW, event_id=f"e-{user}")
            slates[service is direct, user] = [(i.item_id, round(i.probability, 9), i.action) for i in slate.items]
            scores[service is direct, user] = [i.score for i in slate.items]
    assert len(calls) == len(users)  # the worker scored every request from the weights, the other through VW
    spread = np.ptp([score for user in users for score in scores[False, user]])
    assert spread > 0.01  # a model that learned something: the comparison can fail
    for user in users:  # the same items, probabilities and logged action lines; scores equal but for rounding
        assert slates[True, user] == slates[False, user]
        np.testing.assert_allclose(scores[True, user], scores[False, user], atol=2e-6)


def test_a_replica_released_from_vw_scores_whole_lines_from_its_weights():
    model = _trained(ModelConfig().vw_args())
    lines, extras = _candidates(200)
    shared = "shared |User age=1 taste=t2 |Context device=d0 hour=3 |Recent cat=t2 len=1"
    actions = action_lines(lines, np.arange(len(lines)), **extras)
    before = model.predict(shared, actions)
    assert not VWModel(ModelConfig().vw_args()).release()  # no weights of its own to score from: kept
    model.linear = LinearModel.of(model)
    assert model.release()
    with pytest.raises(RuntimeError, match="closed"):
        model.to_bytes()  # VW's copy is gone: it cannot be saved (or learn) any more
    np.testing.assert_allclose(model.predict(shared, actions), before, atol=1e-5)


def test_a_serving_worker_keeps_its_replicas_as_weights_only(build, open_service):
    service = open_service(build(server={"workers": 2}, exploration={"strategy": "thompson"}))
    replicas = service.learner.replicas.models
    assert replicas and all(r.linear is not None and r._ws is None for r in replicas)
    assert service.learner.model._ws is not None  # the mean keeps VW's: explanations, copies for new replicas


def test_released_replicas_score_lines_together_as_vw_did():
    args = ModelConfig().vw_args()
    replicas = Replicas([_trained(args, n=400, seed=s) for s in range(3)])
    lines, extras = _candidates(60)
    shared = "shared |User age=3 taste=t1 |Context device=d2 hour=9 |Recent cat=t1 len=3"
    actions = action_lines(lines, np.arange(len(lines)), **extras)
    before = replicas.predict(shared, actions)
    assert np.ptp(before[:, 0]) > 0  # they differ: each row must come from its own weights
    for model in replicas.models:
        model.linear = LinearModel.of(model)
        assert model.release()
    np.testing.assert_allclose(replicas.predict(shared, actions), before, atol=1e-5)


def test_a_serving_worker_reads_its_replicas_weights_without_loading_them_into_vw(build, open_service,
                                                                                  monkeypatch):
    """Only the mean is loaded into VW (and checked against it); the replicas' weights are read
    from their saved bytes and score as the replicas did in the process that learned them. A
    replica saved under another command line is loaded and checked as before."""
    from serving.models import make_learner

    config = build(exploration={"strategy": "thompson"})
    learned = open_service(config)
    _learn_and_snapshot(learned)
    loaded, init = [], VWModel.__init__
    monkeypatch.setattr(VWModel, "__init__", lambda self, *a, **k: loaded.append(k.get("blob")) or init(self, *a, **k))
    worker = config.replace(server={"workers": 2})
    snapshot = learned.store.latest_snapshot()
    served = make_learner(worker, learned.store, learned.strategy, snapshot)
    assert len(loaded) == 1 and loaded[0] == snapshot[0]  # the mean only
    replicas = served.replicas.models
    assert len(replicas) == learned.strategy.replicas and all(r._ws is None and r.linear is not None for r in replicas)
    lines, extras = _candidates(80)
    shared = "shared |User age=3 taste=t1 |Context device=mobile |Recent cat=t1 len=3"
    actions = action_lines(lines, np.arange(len(lines)), **extras)
    theirs = learned.learner.replicas.predict(shared, actions)
    assert np.ptp(theirs[:, 0]) > 0  # replicas that differ: each row must come from its own weights
    np.testing.assert_allclose(served.replicas.predict(shared, actions), theirs, atol=1e-5)

    other = _trained(ModelConfig(bits=14).vw_args(), n=200).to_bytes()  # saved under another command line
    blob, meta = snapshot
    loaded.clear()
    served = make_learner(worker, learned.store, learned.strategy, (blob, {**meta, "replica_blobs": [
        *meta["replica_blobs"][:-1], other]}))
    assert len(loaded) == 1 + len(meta["replica_blobs"])  # each loaded into VW and checked
    assert all(r._ws is None and r.linear is not None for r in served.replicas.models)


def test_weights_that_vw_scales_by_an_l2_contraction_are_not_read_as_they_are():
    """With `model.l2` > 0, VW multiplies every prediction by a contraction each model moves by
    its own updates and saves beside the weights: such a model (or a replica with the mean's
    header) is scored through VW."""
    from bandit.saved import plain_scale, saved_options

    scaled = _trained(ModelConfig(bits=14, l2=0.01).vw_args(), n=200)
    blob = scaled.to_bytes()
    assert not plain_scale(blob) and LinearModel.of(scaled, blob) is None
    plain = _trained(ModelConfig(bits=14).vw_args(), n=200)
    saved = plain.to_bytes()
    header = saved[:saved_options(saved)[1]]
    assert plain_scale(saved) and LinearModel.like(LinearModel.of(plain, saved), header, saved) is not None
    assert blob[:len(header)] == header  # the header does not tell them apart ...
    assert LinearModel.like(LinearModel.of(plain, saved), header, blob) is None  # ... the scale does
