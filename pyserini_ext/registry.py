"""Named registries: exact names only, never substring guessing.

Pyserini picks an encoder class by looking for substrings of the model name
("tct" in the name means TCT-ColBERT, and so on). Here a name maps to exactly one
object; an unknown name is an error that lists the names that do exist.

Other packages add entries through an entry-point group, e.g. in their pyproject::

    [project.entry-points."pyserini_ext.encoders"]
    my_family = "my_pkg.encoders:MY_FAMILY"

Entry points are loaded lazily, on the first lookup, so importing pyserini_ext
never imports a third-party package.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from typing import Generic, Iterator, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class UnknownNameError(KeyError):
    """An exact-name lookup failed; the message lists what is registered."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


class Registry(Generic[T]):
    def __init__(self, kind: str, entry_point_group: str | None = None):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._items: dict[str, T] = {}
        self._entry_points_loaded = entry_point_group is None

    def register(self, name: str, item: T) -> T:
        if name in self._items and self._items[name] is not item:
            raise ValueError(f"{self.kind} {name!r} is already registered ({self._items[name]!r})")
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        self._load_entry_points()
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; registered: {known}") from None

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        self._load_entry_points()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=self.entry_point_group):
            try:
                self.register(ep.name, ep.load())
            except Exception:  # one broken plugin must not hide the others
                log.exception("could not load %s %r from entry point %s", self.kind, ep.name, ep.value)
