"""The strategy contract, run over every registered strategy, plus epsilon-greedy specifics,
the Vowpal Wabbit reward model (bandit/vw.py) and its feature text (bandit/features.py)."""

import math
from collections import Counter

import numpy as np
import pytest

from bandit.features import action_line, action_lines, at_position, item_line, shared_line, token, with_label
from bandit.strategies import STRATEGIES, EpsilonGreedy, EpsilonGreedyConfig, Greedy, GreedyConfig, Scores, SlateRules
from bandit.vw import VWModel
from banditrec.config import ModelConfig
from banditrec.errors import ConfigError

LENGTHS = [1, 2, 7, 200]
REPLICAS = 8


@pytest.fixture(params=sorted(STRATEGIES), ids=str)
def strategy(request):
    """A fresh instance of each registered strategy with its default config."""
    cls = STRATEGIES[request.param]
    return cls(cls.Config())


def _scores(n, seed=0) -> Scores:
    """Mean scores, and bootstrap replicas that scored the mean's top 5 (noisy copies)."""
    rng = np.random.default_rng([n, seed])
    mean = rng.normal(size=n)
    replicas = np.full((REPLICAS, n), -np.inf)
    top = np.argsort(-mean)[:5]
    replicas[:, top] = mean[top] + rng.normal(scale=0.5, size=(REPLICAS, len(top)))
    return Scores(mean, replicas)


def _binomial_ok(observed, n_draws, p, sigmas=6.0):
    """|observed - n p| within `sigmas` standard deviations; exact when p is 0 or 1."""
    return abs(observed - n_draws * p) <= sigmas * math.sqrt(n_draws * p * (1.0 - p))


# --- the contract, for every strategy --------------------------------------------------------

def test_registry_names_match_classes():
    assert set(STRATEGIES) == {"epsilon_greedy", "greedy", "thompson", "squarecb", "ucb"}  # as the README lists them
    for name, cls in STRATEGIES.items():
        assert cls.name == name
        assert cls(cls.Config()).config == cls.Config()


@pytest.mark.parametrize("n", LENGTHS)
def test_distribution_is_a_probability_vector(strategy, n):
    for seed in range(5):
        scores = _scores(n, seed)
        probs, exploit = strategy.distribution(scores)
        probs = np.asarray(probs, dtype=np.float64)
        assert probs.shape == (n,)
        assert abs(probs.sum() - 1.0) <= 1e-9
        assert ((probs >= 0.0) & (probs <= 1.0)).all()
        assert 0 <= exploit < n and probs[exploit] > 0.0
        if not strategy.randomized:
            assert probs[exploit] == 1.0
        if strategy.name in ("epsilon_greedy", "greedy", "squarecb", "thompson"):
            assert scores.mean[exploit] == scores.mean.max()  # they exploit the mean model's best


def test_exploit_choice_with_tied_scores_has_the_maximum_score(strategy):
    scores = Scores(np.array([0.2, 0.9, 0.9, 0.1, 0.9]))
    probs, exploit = strategy.distribution(scores)
    assert scores.mean[exploit] == 0.9
    assert abs(np.sum(probs) - 1.0) <= 1e-9


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("k", [1, 3, 10, 250])
def test_slate_logs_the_probability_of_each_pick_given_the_positions_above(strategy, n, k):
    scores = _scores(n)
    slate, first_probs = strategy.choose_slate(scores, k, np.random.default_rng(7))
    assert first_probs.shape == (n,) and np.allclose(first_probs, strategy.distribution(scores)[0])
    assert first_probs[slate[0].index] == pytest.approx(slate[0].probability)
    assert len(slate) == min(k, n)
    picks = [c.index for c in slate]
    assert len(set(picks)) == len(picks)
    assert all(type(c.index) is int and 0 <= c.index < n for c in slate)
    remaining = list(range(n))  # recomputed here, independently of choose_slate's bookkeeping
    for choice in slate:
        assert choice.index in remaining
        probs, exploit = strategy.distribution(scores.take(np.array(remaining)))
        local = remaining.index(choice.index)
        assert choice.probability == pytest.approx(float(probs[local]), abs=1e-12)
        assert choice.probability > 0.0  # a pick the strategy could not make is never logged
        assert choice.explored is (local != exploit)
        remaining.remove(choice.index)


