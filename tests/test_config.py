"""Config: shipped defaults, file and environment overrides, validation messages."""

from __future__ import annotations

import pytest

from banditrec.config import Config, from_dict, load_config, to_dict
from banditrec.errors import ConfigError

BAD = [
    ({"server": {"port": 70000}}, "server.port == 70000, must be <= 65535"),
    ({"server": {"port": "80"}}, "server.port must be an integer, got '80'"),
    ({"server": {"workers": 65}}, "server.workers == 65, must be <= 64"),
    ({"server": {"workers": 2, "learner": "inline"}}, "server.learner = \"inline\" needs server.workers = 1"),
    ({"server": {"learner": "elsewhere"}}, "server.learner == 'elsewhere', must be one of 'auto', 'inline', 'process'"),
    ({"server": {"portt": 1}},
     "unknown config key server.portt; known: api_key, counts_wait_s, direct_scoring, heap_trim_s, host, learner, "
     "log_format, max_body_bytes, max_k, port, read_key, threads, user_cache_mb, workers"),
    ({"server": {"counts_wait_s": 700}}, "server.counts_wait_s == 700.0, must be <= 600.0"),
    ({"model": {"similarity_prior": -1}}, "model.similarity_prior == -1.0, must be >= 0.0"),
    ({"nope": {}}, "unknown config section [nope]"),
    ({"redis": {"url": "http://x"}}, "redis.url == 'http://x', must start with redis://, rediss:// or unix://"),
    ({"redis": {"prefix": "a b"}}, "redis.prefix == 'a b', must be 1-64 of [A-Za-z0-9_.-]"),
    ({"redis": {"embedded_fsync": "sometimes"}},
     "redis.embedded_fsync == 'sometimes', must be one of 'always', 'everysec', 'no'"),
    ({"exploration": {"strategy": "magic"}},
     "exploration.strategy == 'magic', must be one of 'epsilon_greedy', 'greedy', 'thompson', 'squarecb', 'ucb'"),
    ({"exploration": {"epsilon_greedy": {"epsilon": 1.5}}},
     "exploration.epsilon_greedy.epsilon == 1.5, must be <= 1.0"),
    ({"exploration": {"epsilon_greedy": {"epsilon": -0.1}}},
     "exploration.epsilon_greedy.epsilon == -0.1, must be >= 0.0"),
    ({"exploration": {"ucb1": {}}},
     "unknown config key exploration.ucb1; known strategies: epsilon_greedy, greedy, thompson, squarecb, ucb"),
    ({"model": {"bits": 40}}, "model.bits == 40, must be <= 28"),
    ({"model": {"interactions": ["U I"]}}, "model.interactions has 'U I', each must be 2 namespace letters (a pair)"),
    ({"model": {"interactions": ["UCI"]}}, "model.interactions has 'UCI', each must be 2 namespace letters (a pair)"),
    ({"model": {"interactions": "UI"}}, "model.interactions must be a list, got 'UI'"),
    ({"model": {"lrq": ["UI"]}}, "model.lrq has 'UI', each must be 2 namespace letters and a rank 1-999"),
    ({"model": {"lrq": ["UI0"]}}, "model.lrq has 'UI0', each must be 2 namespace letters and a rank 1-999"),
    ({"model": {"cb_type": "bogus"}}, "model.cb_type == 'bogus', must be one of 'mtr', 'ips', 'dr', 'dm'"),
    ({"model": {"learning_rate": float("nan")}}, "model.learning_rate == nan, must be finite"),
    ({"feedback": {"reward_min": 1.0, "reward_max": 0.0}}, "feedback.reward_max == 0.0, must be > 1.0"),
    ({"feedback": {"clip_p": 0.0}}, "feedback.clip_p == 0.0, must be > 0.0"),
    ({"embedding": {"content_weight": 2}}, "embedding.content_weight == 2.0, must be <= 1.0"),
    ({"embedding": {"event_weights": {"view": 1.0}}}, "embedding.event_weights is missing 'click'"),
    ({"server": {"threads": True}}, "server.threads must be an integer, got True"),
]


@pytest.mark.parametrize("data,message", BAD)
def test_bad_values_name_field_bound_and_value(data, message):
    with pytest.raises(ConfigError) as err:
        from_dict(data)
    assert str(err.value).startswith(message)


def test_shipped_defaults_equal_the_dataclass_defaults():
    assert load_config(env={}) == Config()


def test_file_then_environment_override(tmp_path):
    path = tmp_path / "my.toml"
    path.write_text('[server]\nport = 9000\n[exploration.epsilon_greedy]\nepsilon = 0.3\n'
                    '[model]\ninteractions = ["UI"]\n')
    cfg = load_config(path, env={})
    assert cfg.server.port == 9000 and cfg.exploration.settings["epsilon_greedy"].epsilon == 0.3
    assert cfg.model.interactions == ("UI",) and "--interactions UI" in cfg.model.vw_args()
    assert cfg.server.host == "127.0.0.1"  # untouched defaults stay
    env = {"BANDITREC_CONFIG": str(path), "BANDITREC_PORT": "9100", "REDIS_URL": "redis://h:1/2",
           "BANDITREC_DATA_DIR": str(tmp_path / "d")}
    cfg = load_config(env=env)
    assert (cfg.server.port, cfg.redis.url, cfg.data.path) == (9100, "redis://h:1/2", tmp_path / "d")
    with pytest.raises(ConfigError, match=r"\$BANDITREC_PORT == 'x', must be int"):
        load_config(env={"BANDITREC_PORT": "x"})


def test_missing_or_broken_files_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\nport=")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(bad, env={})


def test_config_is_frozen_and_round_trips():
    cfg = load_config(env={})
    with pytest.raises(AttributeError):
        cfg.server.port = 1
    assert from_dict(to_dict(cfg)) == cfg
    changed = cfg.replace(exploration={"strategy": "greedy"})
    assert changed.exploration.strategy == "greedy" and cfg.exploration.strategy == "thompson"


def test_vw_arguments_are_rendered_from_validated_fields_only():
    args = Config().model.vw_args()
    assert args.startswith("--cb_adf --cb_type mtr -b 18 ")
    assert "--interactions UI --interactions CI" in args and args.endswith("--quiet")


def test_who_learns():
    assert Config().server.learns_inline
    assert not from_dict({"server": {"workers": 2}}).server.learns_inline
    assert not from_dict({"server": {"learner": "external"}}).server.learns_inline
    assert from_dict({"server": {"learner": "inline"}}).server.learns_inline
