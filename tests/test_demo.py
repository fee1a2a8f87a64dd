"""The synthetic demo world: reproducible, well-formed, and shaped like a real shop's log."""

from collections import Counter

import numpy as np
import pytest

from banditrec.config import EVENT_TYPES
from banditrec.errors import DataError
from retrieval.data import normalise_item, read_catalog, read_interactions, read_users
from retrieval.demo import AGE_GROUPS, DAY, LOCATIONS, SIGNUP_SOURCES, generate_world

NOW = 1_700_000_000
SIZES = dict(n_items=2000, n_users=300, n_categories=12)


@pytest.fixture(scope="module")
def world():
    """One small world shared by the read-only checks below (no test mutates it)."""
    return generate_world(**SIZES, seed=3, now=NOW)


def _views(world):
    return [(u, i) for u, i, kind, _ in world.interactions if kind == "view"]


def _view_table(world):
    """users x categories matrix of view counts, plus the per-view (user, category) codes."""
    cats = sorted({item["category"] for item in world.items})
    cat_of = {item["item_id"]: cats.index(item["category"]) for item in world.items}
    user_of = {user["user_id"]: r for r, user in enumerate(world.users)}
    views = _views(world)
    vu = np.array([user_of[u] for u, _ in views])
    vc = np.array([cat_of[i] for _, i in views])
    return vu, vc, len(world.users), len(cats)


def _table(vu, vc, n_users, n_cats):
    m = np.zeros((n_users, n_cats))
    np.add.at(m, (vu, vc), 1)
    return m


# --- reproducibility -------------------------------------------------------------------------

def test_same_seed_and_now_give_identical_world():
    a = generate_world(n_items=300, n_users=40, n_categories=6, seed=5, now=NOW)
    b = generate_world(n_items=300, n_users=40, n_categories=6, seed=5, now=NOW)
    assert a.items == b.items
    assert a.users == b.users
    assert a.interactions == b.interactions
    np.testing.assert_array_equal(a.item_latent, b.item_latent)
    np.testing.assert_array_equal(a.user_latent, b.user_latent)
    np.testing.assert_array_equal(a.item_quality, b.item_quality)
    np.testing.assert_array_equal(a.click_probability(3, range(300)), b.click_probability(3, range(300)))


def test_different_seed_gives_different_world():
    a = generate_world(n_items=300, n_users=40, n_categories=6, seed=5, now=NOW)
    b = generate_world(n_items=300, n_users=40, n_categories=6, seed=6, now=NOW)
    assert a.items != b.items
    assert a.interactions != b.interactions
    assert not np.allclose(a.user_latent, b.user_latent)


# --- sizes and record shapes -----------------------------------------------------------------

@pytest.mark.parametrize("n_items, n_users, n_categories, latent_dim",
                         [(1, 1, 1, 4), (50, 7, 3, 8), (1500, 60, 25, 16)])
def test_sizes_are_honoured(n_items, n_users, n_categories, latent_dim):
    w = generate_world(n_items=n_items, n_users=n_users, n_categories=n_categories, seed=1, now=NOW,
                       mean_events_per_user=5, latent_dim=latent_dim)
    assert len(w.items) == n_items
    assert len(w.users) == n_users
    assert [i["item_id"] for i in w.items] == [f"i{r}" for r in range(n_items)]
    assert [u["user_id"] for u in w.users] == [f"u{r}" for r in range(n_users)]
    assert w.item_latent.shape == (n_items, latent_dim)
    assert w.user_latent.shape == (n_users, latent_dim)
    categories = {i["category"] for i in w.items}
    assert len(categories) <= n_categories
    if n_items >= 1000:  # every category is drawn at this size, including generated names past the 20 built in
        assert len(categories) == n_categories
    assert len(w.interactions) >= n_users  # every user has at least one event


def test_items_have_every_catalog_field_with_the_right_type(world):
    fields = {"item_id", "category", "title", "description", "attributes", "in_stock", "published_at"}
    for item in world.items:
        assert set(item) == fields
        assert isinstance(item["item_id"], str) and item["item_id"]
        assert isinstance(item["category"], str) and item["category"]
        assert isinstance(item["title"], str) and item["title"]
        assert isinstance(item["description"], str) and item["description"]
        assert isinstance(item["attributes"], dict)
        assert isinstance(item["attributes"]["brand"], str)
        assert isinstance(item["attributes"]["color"], str)
        assert isinstance(item["attributes"]["price"], float) and item["attributes"]["price"] > 0
        assert type(item["in_stock"]) is bool
        assert type(item["published_at"]) is int and 0 < item["published_at"] <= NOW
        assert normalise_item(item, error=DataError) == item  # valid input for `banditrec build`
    stock = [i["in_stock"] for i in world.items]
    assert 0 < stock.count(False) < len(stock) / 4  # a few items are out of stock, most are not


def test_users_have_profile_fields_from_the_known_values(world):
    for user in world.users:
        assert set(user) == {"user_id", "age_group", "location", "signup_source"}
        assert user["age_group"] in AGE_GROUPS
        assert user["location"] in LOCATIONS
        assert user["signup_source"] in SIGNUP_SOURCES
    assert len({u["age_group"] for u in world.users}) == len(AGE_GROUPS)


# --- the interaction log ---------------------------------------------------------------------