@pytest.mark.parametrize("n", LENGTHS)
def test_same_seed_gives_the_same_slate(strategy, n):
    scores = _scores(n)
    a = strategy.choose_slate(scores, 5, np.random.default_rng(42))[0]
    b = strategy.choose_slate(scores, 5, np.random.default_rng(42))[0]
    assert a == b


@pytest.mark.parametrize("n", [2, 7])
def test_first_pick_frequency_matches_the_distribution(strategy, n):
    scores = _scores(n, seed=3)
    probs, _ = strategy.distribution(scores)
    rng = np.random.default_rng(2024)
    draws = 20_000
    counts = np.bincount([strategy.choose_slate(scores, 1, rng)[0][0].index for _ in range(draws)],
                         minlength=n)
    for i in range(n):
        assert _binomial_ok(counts[i], draws, float(probs[i])), (i, counts[i], draws * probs[i])
    logged = {c.index: c.probability for c in (strategy.choose_slate(scores, 1, rng)[0][0] for _ in range(50))}
    for i, p in logged.items():
        assert p == pytest.approx(float(probs[i]))


def test_the_fresh_boost_raises_fresh_items_probability_exactly(strategy):
    scores = _scores(20, seed=4)
    fresh = np.zeros(20, dtype=bool)
    fresh[np.argsort(scores.mean)[:3]] = True  # the three worst-scored items are fresh
    plain, _ = strategy.distribution(scores)
    rules = SlateRules(fresh=fresh, boost=0.3)
    rng = np.random.default_rng(11)
    firsts = [strategy.choose_slate(scores, 1, rng, rules=rules)[0][0] for _ in range(6000)]
    for choice in firsts[:200]:  # the logged probability is the boosted one
        expected = 0.7 * plain[choice.index] + (0.1 if fresh[choice.index] else 0.0)
        assert choice.probability == pytest.approx(expected)
    share = np.mean([fresh[c.index] for c in firsts])
    assert share > plain[fresh].sum() + 0.2  # ~ +0.3 x (1 - their share without the boost)


@pytest.mark.parametrize("boost", [0.0, 0.3])
def test_later_picks_follow_the_distribution_over_what_remains(strategy, boost):
    """Every position, not only the first: the third pick's frequencies, given the first two,
    match the distribution (with the fresh boost) over the remaining candidates, and the
    logged probability is that distribution's. (Epsilon-greedy, greedy and Thompson draw
    through `bandit.strategies.mixture`, the others through the base class's loop.)"""
    n = 6
    scores = _scores(n, seed=8)
    fresh = np.zeros(n, dtype=bool)
    fresh[np.argsort(scores.mean)[:2]] = True
    rules = SlateRules(fresh=fresh, boost=boost)
    rng = np.random.default_rng(99)
    slates = [[c for c in strategy.choose_slate(scores, 3, rng, rules=rules)[0]] for _ in range(12_000)]
    prefix = Counter((s[0].index, s[1].index) for s in slates).most_common(1)[0][0]
    thirds = [s[2] for s in slates if (s[0].index, s[1].index) == prefix]
    remaining = np.array([i for i in range(n) if i not in prefix])
    probs, _ = strategy.distribution(scores.take(remaining))
    local_fresh = fresh[remaining]
    if boost and local_fresh.any():
        probs = (1 - boost) * probs + np.where(local_fresh, boost / local_fresh.sum(), 0.0)
    counts = {i: sum(c.index == i for c in thirds) for i in remaining.tolist()}
    for local, i in enumerate(remaining.tolist()):
        assert _binomial_ok(counts[i], len(thirds), float(probs[local])), (i, counts[i], len(thirds) * probs[local])
    for c in thirds[:100]:
        assert c.probability == pytest.approx(float(probs[remaining.tolist().index(c.index)]))


