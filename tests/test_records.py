"""lkm.records: the one record style (fields, frozen, replace, pickling)."""

from __future__ import annotations

import pickle

import pytest

from lkm.records import _COMPILE_AFTER, FrozenInstanceError, Record, field


class Step(Record):
    action: str
    module: str
    path: str | None = None
    options: tuple[str, ...] = field(default_factory=tuple)


class Counter(Record, frozen=False):
    name: str
    seen: list[str] = field(default_factory=list)


class Timed(Step):
    seconds: float = 0.0


class Checked(Record):
    value: int

    def __post_init__(self) -> None:
        if self.value < 0:
            raise ValueError("negative")


def test_fields_in_order_positional_or_keyword() -> None:
    step = Step("insmod", "x", path="/x.ko")
    assert (step.action, step.module, step.path, step.options) == ("insmod", "x", "/x.ko", ())
    assert Step.__fields__ == ("action", "module", "path", "options")
    assert Step(action="insmod", module="x") == Step("insmod", "x")
    assert repr(step) == "Step(action='insmod', module='x', path='/x.ko', options=())"


def test_frozen_records_refuse_changes_and_hash_by_value() -> None:
    step = Step("rmmod", "y")
    with pytest.raises(FrozenInstanceError):
        step.path = "z"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del step.module  # type: ignore[misc]
    assert hash(step) == hash(Step("rmmod", "y"))
    assert len({step, Step("rmmod", "y")}) == 1
    assert not hasattr(step, "__dict__")


def test_replace_copies_with_changes_and_rejects_unknown_fields() -> None:
    step = Step("insmod", "x")
    moved = step.replace(path="/elsewhere.ko")
    assert moved == Step("insmod", "x", "/elsewhere.ko") and step.path is None
    with pytest.raises(TypeError, match="no fields"):
        step.replace(colour="red")


def test_mutable_records_are_unhashable_and_defaults_are_not_shared() -> None:
    first, second = Counter("a"), Counter("b")
    first.seen.append("x")
    first.name = "renamed"
    assert second.seen == [] and first == Counter("renamed", ["x"])
    with pytest.raises(TypeError):
        hash(first)


def test_subclasses_extend_the_fields_and_equality_needs_the_same_type() -> None:
    timed = Timed("insmod", "x", seconds=1.5)
    assert Timed.__fields__ == (*Step.__fields__, "seconds")
    assert timed != Step("insmod", "x")


def test_post_init_and_pickling() -> None:
    with pytest.raises(ValueError, match="negative"):
        Checked(-1)
    for record in (Step("insmod", "x", "/p", ("a=1",)), Counter("c", ["y"]), Timed("a", "b")):
        assert pickle.loads(pickle.dumps(record)) == record


def test_a_field_without_default_after_one_with_is_refused() -> None:
    with pytest.raises(TypeError, match="follows"):

        class Bad(Record):
            first: int = 0
            second: int


def test_init_is_compiled_after_a_few_instances_and_binds_the_same_way() -> None:
    # issue 20: declaring a record compiles nothing; a stand-in __init__
    # binds the first instances, then the class's own is compiled.
    class Lazy(Record):
        name: str
        size: int = 0
        tags: list[str] = field(default_factory=list)

    class Grown(Lazy):
        def __init__(self, name: str) -> None:  # by hand, through the base's
            super().__init__(name, len(name))

    stand_in = Lazy.__init__
    bad_calls = (
        lambda: Lazy(),
        lambda: Lazy("x", 1, [], 2),
        lambda: Lazy("x", colour=1),
        lambda: Lazy("x", name="y"),
    )
    built = []
    for _ in range(3 * _COMPILE_AFTER):
        for bad_call in bad_calls:
            with pytest.raises(TypeError):
                bad_call()
        built += [Lazy("x", size=2), Lazy(name="x", size=2, tags=[]), Grown("xy")]
        built[-1].tags.append("shared?")
    assert Lazy.__init__ is not stand_in  # Grown's super() calls counted too
    assert Lazy.__init__.__code__.co_varnames[:4] == ("self", "name", "size", "tags")
    assert all(one == Lazy("x", 2) for one in built[0::3] + built[1::3])
    assert all(one.size == 2 and one.tags == ["shared?"] for one in built[2::3])
    with pytest.raises(FrozenInstanceError):
        built[0].size = 3  # type: ignore[misc]
