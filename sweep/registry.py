"""Name -> builder registries: adding a method, dataset, metric, policy or launcher is a new module plus a
`@REGISTRY.register("name")`, never an edit to an if-chain or a hard-coded name list.

This module is in the base layer and imports nothing of sweep's: each kind's registry is created next to its
implementations (`sweep.ssl.methods.METHODS`, `sweep.launch.executors.LAUNCHERS`, ...) and filled when that
package is imported; validation and the CLI read the registries from a layer that has imported them.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from sweep.errors import SweepError

T = TypeVar("T")


class UnknownNameError(SweepError, ValueError, KeyError):
    """A name no entry of the registry has; the message names the kind, the allowed names and the closest one.

    A `KeyError` too, so callers that looked names up in a dict keep working."""

    def __init__(self, kind: str, name: object, allowed: list[str], field: str | None = None) -> None:
        self.kind, self.name, self.allowed, self.field = kind, name, allowed, field
        super().__init__(unknown_name_message(kind, name, allowed, field))

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])

    def __reduce__(self) -> tuple[type, tuple[str, object, list[str], str | None]]:  # pickles (job results)
        return type(self), (self.kind, self.name, self.allowed, self.field)


def unknown_name_message(kind: str, name: object, allowed: list[str], field: str | None = None) -> str:
    """``<field>=<name>: unknown <kind>; allowed [...]; did you mean '<closest>'?`` (field and hint if any)."""
    close = difflib.get_close_matches(str(name), allowed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    head = f"{field}={name!r}: unknown {kind}" if field else f"unknown {kind} {name!r}"
    return f"{head}; allowed {allowed}{hint}"


class DuplicateNameError(SweepError, ValueError):
    """Two entries registered under one name: the second would silently replace the first."""


class Registry(Generic[T]):
    """One kind's entries by name, in registration order.

    >>> LOSSES: Registry[Callable[..., float]] = Registry("loss")
    >>> @LOSSES.register("l1")
    ... def l1(x): ...
    >>> LOSSES.get("l1") is l1
    True
    """

    def __init__(self, kind: str, field: str | None = None) -> None:
        self.kind = kind
        self.field = field  # the config field that names an entry (``method.name``), quoted in errors
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T | None = None) -> Callable[[T], T]:
        """`@REG.register("name")` on a class or function, or `REG.register("name", obj)`; returns the entry
        unchanged so the decorated object keeps its own name."""
        if not name or not isinstance(name, str):
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")

        def add(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise DuplicateNameError(f"{self.kind} {name!r} is registered twice "
                                         f"({self._entries[name]!r} and {obj!r})")
            self._entries[name] = obj
            return obj

        if entry is not None:
            add(entry)
        return add

    def unregister(self, name: str) -> None:
        """Drop one entry (tests that register a throwaway entry remove it again)."""
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownNameError(self.kind, name, self.names(), self.field) from None

    def check(self, name: str) -> str:
        """The name itself when registered, else `UnknownNameError`."""
        self.get(name)
        return name

    def names(self) -> list[str]:
        return list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