def test_guaranteed_fresh_slots_fill_the_end_of_the_slate(strategy):
    scores = _scores(30, seed=5)
    fresh = np.zeros(30, dtype=bool)
    fresh[np.argsort(scores.mean)[:4]] = True
    rules = SlateRules(fresh=fresh, fresh_slots=2)
    for seed in range(20):
        slate = strategy.choose_slate(scores, 6, np.random.default_rng(seed), rules=rules)[0]
        assert sum(fresh[c.index] for c in slate) >= 2
        remaining, placed_fresh = list(range(30)), 0
        for position, c in enumerate(slate):
            reserved = placed_fresh < 2 and position >= 6 - (2 - placed_fresh)
            pool = [i for i in remaining if fresh[i]] if reserved else remaining
            probs, exploit = strategy.distribution(scores.take(np.array(pool)))  # recomputed here
            assert c.index in pool and c.probability == pytest.approx(float(probs[pool.index(c.index)]))
            assert c.explored is (pool.index(c.index) != exploit)
            placed_fresh += int(fresh[c.index])
            remaining.remove(c.index)


def test_mmr_diversifies_the_exploit_choice_with_exact_probabilities(strategy):
    mean = np.array([1.0, 0.99, 0.5, 0.2])
    vectors = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])  # 0 and 1 are the same item in disguise
    scores = Scores(mean, np.tile(mean, (REPLICAS, 1)))
    rules = SlateRules(vectors=vectors, diversity=1.0, score_range=0.5)
    _, exploit = strategy.distribution(scores.take(np.array([1, 2, 3])).shifted(-np.array([0.5, 0.0, 0.3])))
    assert exploit == 1  # with item 0 placed, the dissimilar item (local index 1) is the exploit choice
    for seed in range(30):
        first, second = strategy.choose_slate(scores, 2, np.random.default_rng(seed), rules=rules)[0]
        rest = [i for i in range(4) if i != first.index]
        penalty = 0.5 * np.clip(vectors[rest] @ vectors[first.index], 0.0, 1.0)
        probs, exploit = strategy.distribution(scores.take(np.array(rest)).shifted(-penalty))
        assert second.probability == pytest.approx(float(probs[rest.index(second.index)]))
        assert second.explored is (rest.index(second.index) != exploit)
    if not strategy.randomized:
        assert [c.index for c in strategy.choose_slate(scores, 2, np.random.default_rng(3))[0]] == [0, 1]
        assert [c.index for c in strategy.choose_slate(scores, 2, np.random.default_rng(3), rules=rules)[0]] == [0, 2]


def test_greedy_always_picks_the_argmax():
    greedy = Greedy(GreedyConfig())
    scores = _scores(7, seed=3)
    rng = np.random.default_rng(0)
    order = np.argsort(-scores.mean).tolist()
    for _ in range(200):
        slate = greedy.choose_slate(scores, 7, rng)[0]
        assert [c.index for c in slate] == order
        assert all(c.probability == 1.0 and not c.explored for c in slate)


# --- epsilon-greedy --------------------------------------------------------------------------

@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("epsilon", [0.05, 0.3, 0.9])
def test_epsilon_greedy_gives_the_exploit_item_one_minus_epsilon_plus_epsilon_over_n(n, epsilon):
    scores = _scores(n)
    probs, exploit = EpsilonGreedy(EpsilonGreedyConfig(epsilon=epsilon)).distribution(scores)
    assert exploit == int(np.argmax(scores.mean))
    assert probs[exploit] == pytest.approx(1.0 - epsilon + epsilon / n)
    others = np.delete(probs, exploit)
    np.testing.assert_allclose(others, epsilon / n)


@pytest.mark.parametrize("n", LENGTHS)
def test_epsilon_zero_behaves_like_greedy(n):
    scores = _scores(n)
    eg = EpsilonGreedy(EpsilonGreedyConfig(epsilon=0.0))
    greedy = Greedy(GreedyConfig())
    np.testing.assert_array_equal(eg.distribution(scores)[0], greedy.distribution(scores)[0])
    assert eg.distribution(scores)[1] == greedy.distribution(scores)[1]
    assert eg.choose_slate(scores, 5, np.random.default_rng(1))[0] == \
        greedy.choose_slate(scores, 5, np.random.default_rng(2))[0]


