"""The direct pylibvw path in bandit/vw.py must do exactly what the public Workspace API does."""

from __future__ import annotations

import numpy as np
import pytest
import vowpalwabbit

from bandit import vw
from bandit.features import with_label

ARGS = "--cb_adf --cb_type mtr -b 18 -l 0.1 --power_t 0 --interactions UI --interactions CI --quiet"
SHARED = "shared |User age=25-34 taste=home |Context device=mobile"


def _actions(rng, n):
    return [f"|Item id=i{r} cat=c{r % 7} |Sim s:{rng.random():.4f} |Live s:{rng.random():.4f}" for r in range(n)]


@pytest.mark.skipif(not vw._FAST, reason="this VW release has no direct path; the public API is used")
def test_fast_and_public_paths_learn_and_predict_the_same():
    rng = np.random.default_rng(3)
    fast, public = vowpalwabbit.Workspace(ARGS), vowpalwabbit.Workspace(ARGS)
    try:
        actions = _actions(rng, 300)
        for step in range(400):
            i, reward, p = int(rng.integers(300)), -float(rng.random() < 0.3), float(rng.uniform(0.05, 1))
            lines = [SHARED, with_label(actions[i], reward, p)]
            vw._learn(fast, lines, fast=True)
            vw._learn(public, lines, fast=False)
        a = vw._predict(fast, [SHARED, *actions], fast=True)
        b = vw._predict(public, [SHARED, *actions], fast=False)
        c = vw._predict(fast, [SHARED, *actions], fast=False)
        assert len(a) == 300 and np.ptp(a) > 0  # learned something that tells actions apart
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    finally:
        fast.finish()
        public.finish()


@pytest.mark.skipif(not vw._FAST, reason="this VW release has no direct path; the public API is used")
def test_fast_path_gives_the_explorers_pmf_in_action_order():
    rng = np.random.default_rng(4)
    ws = vowpalwabbit.Workspace("--cb_explore_adf --epsilon 0.2 --quiet")
    try:
        actions = _actions(rng, 20)
        for _ in range(200):
            i = int(rng.integers(20))
            lines = [SHARED] + [with_label(a, -1.0 if j == 3 else 0.0, 0.05) if j == i else a
                                for j, a in enumerate(actions)]
            vw._learn(ws, lines)
        a = vw._predict(ws, [SHARED, *actions], fast=True)
        b = vw._predict(ws, [SHARED, *actions], fast=False)
        np.testing.assert_allclose(a, b)
        assert abs(a.sum() - 1) < 1e-6 and int(np.argmax(a)) == 3
    finally:
        ws.finish()


@pytest.mark.parametrize("cb_type", ["mtr", "dr", "ips"])
def test_a_model_scores_many_candidates_in_chunks_exactly_as_in_one_call(cb_type):
    rng = np.random.default_rng(5)
    args = ARGS.replace("--cb_type mtr", f"--cb_type {cb_type}")
    model = vw.VWModel(args)
    try:
        n = 3 * vw.SCORE_CHUNK + 17
        actions = _actions(rng, n)
        for _ in range(300):
            model.learn(SHARED, actions[int(rng.integers(n))], float(rng.random() < 0.3), float(rng.uniform(0.05, 1)))
        loaded = vw.VWModel(args, blob=model.to_bytes())
        try:
            chunked = model.predict(SHARED, actions)
            whole = -vw._predict(model._ws, [SHARED, *actions])  # one call over every candidate
            assert len(chunked) == n and np.ptp(chunked) > 0
            np.testing.assert_array_equal(chunked, whole)
            np.testing.assert_array_equal(loaded.predict(SHARED, actions), whole)
        finally:
            loaded.close()
    finally:
        model.close()
