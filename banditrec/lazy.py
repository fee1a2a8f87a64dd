"""Package-level names imported on first use (PEP 562), so that importing one small module of
a package (`store.config`, say) does not load the whole package (a Redis client, the vector index, VW)."""

from __future__ import annotations

import importlib


def lazy_exports(package: str, exports: dict[str, str]):
    """A module `__getattr__` for `package` that imports `exports[name]` (a module path) the
    first time `name` is read. Names not exported raise AttributeError, so `from package import
    submodule` still imports the submodule."""

    def __getattr__(name: str):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