@pytest.mark.parametrize("n", LENGTHS)
def test_epsilon_one_is_uniform(n):
    probs, _ = EpsilonGreedy(EpsilonGreedyConfig(epsilon=1.0)).distribution(_scores(n))
    np.testing.assert_allclose(probs, 1.0 / n)


def test_epsilon_one_picks_uniformly():
    eg = EpsilonGreedy(EpsilonGreedyConfig(epsilon=1.0))
    scores = _scores(7, seed=3)
    rng = np.random.default_rng(5)
    draws = 14_000
    first = [eg.choose_slate(scores, 1, rng)[0][0] for _ in range(draws)]
    counts = np.bincount([c.index for c in first], minlength=7)
    assert all(_binomial_ok(c, draws, 1 / 7) for c in counts), counts
    best = int(np.argmax(scores.mean))
    assert all(c.explored == (c.index != best) for c in first)


def test_epsilon_greedy_explores_about_epsilon_times_n_minus_one_over_n():
    eg = EpsilonGreedy(EpsilonGreedyConfig(epsilon=0.3))
    rng = np.random.default_rng(9)
    draws = 10_000
    explored = sum(eg.choose_slate(_scores(5), 1, rng)[0][0].explored for _ in range(draws))
    assert _binomial_ok(explored, draws, 0.3 * 4 / 5)


@pytest.mark.parametrize("value, message", [
    (1.5, "exploration.epsilon_greedy.epsilon == 1.5, must be <= 1.0"),
    (-0.1, "exploration.epsilon_greedy.epsilon == -0.1, must be >= 0.0"),
    (float("nan"), "exploration.epsilon_greedy.epsilon == nan, must be finite"),
    ("0.5", "exploration.epsilon_greedy.epsilon must be a number, got '0.5'"),
    (True, "exploration.epsilon_greedy.epsilon must be a number, got True"),
    (None, "exploration.epsilon_greedy.epsilon must be a number, got None"),
])
def test_epsilon_greedy_config_rejects_bad_epsilon(value, message):
    with pytest.raises(ConfigError) as info:
        EpsilonGreedyConfig(epsilon=value)
    assert str(info.value) == message
    assert info.value.message == message


@pytest.mark.parametrize("value", [0, 0.0, 0.25, 1, 1.0])
def test_epsilon_greedy_config_accepts_the_closed_interval(value):
    assert EpsilonGreedyConfig(epsilon=value).epsilon == value


# --- the Vowpal Wabbit model -----------------------------------------------------------------

ARGS = ModelConfig().vw_args()
SHARED = shared_line({"age_group": "25-34", "location": "DE", "taste": ["shoes"]}, {"device": "mobile", "hour": 21})
OTHER_SHARED = shared_line({"age_group": "55+"}, {"device": "desktop"})
ACTIONS = [action_line(item_line({"item_id": f"i{k}", "category": c, "attributes": {"price": 10.0 * (k + 1)}}),
                       0.2 * k)
           for k, c in enumerate(["shoes", "bags", "books", "toys", "garden"])]


@pytest.fixture
def model():
    m = VWModel(ARGS)
    yield m
    m.close()


def test_predict_returns_one_reward_per_action_in_input_order(model):
    for _ in range(30):
        model.learn(SHARED, ACTIONS[3], 1.0, 0.5)
        model.learn(SHARED, ACTIONS[1], 0.0, 0.5)
    rewards = model.predict(SHARED, ACTIONS)
    assert rewards.shape == (len(ACTIONS),)
    assert np.isfinite(rewards).all()
    assert int(np.argmax(rewards)) == 3
    np.testing.assert_allclose(model.predict(SHARED, ACTIONS[::-1]), rewards[::-1])
    np.testing.assert_allclose(model.predict(SHARED, [ACTIONS[3], ACTIONS[0]]), rewards[[3, 0]])


def test_predict_of_no_actions_is_empty(model):
    out = model.predict(SHARED, [])
    assert isinstance(out, np.ndarray) and out.shape == (0,)


def test_learning_a_rewarded_action_raises_its_predicted_reward(model):
    before = model.predict(SHARED, ACTIONS)
    for _ in range(50):
        model.learn(SHARED, ACTIONS[2], 1.0, 0.5)
    after = model.predict(SHARED, ACTIONS)
    assert after[2] > before[2] + 0.3
    assert after[2] > np.delete(after, 2).max() + 0.2


