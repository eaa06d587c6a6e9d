"""One small registry type for everything tgazsr looks up by name: methods, attacks, attack
objectives, benchmarks (and test-time defenses, backbones).

    METHODS = Registry("method", flag="--method")
    METHODS.register("tga_zsr", definition)
    METHODS.get("tga_zsr")        # an unknown name is a RegistryError naming the closest ones

A registry is an ordered mapping (iteration, ``in``, ``len``, ``[name]`` and ``list(...)`` work as
on a dict), so code that read the former module-level dicts keeps working. Registering a second,
different object under a taken name is an error; registering the same object again is a no-op
(a module imported twice). ``order`` puts names in a declared order (the paper's table) whatever
the import order.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import Callable, Generic, Iterable, TypeVar

from .errors import UserError

T = TypeVar("T")


class RegistryError(KeyError, ValueError, UserError):
    """An unknown name, with the closest registered ones; or a name registered twice."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def close_matches(name: str, candidates: Iterable[str], n: int = 3, cutoff: float = 0.6) -> list[str]:
    """The registered names closest to ``name`` (case-insensitive), best first."""
    candidates = list(candidates)
    lower = {c.lower(): c for c in candidates}
    return [lower[m] for m in difflib.get_close_matches(str(name).lower(), list(lower), n=n, cutoff=cutoff)]


def did_you_mean(name: str, candidates: Iterable[str], n: int = 3, cutoff: float = 0.6) -> str:
    """`` Did you mean a, b?`` or an empty string."""
    close = close_matches(name, candidates, n, cutoff)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


class Registry(Mapping[str, T], Generic[T]):
    """Name -> definition, in registration (or declared) order."""

    def __init__(self, kind: str, flag: str | None = None, check: Callable[[str, T], None] | None = None):
        self.kind = kind  # "method", "attack", ... for messages
        self.flag = flag  # how a user names one, for messages ("--method")
        self._check = check
        self._items: dict[str, T] = {}

    # --- Mapping -------------------------------------------------------------------------
    def __getitem__(self, name: str) -> T:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._items)})"

    # --- registering ---------------------------------------------------------------------
    def register(self, name: str, item: T) -> T:
        if self._check is not None:
            self._check(name, item)
        if name in self._items and self._items[name] is not item and self._items[name] != item:
            raise RegistryError(f"A {self.kind} named {name!r} is already registered.")
        self._items[name] = item
        return item

    def unregister(self, name: str) -> None:
        self._items.pop(name, None)

    def order(self, names: Iterable[str]) -> None:
        """Put ``names`` first, in this order; the others keep their order after them."""
        names = [n for n in names if n in self._items]
        rest = [n for n in self._items if n not in names]
        self._items = {n: self._items[n] for n in names + rest}

    # --- looking up ----------------------------------------------------------------------
    def get(self, name: str, default=None) -> T:  # type: ignore[override]
        """The definition named ``name``; an unknown name is a :class:`RegistryError` naming the
        closest ones (``default`` is accepted for ``Mapping`` compatibility and never returned for
        a miss: a miss is always an error)."""
        if name in self._items:
            return self._items[name]
        where = f" ({self.flag})" if self.flag else ""
        raise RegistryError(
            f"Unknown {self.kind} {name!r}{where}.{did_you_mean(name, self._items)} "
            f"Registered {self.kind}s: {', '.join(self._items) or '(none)'}."
        )

    def names(self) -> list[str]:
        return list(self._items)
