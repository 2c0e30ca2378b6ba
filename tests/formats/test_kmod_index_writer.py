"""The index writer: byte-identical to kmod 30's depmod in post-order
layout, and the same answers in kmod 34's pre-order layout."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lkm.formats.kmod_index import IndexFile, KmodIndex
from lkm.formats.kmod_index_writer import IndexBuilder, Layout
from lkm.testing.debian_kernels import KernelFixture

INDEXES = (
    "modules.dep.bin",
    "modules.alias.bin",
    "modules.symbols.bin",
    "modules.builtin.bin",
    "modules.builtin.alias.bin",
)


def _rebuild(path: Path) -> tuple[IndexFile, IndexBuilder]:
    index = IndexFile(str(path))
    builder = IndexBuilder()
    for key, values in index.items():
        # The reader reverses equal priorities the way kmod's reader does;
        # inserting in that order makes the writer reverse them back.
        for value in values:
            builder.insert(key, value.value, value.priority)
    return index, builder


@pytest.mark.parametrize("label", ["6.1", "6.12", "6.1-s390x", "6.1-armhf"])
def test_post_order_equals_kmod_30(kernels: list[KernelFixture], label: str, report) -> None:  # type: ignore[no-untyped-def]
    moddir = next(k for k in kernels if k.label == label).indexed_moddir
    keys = 0
    for name in INDEXES:
        index, builder = _rebuild(moddir / name)
        assert builder.to_bytes(Layout.POST_ORDER) == (moddir / name).read_bytes(), name
        pre = KmodIndex(builder.to_bytes(Layout.PRE_ORDER))
        assert list(pre.items()) == list(index.items()), name
        keys += len(builder)
        index.close()
    report(
        f"index writer on {label}: {len(INDEXES)} files, {keys} keys byte-identical (post-order)"
    )


KEYS = st.text(alphabet="ab*?[]-_:0", min_size=0, max_size=6)


@settings(max_examples=300, deadline=None, database=None)
@given(
    entries=st.lists(
        st.tuples(KEYS, st.sampled_from(["m1", "m2", "m3"]), st.integers(0, 3)), max_size=30
    )
)
def test_both_layouts_answer_alike(entries: list[tuple[str, str, int]]) -> None:
    builder = IndexBuilder()
    for key, value, priority in entries:
        builder.insert(key, value, priority)
    pre = KmodIndex(builder.to_bytes(Layout.PRE_ORDER))
    post = KmodIndex(builder.to_bytes(Layout.POST_ORDER))
    assert list(pre.items()) == list(post.items())
    assert {k for k, _ in pre.items()} == {k for k, _, _ in entries}
    for key, _, _ in entries:
        assert pre.lookup_all(key) == post.lookup_all(key)
        assert pre.search_wild(key) == post.search_wild(key)


def test_duplicates_are_reported_and_kept() -> None:
    builder = IndexBuilder()
    assert not builder.insert("k", "v", 1)
    assert builder.insert("k", "v", 1)
    assert [v.value for v in KmodIndex(builder.to_bytes()).lookup_all("k")] == ["v", "v"]


def test_empty_index() -> None:
    assert list(KmodIndex(IndexBuilder().to_bytes()).items()) == []


@pytest.mark.parametrize("one_by_one", [True, False])
def test_keys_that_are_not_ascii_are_set_aside_and_the_rest_written(one_by_one: bool) -> None:
    entries = [("ok", "m1", 0), ("é", "m2", 1), ("bad\udcff", "m3", 2), ("name", "v\udcff", 3)]
    builder = IndexBuilder()
    if one_by_one:
        for entry in entries:
            builder.insert(*entry)
    else:
        builder.extend(entries)
    assert builder.left_out == [("é", "m2", 1), ("bad\udcff", "m3", 2)]
    index = KmodIndex(builder.to_bytes())
    assert [(k, [v.value for v in vs]) for k, vs in index.items()] == [
        ("name", ["v\udcff"]),
        ("ok", ["m1"]),
    ]
    assert b"v\xff\0" in builder.to_bytes()  # a value is written as its bytes


@settings(max_examples=200, deadline=None, database=None)
@given(
    entries=st.lists(
        st.tuples(KEYS, st.sampled_from(["m1", "m2", "m3"]), st.integers(0, 3)), max_size=30
    ),
    unique=st.booleans(),
)
def test_extend_equals_inserting_one_by_one(
    entries: list[tuple[str, str, int]], unique: bool
) -> None:
    if unique:  # the one-step path: every key new and distinct
        entries = list({key: (key, value, rank) for key, value, rank in entries}.values())
    one_by_one, extended = IndexBuilder(), IndexBuilder()
    duplicates = [(k, v) for k, v, rank in entries if one_by_one.insert(k, v, rank)]
    assert extended.extend(entries) == duplicates
    for layout in Layout:
        assert extended.to_bytes(layout) == one_by_one.to_bytes(layout)