def test_model_bytes_round_trip_to_identical_predictions(model):
    rng = np.random.default_rng(0)
    for _ in range(200):
        shared = SHARED if rng.random() < 0.5 else OTHER_SHARED
        k = int(rng.integers(len(ACTIONS)))
        model.learn(shared, ACTIONS[k], float(rng.random() < 0.3 + 0.1 * k), 0.2)
    blob = model.to_bytes()
    assert isinstance(blob, bytes) and blob
    restored = VWModel(ARGS, blob=blob)
    try:
        for shared in (SHARED, OTHER_SHARED, shared_line(None, {})):
            expected = model.predict(shared, ACTIONS)
            assert np.ptp(expected) > 0  # the model has learned something to preserve
            np.testing.assert_array_equal(restored.predict(shared, ACTIONS), expected)
    finally:
        restored.close()


# --- feature text ----------------------------------------------------------------------------

HOSTILE_USER = {"age_group": "25 | 34", "location": "D:E", "signup_source": "ads\tand\nmore",
                "taste": ["home | garden", "a:b c", "|"]}
HOSTILE_CONTEXT = {"device": "mobile|tablet", "page key": "p:1", "weird|key:": "v v", "hour": 21,
                   "ratio": 2.5, "flag": True, "missing": None}
HOSTILE_ITEM = {"item_id": "i | 3:4", "category": "shoes |Foo bar:1",
                "attributes": {"col or": "red|x", "k:": "v  v", "n": 3, "f": 2.5, "b": False, "z": None}}


def _feature_tokens(line):
    """Every whitespace-separated token that is not a namespace marker."""
    return [t for t in line.split() if not t.startswith("|") and t != "shared"]


def test_shared_line_sanitises_user_given_values():
    line = shared_line(HOSTILE_USER, HOSTILE_CONTEXT)
    assert line.count("|") == 2  # only the User and Context namespace markers
    assert ":" not in line
    assert line.split() == line.split(" ")  # no tabs or newlines
    assert line.startswith("shared |User ")
    assert "age=25_34" in line.split() and "loc=D_E" in line.split() and "src=ads_and_more" in line.split()
    assert "taste=home_garden" in line.split() and "taste=a_b_c" in line.split() and "taste=_" in line.split()
    assert "device=mobile_tablet" in line.split() and "page_key=p_1" in line.split()
    assert "weird_key_=v_v" in line.split()
    assert "flag=true" in line.split() and "hour=21" in line.split() and "ratio=1" in line.split()
    assert all("=" in t for t in _feature_tokens(line))


def test_item_line_sanitises_user_given_values():
    line = item_line(HOSTILE_ITEM)
    assert line.count("|") == 1 and line.startswith("|Item ")
    assert ":" not in line
    assert line.split() == line.split(" ")
    assert line.split()[1].startswith("id=i_3_4~")  # sanitised, plus a hash: distinct ids stay distinct
    assert line.split()[2] == "cat=shoes_Foo_bar_1"
    assert {"col_or=red_x", "k_=v_v", "n=3", "f=1", "b=false"} <= set(line.split())
    assert all("=" in t for t in _feature_tokens(line))


def test_vw_parses_and_scores_sanitised_lines(model):
    shared = shared_line(HOSTILE_USER, HOSTILE_CONTEXT)
    actions = [action_line(item_line(HOSTILE_ITEM), 0.5),
               action_line(item_line(dict(HOSTILE_ITEM, item_id="other | id")), 0.5)]
    model.learn(shared, actions[0], 1.0, 0.5)
    rewards = model.predict(shared, actions)
    assert rewards.shape == (2,) and np.isfinite(rewards).all()
    assert rewards[0] != rewards[1]  # the ids stayed features of their own item


def test_token_is_never_empty_and_is_bounded():
    assert token("") == "_"
    assert token("|") == "_"
    assert token(" a  b ") == "_a_b_"
    assert len(token("x" * 500)) == 96


