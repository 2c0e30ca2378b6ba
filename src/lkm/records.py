"""Plain data classes for the hot start-up path, without :mod:`dataclasses`.

Importing dataclasses (it pulls in inspect, ast and dis) and generating
each class's methods costs 15–20 ms, a few percent of a whole depmod run
of a kernel tree; the classes depmod and the module readers use are
written out instead. A subclass lists its fields in ``__slots__`` and
writes its own ``__init__``; comparison, hashing and ``repr`` come from
here, over those fields, as a dataclass would have them.
"""

from __future__ import annotations


class Record:
    """Equality and ``repr`` over ``__slots__``; unhashable (mutable):
    defining ``__eq__`` alone sets ``__hash__`` to None, as for a
    dataclass that is not frozen."""

    __slots__: tuple[str, ...] = ()

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Record)
        return self._fields() == other._fields()

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"


class FrozenRecord(Record):
    """A :class:`Record` meant never to change after ``__init__``: hashable."""

    __slots__ = ()

    def __hash__(self) -> int:
        return hash(self._fields())
