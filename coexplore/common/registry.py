"""A small decorator registry with one constructor signature per registry.

Borrowed in spirit from timm's ``@register_model``: entries are registered by name,
overwriting warns, ``names()`` lists what exists, and unknown names fail with the list
of known ones (and the closest match).
"""

from __future__ import annotations

import difflib
import warnings
from typing import Any, Callable, Dict, Generic, Iterator, List, Optional, TypeVar

from .errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects (usually constructors) of one kind.

    Args:
        kind: what the registry holds, used in error messages (e.g. ``"workload"``).
        ordered: list names in registration order (the order users know, e.g. ``ws, os, rs``)
            instead of alphabetically.
    """

    def __init__(self, kind: str, ordered: bool = False) -> None:
        self.kind = kind
        self.ordered = bool(ordered)
        self._entries: Dict[str, T] = {}

    def register(self, name: Optional[str] = None, obj: Optional[T] = None):
        """Register ``obj`` under ``name``; usable as ``@registry.register("name")``."""

        def _add(o: T) -> T:
            key = name if name is not None else getattr(o, "__name__", None)
            if not key:
                raise ValueError(f"{self.kind} registry: a name is required")
            key = key.lower()
            if key in self._entries:
                warnings.warn(f"{self.kind} {key!r} is registered again; the new entry replaces the old",
                              stacklevel=3)
            self._entries[key] = o
            return o

        if obj is not None:
            return _add(obj)
        return _add

    def unregister(self, name: str) -> None:
        """Remove an entry (tests and plugins that register temporarily)."""
        self._entries.pop(str(name).lower(), None)

    def get(self, name: str) -> T:
        key = str(name).lower()
        if key not in self._entries:
            known = ", ".join(self.names()) or "(none)"
            close = difflib.get_close_matches(key, self.names(), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}.{hint}")
        return self._entries[key]

    def build(self, name_or_path: str, load_file: Callable[[str], Any]) -> Any:
        """A built-in entry by name (its constructor called with no arguments), or
        ``load_file(path)`` when ``name_or_path`` ends in ``.yaml`` / ``.yml``."""
        s = str(name_or_path)
        if s.endswith((".yaml", ".yml")):
            return load_file(s)
        return self.get(s)()

    def names(self) -> List[str]:
        return list(self._entries) if self.ordered else sorted(self._entries)

    def items(self):
        return [(k, self._entries[k]) for k in self.names()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
