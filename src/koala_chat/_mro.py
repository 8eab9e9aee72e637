"""Decisions as tables keyed by class, looked up along the method resolution order."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

__all__ = ["lookup"]

T = TypeVar("T")


def lookup(table: Mapping[type[BaseException], T], exc: BaseException, default: T) -> T:
    """Return the entry of `table` for `exc`'s class or its nearest ancestor.

    The class's method resolution order is walked, as starlette looks up its
    exception handlers, so a table names each class once and a subclass without
    an entry of its own inherits its parent's; `default` when no class matches.
    """
    for cls in type(exc).__mro__:
        if cls in table:
            return table[cls]
    return default
