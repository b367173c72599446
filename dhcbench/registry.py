"""A small generic name -> object registry, filled at the definition site.

Every registry (methods, datasets, weightings) is an instance of :class:`Registry`; names
are short lowercase keys, duplicates raise at import time, and an unknown name fails with
the list of valid names and the closest match, so a typo on the command line gets a useful
one-line error.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from dhcbench.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps lowercase keys (and optional aliases) to registered objects."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def add(self, name: str, obj: T, aliases: tuple[str, ...] = ()) -> T:
        """Register ``obj`` under ``name``; a name already taken raises ``ValueError``."""
        for key in (name, *aliases):
            if key != key.lower() or not key:
                raise ValueError(f"{self.kind} name {key!r} must be a non-empty lowercase key")
            if key in self._items or key in self._aliases:
                raise ValueError(f"duplicate {self.kind} name {key!r}")
        self._items[name] = obj
        for alias in aliases:
            self._aliases[alias] = name
        return obj

    def register(self, name: str, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def decorate(obj: T) -> T:
            return self.add(name, obj, aliases)

        return decorate

    def canonical(self, name: str) -> str:
        """The registered key for ``name`` (resolving aliases); unknown names raise UserError."""
        key = name.strip().lower()
        if key in self._items:
            return key
        if key in self._aliases:
            return self._aliases[key]
        valid = sorted(self._items)
        close = difflib.get_close_matches(key, valid + sorted(self._aliases), n=1, cutoff=0.4)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UserError(f"unknown {self.kind} {name!r}{hint} (valid: {', '.join(valid)})")

    def get(self, name: str) -> T:
        """The object registered under ``name`` or an alias of it."""
        return self._items[self.canonical(name)]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._items or name in self._aliases)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[str, T]]:
        """(name, object) pairs sorted by name."""
        return sorted(self._items.items())

    def aliases_of(self, name: str) -> list[str]:
        """The aliases that resolve to ``name``."""
        return sorted(a for a, n in self._aliases.items() if n == name)
