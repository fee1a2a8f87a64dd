"""Our SquareCB against Vowpal Wabbit's own `--cb_explore_adf --squarecb` on the same model state.

VW's squarecb learns a stream of examples; its regressor's weights are then copied into a
plain `--cb_adf` workspace (the kind the service scores with). On new contexts our
first-position distribution, from that workspace's scores with gamma = 10 x t^0.5 and t
the number of examples learned, must equal VW's PMF.

Measured differences and why: on the same weights the two agree to ~3e-8 (float32 inside
VW). A plain `--cb_adf` model trained on the same examples drifts from VW's squarecb
regressor by a few hundredths in predicted cost, so their PMFs differ by up to ~0.01: VW's
explore stack trains its regressor slightly differently. And the service's learner updates
from [shared, chosen action] only, where VW's MTR scales the importance weight by events /
actions seen, so a served model is not VW's model either; the exploration rule is the same.
"""

from __future__ import annotations

import numpy as np
import vowpalwabbit  # compared with VW directly here; the service only uses bandit/vw.py

from bandit.features import action_line, shared_line, with_label
from bandit.strategies import Scores, SquareCB, SquareCBConfig
from banditrec.config import ModelConfig

CATEGORIES = ["shoes", "bags", "books", "toys"]


def _world(rng, n_actions=6):
    shared = shared_line({"age_group": str(rng.choice(["18-24", "25-34", "55+"])),
                          "taste": [str(rng.choice(CATEGORIES))]},
                         {"device": str(rng.choice(["mobile", "desktop"]))})
    actions = [action_line(f"|Item id=i{a} cat={CATEGORIES[a % 4]}", float(rng.uniform(0, 1)))
               for a in range(n_actions)]
    return shared, actions


def _predict(ws, lines):
    examples = ws.parse(lines)
    try:
        return np.asarray(ws.predict(examples), dtype=np.float64)
    finally:
        ws.finish_example(examples)


def test_first_position_distribution_matches_vw_squarecb():
    cfg = ModelConfig()
    vw = vowpalwabbit.Workspace(cfg.vw_args().replace("--cb_adf", "--cb_explore_adf --squarecb"))
    rng = np.random.default_rng(0)
    t = 300
    for _ in range(t):
        shared, actions = _world(rng)
        chosen = int(rng.integers(len(actions)))
        reward = float(rng.random() < 0.2 + 0.15 * (chosen % 4))
        examples = vw.parse([shared] + [with_label(a, -reward, 0.5) if i == chosen else a
                                        for i, a in enumerate(actions)])
        vw.learn(examples)
        vw.finish_example(examples)
    plain = vowpalwabbit.Workspace(cfg.vw_args())
    assert plain.get_stride() == vw.get_stride()
    for index in range(vw.num_weights()):
        weight = vw.get_weight(index)
        if weight:
            plain.set_weight(index, 0, weight)

    strategy = SquareCB(SquareCBConfig()).at_step(t)
    gaps = []
    for _ in range(100):
        shared, actions = _world(rng)
        probs, _ = strategy.distribution(Scores(-_predict(plain, [shared] + actions)))
        pmf = _predict(vw, [shared] + actions)
        assert np.isclose(pmf.sum(), 1.0, atol=1e-5) and np.isclose(probs.sum(), 1.0)
        gaps.append(np.abs(probs - pmf).max())
    assert max(gaps) < 1e-6, max(gaps)  # measured: ~3e-8
    assert len({round(float(p), 3) for p in pmf}) > 2  # a real distribution, not a degenerate one
    vw.finish()
    plain.finish()
