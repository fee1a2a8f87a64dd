"""Configuration: frozen dataclasses, one per concept, validated once at load.

Values come from the defaults shipped in `banditrec/defaults.toml`, then an optional TOML
file (`--config PATH` or `BANDITREC_CONFIG`), then environment variables for deployment
values (see `ENV_OVERRIDES`). Nothing is read at import time.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from bandit.config import ExplorationConfig, ModelConfig
from bandit.strategies import STRATEGIES
from banditrec.checks import check_scalar
from banditrec.errors import ConfigError
from retrieval.config import (  # noqa: F401 (re-exported: the whole config is importable from here)
    ENGAGED_TYPES,
    EVENT_TYPES,
    DemoConfig,
    EmbeddingConfig,
    IndexConfig,
    RetrievalConfig,
)
from serving.config import (  # noqa: F401
    BlockRule,
    CanaryConfig,
    ColdStartConfig,
    DiversityConfig,
    ExperimentConfig,
    FeedbackConfig,
    FiltersConfig,
    FreshConfig,
    InactiveConfig,
    LearningConfig,
    LogConfig,
    RealtimeConfig,
    SnapshotConfig,
)
from store.config import RedisConfig


@dataclass(frozen=True)
class ServerConfig:
    """HTTP serving. With one worker it learns in-process; with several, one separate
    learner process learns and the workers serve its snapshots (`learner`)."""

    host: str = "127.0.0.1"
    port: int = 8765
    workers: int = 1
    threads: int = 4
    max_body_bytes: int = 1_048_576
    max_k: int = 100
    learner: str = "auto"  # auto | inline | process | external
    api_key: str = field(default="", repr=False)  # required by admin routes when set; prefer $BANDITREC_API_KEY
    read_key: str = field(default="", repr=False)  # with api_key set: also opens the read-only operations routes
    log_format: str = "json"  # json | text: how the served app logs (one JSON object per line, with event_id)
    heap_trim_s: float = 30.0  # give the C heap's free memory back to the system this often (0: never)
    user_cache_mb: float = 8.0  # per process: the last users' states, served while Redis is away (0: none)
    direct_scoring: bool = True  # score from copies of the models' weights (bandit.linear), not VW's parser
    counts_wait_s: float = 30.0  # a starting process serves once its copy of the item counts is loaded, or after this

    def __post_init__(self):
        check_scalar(self.host, "server.host", str)
        check_scalar(self.api_key, "server.api_key", str)
        check_scalar(self.log_format, "server.log_format", str, choices=("json", "text"))
        check_scalar(self.read_key, "server.read_key", str)
        for name, key in (("api_key", self.api_key), ("read_key", self.read_key)):
            if key and (len(key) < 16 or not key.isprintable() or " " in key or ":" in key):
                raise ConfigError(f"server.{name} must be at least 16 printable characters without spaces or "
                                  "colons (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
        if self.read_key and not self.api_key:
            raise ConfigError("server.read_key is a second key for the read-only routes beside server.api_key; "
                              "set server.api_key too (without it every route is open)")
        check_scalar(self.port, "server.port", int, min=0, max=65535)
        check_scalar(self.workers, "server.workers", int, min=1, max=64)
        check_scalar(self.threads, "server.threads", int, min=1, max=64)
        check_scalar(self.max_body_bytes, "server.max_body_bytes", int, min=1024)
        check_scalar(self.max_k, "server.max_k", int, min=1, max=10_000)
        check_scalar(self.heap_trim_s, "server.heap_trim_s", float, min=0.0)
        check_scalar(self.user_cache_mb, "server.user_cache_mb", float, min=0.0, max=65536.0)
        check_scalar(self.direct_scoring, "server.direct_scoring", bool)
        check_scalar(self.counts_wait_s, "server.counts_wait_s", float, min=0.0, max=600.0)
        check_scalar(self.learner, "server.learner", str, choices=("auto", "inline", "process", "external"))
        if self.learner == "inline" and self.workers > 1:
            raise ConfigError("server.learner = \"inline\" needs server.workers = 1 (each worker would learn "
                              "and snapshot on its own); use \"auto\" or \"process\"")

    @property
    def learns_inline(self) -> bool:
        """True when the serving process learns itself (one worker, no separate learner)."""
        return self.learner == "inline" or (self.learner == "auto" and self.workers == 1)


@dataclass(frozen=True)
class DataConfig:
    """Files: demo data, built embeddings and index versions, the embedded Redis."""

    dir: str = "data"

    def __post_init__(self):
        check_scalar(self.dir, "data.dir", str)
        if not self.dir:
            raise ConfigError("data.dir == '', must name a directory")

    @property
    def path(self) -> Path:
        return Path(self.dir).expanduser().resolve()


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    data: DataConfig = field(default_factory=DataConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    realtime: RealtimeConfig = field(default_factory=RealtimeConfig)
    filters: FiltersConfig = field(default_factory=FiltersConfig)
    cold_start: ColdStartConfig = field(default_factory=ColdStartConfig)
    inactive: InactiveConfig = field(default_factory=InactiveConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    exploration: ExplorationConfig = field(default_factory=ExplorationConfig)
    fresh: FreshConfig = field(default_factory=FreshConfig)
    diversity: DiversityConfig = field(default_factory=DiversityConfig)
    learning: LearningConfig = field(default_factory=LearningConfig)
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)
    log: LogConfig = field(default_factory=LogConfig)
    snapshot: SnapshotConfig = field(default_factory=SnapshotConfig)
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    canary: CanaryConfig = field(default_factory=CanaryConfig)

    def replace(self, **sections: Mapping[str, Any]) -> "Config":
        """A copy with some fields changed: `cfg.replace(server={"port": 0})`."""
        data = to_dict(self)
        _deep_merge(data, sections)
        return from_dict(data)


def _bool(text: str) -> bool:
    value = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}.get(text.strip().lower())
    if value is None:
        raise ValueError(text)
    return value


# Environment variables for deployment values: variable -> (section, field, type).
ENV_OVERRIDES = {
    "REDIS_URL": ("redis", "url", str),
    "BANDITREC_REDIS_CLUSTER": ("redis", "cluster", _bool),
    "BANDITREC_REDIS_PREFIX": ("redis", "prefix", str),
    "BANDITREC_HOST": ("server", "host", str),
    "BANDITREC_PORT": ("server", "port", int),
    "BANDITREC_WORKERS": ("server", "workers", int),
    "BANDITREC_LEARNER": ("server", "learner", str),
    "BANDITREC_API_KEY": ("server", "api_key", str),
    "BANDITREC_READ_KEY": ("server", "read_key", str),
    "BANDITREC_DATA_DIR": ("data", "dir", str),
}


def load_config(path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Defaults, then the TOML at `path` (or $BANDITREC_CONFIG), then environment overrides."""
    env = os.environ if env is None else env
    data = tomllib.loads(resources.files("banditrec").joinpath("defaults.toml").read_text())
    path = path or env.get("BANDITREC_CONFIG") or None
    if path:
        try:
            with open(path, "rb") as fh:
                _deep_merge(data, tomllib.load(fh))
        except FileNotFoundError:
            raise ConfigError(f"config file {str(path)!r} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    for var, (section, key, kind) in ENV_OVERRIDES.items():
        if env.get(var, "") != "":
            raw = env[var]
            try:
                value = kind(raw)
            except ValueError:
                raise ConfigError(f"${var} == {raw!r}, must be {kind.__name__}") from None
            data.setdefault(section, {})[key] = value
    return from_dict(data)


def from_dict(data: Mapping[str, Any]) -> Config:
    """Build a validated Config from nested dicts; unknown keys are errors."""
    sections = {}
    classes = {f.name: f.default_factory for f in dataclasses.fields(Config)}
    for name, value in data.items():
        if name not in classes:
            raise ConfigError(f"unknown config section [{name}]; known: {', '.join(classes)}")
        if not isinstance(value, Mapping):
            raise ConfigError(f"[{name}] must be a table, got {value!r}")
        if name == "exploration":
            sections[name] = exploration_from_dict(value)
        else:
            sections[name] = _build(classes[name], value, name)
    return Config(**sections)


def to_dict(cfg) -> dict:
    """Nested plain dicts (tuples become lists, mappings dicts), TOML-ready."""
    if isinstance(cfg, ExplorationConfig):
        return {"strategy": cfg.strategy, **to_dict(cfg.settings)}
    if dataclasses.is_dataclass(cfg):
        names = {field: alias for alias, field in getattr(cfg, "ALIASES", {}).items()}
        return {names.get(f.name, f.name): to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, Mapping):
        return {k: to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, tuple):
        return [to_dict(v) for v in cfg]
    return cfg


def _build(cls, values: Mapping[str, Any], section: str):
    hints = typing.get_type_hints(cls)
    aliases = getattr(cls, "ALIASES", {})  # TOML names that are Python keywords
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        key = aliases.get(key, key)
        if key not in known:
            shown = sorted({next((a for a, f in aliases.items() if f == k), k) for k in known})
            raise ConfigError(f"unknown config key {section}.{key}; known: {', '.join(shown) or 'none'}")
        hint = hints[key]
        origin = typing.get_origin(hint)
        if origin is tuple:
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"{section}.{key} must be a list, got {value!r}")
            inner = typing.get_args(hint)[0]
            if dataclasses.is_dataclass(inner):
                for entry in value:
                    if not isinstance(entry, Mapping):
                        raise ConfigError(f"each {section}.{key} entry must be a table, got {entry!r}")
                value = tuple(_build(inner, entry, f"{section}.{key}") for entry in value)
            else:
                value = tuple(value)
        elif origin in (Mapping, dict) or hint is Mapping:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{section}.{key} must be a table, got {value!r}")
            value = MappingProxyType(dict(value))
        kwargs[key] = value
    return cls(**kwargs)


