"""lkm's one record style: declared fields, slotted, frozen, with ``replace``.

A record is declared as a dataclass would be::

    class Step(Record):
        action: str
        module: str
        path: str | None = None

and gets ``__slots__``, an ``__init__`` taking the fields in order
(positionally or by keyword), value equality, ``repr``, ``replace`` and
pickling. Records are frozen (and hashable) unless declared with
``class X(Record, frozen=False)``. A mutable default is written
``field(default_factory=list)``; ``__post_init__`` runs after ``__init__``
when a record defines one.

Why not :mod:`dataclasses`: importing it (it pulls in inspect, ast and
dis) costs 13-16 ms, and making each class another 0.1-0.3 ms, on every
start of every tool — more than ``lkm modprobe -D`` spends on its own work.
This module imports nothing and declares a class in tens of µs; a
record's ``__init__`` is compiled (~0.15 ms) only once a run has built a
few instances, so a tool pays that only for the records it builds in bulk
(``bench/records_bench.py`` measures both). Type checkers see records as
dataclasses (:pep:`681`).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, ClassVar, Self, dataclass_transform
else:

    def dataclass_transform(**_options: object) -> Callable[[type], type]:
        return lambda cls: cls


class FrozenInstanceError(AttributeError):
    """A field of a frozen record was assigned."""


class _Field:
    """What :func:`field` declares: a default or a factory for one."""

    __slots__ = ("default", "default_factory")

    def __init__(self, default: object, default_factory: Callable[[], object] | None) -> None:
        self.default = default
        self.default_factory = default_factory


_MISSING = object()


def field(*, default: Any = _MISSING, default_factory: Callable[[], Any] | None = None) -> Any:
    """A field's default given as a factory (``field(default_factory=list)``),
    so that no two records share one mutable default."""
    return _Field(default, default_factory)


def _frozen_setattr(self: object, name: str, value: object) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r} of {type(self).__name__}")


def _frozen_delattr(self: object, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r} of {type(self).__name__}")


def _init_source(
    fields: tuple[str, ...], defaults: dict[str, object], frozen: bool, post_init: bool
) -> str:
    """``__init__``'s source: one parameter per field (a default's value is
    looked up in ``_defaults``, a factory is called when the argument is
    left out), each stored in its slot, then ``__post_init__`` if any."""
    params = []
    body = []
    for name in fields:
        default = defaults.get(name, _MISSING)
        if isinstance(default, _Field) and default.default_factory is not None:
            params.append(f"{name}=_NOTHING")
            body.append(f"if {name} is _NOTHING: {name} = _defaults[{name!r}].default_factory()")
        elif default is not _MISSING:
            params.append(f"{name}=_defaults[{name!r}]")
        else:
            params.append(name)
        if frozen:  # the slot's own setter: past __setattr__, and faster than object's
            body.append(f"_set_{name}(self, {name})")
        else:
            body.append(f"self.{name} = {name}")
    if post_init:
        body.append("_post(self)")
    if not body:
        body.append("pass")
    lines = [f"def __init__(self, {', '.join(params)}) -> None:", *(f"    {b}" for b in body)]
    return "\n".join(lines)


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
class RecordMeta(type):
    """Makes each record class's slots and methods from its annotations."""

    def __new__(
        mcls, name: str, bases: tuple[type, ...], namespace: dict[str, Any], frozen: bool = True
    ) -> RecordMeta:
        inherited: tuple[str, ...] = ()
        defaults: dict[str, object] = {}
        for base in reversed(bases):
            inherited += tuple(f for f in getattr(base, "__fields__", ()) if f not in inherited)
            defaults.update(getattr(base, "_defaults", {}))
        own = tuple(
            field_name
            for field_name, annotation in namespace.get("__annotations__", {}).items()
            if not str(annotation).startswith(("ClassVar", "typing.ClassVar"))
            and field_name not in inherited
            and not field_name.startswith("__")
        )
        for field_name in own:
            if field_name in namespace:
                value = namespace.pop(field_name)
                if isinstance(value, _Field) and value.default_factory is None:
                    value = value.default
                if value is not _MISSING:
                    defaults[field_name] = value
        fields = inherited + own
        namespace["__slots__"] = own
        namespace["__fields__"] = fields
        namespace["__match_args__"] = fields
        namespace["_defaults"] = defaults
        if frozen:
            namespace["__setattr__"] = _frozen_setattr
            namespace["__delattr__"] = _frozen_delattr
        else:
            namespace["__setattr__"] = object.__setattr__
            namespace["__delattr__"] = object.__delattr__
            namespace["__hash__"] = None  # mutable: unhashable
        cls = super().__new__(mcls, name, bases, namespace)
        _add_init(cls, fields, defaults, frozen)
        return cls