def test_label_format():
    assert with_label("|Item id=i1", -1.0, 0.25) == "0:-1.0:0.25 |Item id=i1"
    assert action_line("|Item id=i1", 0.83) == "|Item id=i1 |Sim s:0.8300"
    assert action_line("|Item id=i1", None) == "|Item id=i1"
    assert action_line("|Item id=i1", 0.5, 0.25) == "|Item id=i1 |Sim s:0.5000 |Live s:0.2500"


def test_action_lines_is_action_line_for_many_rows():
    cached = [f"|Item id=i{r}" for r in range(5)]
    rows = np.array([3, 0, 4])
    sims, live = np.array([0.9, 0.5, 0.1], np.float32), np.array([0.2, -0.3, 0.7], np.float32)
    assert action_lines(cached, rows) == [cached[r] for r in rows]
    assert action_lines(cached, rows, sims) == [action_line(cached[r], float(s)) for r, s in zip(rows, sims)]
    assert action_lines(cached, rows, sims, live) == [action_line(cached[r], float(s), float(v))
                                                      for r, s, v in zip(rows, sims, live)]
    assert action_lines(cached, rows, None, live) == [action_line(cached[r], None, float(v))
                                                      for r, v in zip(rows, live)]
    pops = np.array([0.0, 0.25, 1.0])  # 0: no popularity feature at all
    assert action_lines(cached, rows, sims, None, pops) == [action_line(cached[r], float(s), pop=float(p))
                                                            for r, s, p in zip(rows, sims, pops)]
    assert action_lines(cached, rows, None, None, pops)[2] == "|Item id=i4 |Pop p:1.0000"


@pytest.mark.parametrize("shape", range(16))
def test_action_lines_write_every_feature_at_four_decimals_in_every_shape(shape):
    """Each of the 16 combinations of features present, with values outside [-1, 1], NaN, halves
    between steps and popularity at 0: the same text as each value formatted on its own."""
    rng = np.random.default_rng(shape)
    n = 200
    cached = [f"|Item id=i{r}" for r in range(n)]
    rows = rng.permutation(n)
    values = [rng.uniform(-1.2, 1.2, n) for _ in range(4)]
    values[0][:3] = [np.nan, 0.00005, -0.00015]  # NaN counts as 0; halves round to even
    values[2] = np.where(rng.random(n) < 0.3, 0.0, np.abs(values[2]))  # popularity 0: left out
    given = [v if shape >> k & 1 else None for k, v in enumerate(values)]

    def text(v):
        v = 0.0 if np.isnan(v) else min(1.0, max(-1.0, float(v)))
        return f"{float(np.rint(v * 10_000)) / 10_000:.4f}"

    expected = []
    for j, r in enumerate(rows):
        line = cached[r]
        for k, label in enumerate((" |Sim s:", " |Live s:", " |Pop p:", " |Q q:")):
            v = given[k]
            if v is not None and not (k == 2 and np.rint(np.nan_to_num(v[j]) * 10_000) <= 0):
                line += label + text(v[j])
        expected.append(line)
    assert action_lines(cached, rows, *given) == expected
    assert shared_line(None, {}) == "shared |User anonymous"


def test_learning_at_the_position_takes_position_bias_out_of_the_scores():
    """Item A is clicked whenever it is shown first and never when shown fifth; item B is clicked
    60 % of the time, always shown first. Learned without positions, A looks worse than B (0.5 vs
    0.6); learned with them (`at_position`) and scored at the top, A is the better item."""
    from bandit.vw import VWModel
    from banditrec.config import ModelConfig

    shared, a, b = "shared |User age=25-34", "|Item id=a cat=x", "|Item id=b cat=x"
    scores = {}
    for position_bias in (False, True):
        model = VWModel(ModelConfig().vw_args())
        for n in range(1000):
            top, low = (1, 5) if position_bias else (None, None)
            model.learn(shared, at_position(a, top if n % 2 == 0 else low), 1.0 if n % 2 == 0 else 0.0, 1.0)
            model.learn(shared, at_position(b, top), 1.0 if n % 5 < 3 else 0.0, 1.0)
        scores[position_bias] = model.predict(shared, [a, b])
        model.close()
    assert scores[False][0] < scores[False][1], scores  # position bias: A judged by where it was shown
    assert scores[True][0] > scores[True][1] + 0.2, scores