def exploration_from_dict(values: Mapping[str, Any]) -> ExplorationConfig:
    """An `[exploration]` section (as TOML or `to_dict` gives it), validated."""
    settings = {}
    strategy = values.get("strategy", ExplorationConfig.strategy)
    for key, value in values.items():
        if key == "strategy":
            continue
        if key not in STRATEGIES:
            raise ConfigError(f"unknown config key exploration.{key}; known strategies: {', '.join(STRATEGIES)}")
        if not isinstance(value, Mapping):
            raise ConfigError(f"[exploration.{key}] must be a table, got {value!r}")
        settings[key] = _build(STRATEGIES[key].Config, value, f"exploration.{key}")
    return ExplorationConfig(strategy=strategy, settings=MappingProxyType(settings))


def _deep_merge(base: dict, extra: Mapping) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = dict(value) if isinstance(value, Mapping) else value


def dump_toml(data: dict) -> str:
    """Our config dicts as TOML (tables of scalars, lists and inline tables)."""
    out: list[str] = []

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        raise TypeError(v)

    def table_(prefix, node):
        scalars = {k: v for k, v in node.items() if not (isinstance(v, dict) and k not in ("event_weights",))}
        nested = {k: v for k, v in node.items() if k not in scalars}
        if prefix:
            out.append(f"[{prefix}]")
        out.extend(f"{k} = {value(v)}" for k, v in scalars.items())
        out.append("")
        for k, v in nested.items():
            table_(f"{prefix}.{k}" if prefix else k, v)

    table_("", data)
    return "\n".join(out).strip() + "\n"
