"""Module attributes imported on first use (PEP 562).

The package and `koala_chat.server` name classes whose modules import aiohttp;
importing those only when a name is used keeps `koala --help` fast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from importlib import import_module
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(
    package: str, names: Mapping[str, str], exported: Iterable[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return `__getattr__` and `__dir__` for `package`.

    `names` maps each lazy name to the module (relative to `package`) that
    defines it; `exported` is the package's `__all__`. A name is imported once
    and then stored in the package, so later lookups are plain attribute reads.
    """
    namespace = import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exported))

    return __getattr__, __dir__
