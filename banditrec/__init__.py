"""banditrec: a self-hosted contextual-bandit personalization service."""

from banditrec.config import Config, load_config
from banditrec.errors import (BanditrecError, ConfigError, Conflict, DataError, Gone, InvalidRequest, NotFound,
                              Unavailable)

__version__ = "0.1.0"
__all__ = ["BanditrecError", "Config", "ConfigError", "Conflict", "DataError", "Gone", "InvalidRequest",
           "NotFound", "Unavailable", "__version__", "load_config"]
