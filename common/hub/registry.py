"""A name -> entry table that paper packages fill with their own entries, as timm's model registry is filled by
the modules that define the models: `common` holds the table, each paper's `checkpoints.py` registers into it
when the package is imported, and `vos.papers` imports every package so the tools see them all."""
from __future__ import annotations

from typing import Dict, Generic, Iterator, Protocol, Tuple, TypeVar

from common.runtime.errors import UserError


class Named(Protocol):
    name: str


EntryT = TypeVar("EntryT", bound=Named)


class Registry(Generic[EntryT]):
    """Entries by their `name`; `kind` words the error for an unknown name ("unknown weights 'x'; known: ...")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: Dict[str, EntryT] = {}

    def register(self, *entries: EntryT) -> Tuple[EntryT, ...]:
        """Add `entries`; re-registering the same entry (a module imported twice) is harmless, a clash is a bug."""
        for entry in entries:
            known = self._entries.get(entry.name)
            if known is not None and known != entry:
                raise ValueError(f"two different {self.kind} entries are named {entry.name!r}")
            self._entries[entry.name] = entry
        return entries

    def __getitem__(self, name: str) -> EntryT:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none registered (import the paper package first)"
            raise UserError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def get(self, name: str, default=None):
        return self._entries.get(name, default)

    def __setitem__(self, name: str, entry: EntryT) -> None:  # tests swap an entry (monkeypatch.setitem)
        self._entries[name] = entry

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[EntryT]:
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> Tuple[str, ...]:
        return tuple(self._entries)