def _add_init(
    cls: type, fields: tuple[str, ...], defaults: dict[str, object], frozen: bool
) -> None:
    if "__init__" in cls.__dict__:
        return  # written by hand (a hot path that measured faster that way)
    # Positional parameters must not follow defaulted ones: as a dataclass,
    # a field without a default after one with a default is an error.
    seen_default = False
    for name in fields:
        if name in defaults:
            seen_default = True
        elif seen_default:
            raise TypeError(f"{cls.__name__}: field {name!r} without a default follows one with")
    cls.__init__ = _first_init(cls, fields, defaults, frozen)  # type: ignore[misc]


# Instances a class's stand-in __init__ builds before its own is compiled.
_COMPILE_AFTER = 16


def _first_init(
    cls: type, fields: tuple[str, ...], defaults: dict[str, object], frozen: bool
) -> Callable[..., None]:
    """A stand-in ``__init__``: it binds its arguments by walking the fields,
    and after ``_COMPILE_AFTER`` instances compiles the class's own one and
    puts it in its place. Compiling costs ~0.15 ms a class, and a run of
    ``modprobe -D`` declares 13 records and builds only a few instances of
    eight of them; a class built in bulk soon gets its fast ``__init__``."""
    built = 0

    def __init__(self: object, *args: object, **kwargs: object) -> None:
        nonlocal built
        built += 1
        if built <= _COMPILE_AFTER:
            _bind(cls, fields, defaults, self, args, kwargs)
            return
        init = _make_init(cls, fields, defaults, frozen)
        cls.__init__ = init  # type: ignore[misc]
        init(self, *args, **kwargs)

    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    return __init__


def _bind(
    cls: type,
    fields: tuple[str, ...],
    defaults: dict[str, object],
    record: object,
    args: tuple[object, ...],
    kwargs: dict[str, object],
) -> None:
    """What a compiled ``__init__`` does, field by field: the same values,
    the same kinds of TypeError."""
    name = cls.__name__
    if len(args) > len(fields):
        raise TypeError(f"{name}() takes {len(fields)} arguments but {len(args)} were given")
    values = dict(zip(fields, args, strict=False))  # the rest from keywords
    for key, value in kwargs.items():
        if key in values:
            raise TypeError(f"{name}() got multiple values for argument {key!r}")
        if key not in fields:
            raise TypeError(f"{name}() got an unexpected keyword argument {key!r}")
        values[key] = value
    for field_name in fields:
        if field_name in values:
            value = values[field_name]
        elif field_name not in defaults:
            raise TypeError(f"{name}() missing required argument: {field_name!r}")
        else:
            default = defaults[field_name]
            factory = default.default_factory if isinstance(default, _Field) else None
            value = factory() if factory is not None else default
        _slot(cls, field_name).__set__(record, value)
    post = getattr(cls, "__post_init__", None)
    if post is not None:
        post(record)


def _slot(cls: type, name: str) -> Any:
    """The slot descriptor that stores field ``name`` (past ``__setattr__``,
    which a frozen record refuses)."""
    return next(klass.__dict__[name] for klass in cls.__mro__ if name in klass.__dict__)


def _make_init(
    cls: type, fields: tuple[str, ...], defaults: dict[str, object], frozen: bool
) -> Callable[..., None]:
    post = getattr(cls, "__post_init__", None)
    scope: dict[str, object] = {
        "_defaults": defaults,
        "_NOTHING": _MISSING,
        "_post": post,
    }
    for name in fields:
        scope[f"_set_{name}"] = _slot(cls, name).__set__
    source = _init_source(fields, defaults, frozen, post is not None)
    exec(source, scope)  # our own source, made from the field names
    init: Callable[..., None] = scope["__init__"]  # type: ignore[assignment]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    return init


class Record(metaclass=RecordMeta):
    """Base of every record; see the module's documentation."""

    __fields__: ClassVar[tuple[str, ...]]

    def _values(self) -> tuple[object, ...]:
        return tuple([getattr(self, name) for name in self.__fields__])

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__fields__)
        return f"{type(self).__name__}({fields})"

    def __reduce__(self) -> tuple[type[Self], tuple[object, ...]]:
        # Rebuilt through __init__: a frozen record's slots cannot be set
        # one by one, as pickle's default for slotted objects would.
        return type(self), self._values()

    def replace(self, **changes: Any) -> Self:
        """A copy with the given fields changed."""
        values = {name: getattr(self, name) for name in self.__fields__}
        unknown = changes.keys() - values.keys()
        if unknown:
            raise TypeError(f"{type(self).__name__} has no fields {sorted(unknown)}")
        values.update(changes)
        return type(self)(**values)


__all__ = ["FrozenInstanceError", "Record", "field"]
