"""Lazy package attributes: `import swift.<pkg>` stays cheap; a name's module is imported on first use."""
from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(namespace: dict[str, Any], exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level `__getattr__` for a package: `exports` maps a public name to the module defining it.

    Use as `__getattr__ = lazy_getattr(globals(), _EXPORTS)`. The value is cached in the package's namespace, so
    the import happens once.
    """
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__