def test_interactions_reference_known_users_and_items_and_are_sorted(world):
    users = {u["user_id"] for u in world.users}
    items = {i["item_id"] for i in world.items}
    for user_id, item_id, kind, ts in world.interactions:
        assert user_id in users and item_id in items
        assert kind in EVENT_TYPES
        assert type(ts) is int
    stamps = [row[3] for row in world.interactions]
    assert stamps == sorted(stamps)
    kinds = Counter(row[2] for row in world.interactions)
    assert kinds["view"] > kinds["click"] > kinds["add_to_cart"] > kinds["purchase"] > 0  # a funnel


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_interactions_lie_in_the_history_window_and_after_publication(seed):
    """Every event, follow-ups (click, cart, purchase) included, happens in the
    `history_days` before `now`, and never before its item was published."""
    history_days = 90.0
    w = generate_world(**SIZES, seed=seed, now=NOW, history_days=history_days)
    published = {i["item_id"]: i["published_at"] for i in w.items}
    start = NOW - history_days * DAY
    too_early = [r for r in w.interactions if r[3] < start]
    in_future = [r for r in w.interactions if r[3] > NOW]
    before_item = [r for r in w.interactions if r[3] < published[r[1]]]
    assert too_early == []
    assert before_item == []
    assert in_future == [], f"{len(in_future)} events after now={NOW}, e.g. {in_future[:3]}"


def test_popularity_is_skewed(world):
    views = Counter(i for _, i in _views(world))
    counts = np.sort(np.array([views.get(i["item_id"], 0) for i in world.items]))[::-1]
    top_decile = counts[: len(counts) // 10].sum() / counts.sum()
    assert top_decile > 0.3  # ~0.46 here; uniform exposure would give ~0.15


def test_users_prefer_some_categories(world):
    vu, vc, n_users, n_cats = _view_table(world)
    m = _table(vu, vc, n_users, n_cats)
    enough = m.sum(axis=1) >= 10
    top_share = (m[enough].max(axis=1) / m[enough].sum(axis=1)).mean()
    assert top_share > 2.0 / n_cats

    def chi2_per_dof(table):
        table = table[table.sum(axis=1) > 0]
        expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
        keep = expected > 0
        dof = (table.shape[0] - 1) * (np.count_nonzero(table.sum(axis=0)) - 1)
        return ((table - expected)[keep] ** 2 / expected[keep]).sum() / dof

    # Same users, same items viewed, but categories dealt to users at random: no preference left.
    shuffled = chi2_per_dof(_table(vu, np.random.default_rng(0).permutation(vc), n_users, n_cats))
    actual = chi2_per_dof(m)
    assert shuffled < 1.3  # ~1.0
    assert actual > 1.6    # ~2.1: category choice depends strongly on the user


def test_age_groups_differ_in_category_mix(world):
    vu, vc, n_users, n_cats = _view_table(world)
    m = _table(vu, vc, n_users, n_cats)
    age = np.array([AGE_GROUPS.index(u["age_group"]) for u in world.users])

    def mean_total_variation(groups):
        mix = np.array([m[groups == g].sum(axis=0) for g in range(len(AGE_GROUPS))])
        mix /= mix.sum(axis=1, keepdims=True)
        pairs = [(a, b) for a in range(len(mix)) for b in range(a + 1, len(mix))]
        return np.mean([0.5 * np.abs(mix[a] - mix[b]).sum() for a, b in pairs])

    rng = np.random.default_rng(0)
    null = np.array([mean_total_variation(rng.permutation(age)) for _ in range(100)])
    actual = mean_total_variation(age)
    assert actual > 1.5 * null.mean()              # ~1.9x here
    assert actual > null.mean() + 4 * null.std()   # ~7.6 sd here


# --- the hidden truth ------------------------------------------------------------------------

def test_click_probability_is_a_probability_and_follows_affinity(world):
    n_items = len(world.items)
    gaps = []
    for u in range(0, len(world.users), 5):
        p = world.click_probability(u, np.arange(n_items), {"device": "mobile"})
        assert p.shape == (n_items,)
        assert ((p > 0) & (p < 1)).all()
        order = np.argsort(world.item_latent @ world.user_latent[u])
        tenth = n_items // 10
        gaps.append(p[order[-tenth:]].mean() - p[order[:tenth]].mean())
    assert min(gaps) > 0.05
    assert np.mean(gaps) > 0.2  # ~0.35


def test_click_probability_without_context_ignores_device_and_is_ordered_by_item(world):
    items = [5, 1, 9]
    p = world.click_probability(0, items)
    np.testing.assert_allclose(p, [world.click_probability(0, [i])[0] for i in items])
    assert world.click_probability(0, items, {"device": "unknown"}).tolist() == p.tolist()
    assert world.click_probability(0, items, {"device": "desktop"}).tolist() != p.tolist()


# --- files -----------------------------------------------------------------------------------

def test_write_reads_back_with_the_build_readers(world, tmp_path):
    paths = world.write(tmp_path / "demo")
    assert set(paths) == {"items.jsonl", "users.jsonl", "interactions.csv"}
    assert all(p.exists() for p in paths.values())

    assert read_catalog(paths["items.jsonl"]) == world.items
    assert read_users(paths["users.jsonl"]) == {
        u["user_id"]: {k: v for k, v in u.items() if k != "user_id"} for u in world.users}
    log = read_interactions(paths["interactions.csv"])
    rows = [(log.user_ids[u], item, EVENT_TYPES[k], int(t))
            for u, item, k, t in zip(log.user, log.item_id, log.kind, log.timestamp)]
    assert rows == world.interactions
