"""kmod's binary index reader, checked against the text files kmod's depmod
wrote next to each ``.bin`` and against glibc's fnmatch."""

from __future__ import annotations

import ctypes
import ctypes.util
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lkm.errors import IndexFormatError
from lkm.formats.fnmatch import fnmatch
from lkm.formats.kmod_index import INDEX_MAGIC, IndexFile, KmodIndex
from lkm.model.moddir import normalize_alias
from lkm.testing.debian_kernels import KernelFixture


@pytest.mark.parametrize("label", ["6.1", "6.12"])
def test_dep_bin_holds_modules_dep(kernels: list[KernelFixture], label: str, report) -> None:  # type: ignore[no-untyped-def]
    moddir = next(k for k in kernels if k.label == label).indexed_moddir
    expected = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        path = line.split(":", 1)[0]
        name = path.rsplit("/", 1)[-1].split(".", 1)[0].replace("-", "_")
        expected[name] = line
    index = IndexFile(str(moddir / "modules.dep.bin"))
    got = {key: values[0].value for key, values in index.items()}
    index.close()
    assert got == expected
    report(f"modules.dep.bin keys on {label}: {len(got)}")


@pytest.mark.parametrize("label", ["6.1", "6.12"])
def test_alias_bin_holds_modules_alias(kernels: list[KernelFixture], label: str, report) -> None:  # type: ignore[no-untyped-def]
    moddir = next(k for k in kernels if k.label == label).indexed_moddir
    expected = set()
    for line in (moddir / "modules.alias").read_text().splitlines():
        if line.startswith("alias "):
            _, pattern, module = line.split(" ")
            expected.add((normalize_alias(pattern), module))
    index = IndexFile(str(moddir / "modules.alias.bin"))
    got = {(key, v.value) for key, values in index.items() for v in values}
    index.close()
    assert got == expected
    report(f"modules.alias.bin pairs on {label}: {len(got)}")


def test_exact_and_wild_lookups(kernel_61: KernelFixture) -> None:
    moddir = kernel_61.indexed_moddir
    dep = IndexFile(str(moddir / "modules.dep.bin"))
    line = dep.lookup("loop")
    assert line is not None and line.startswith("kernel/drivers/block/loop.ko:")
    assert dep.lookup("loo") is None and dep.lookup("loopx") is None
    alias = IndexFile(str(moddir / "modules.alias.bin"))
    assert [v.value for v in alias.search_wild("block_major_7_0")] == ["loop"]
    assert alias.search_wild("no_such_alias") == []


def _tiny_index() -> bytes:
    """Root with prefix 'ab', one value (priority 1, 'v'); no children."""
    body = b"ab\0" + struct.pack(">I", 1) + struct.pack(">I", 1) + b"v\0"
    root = 12 | 0x80000000 | 0x40000000
    return struct.pack(">III", INDEX_MAGIC, 0x00020001, root) + body


def test_tiny_handmade_index() -> None:
    index = KmodIndex(_tiny_index())
    assert index.lookup("ab") == "v"
    assert index.lookup("a") is None
    assert next(iter(index.items()))[0] == "ab"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short"),
        (b"\0" * 12, "bad magic"),
        (struct.pack(">III", INDEX_MAGIC, 0x00030000, 12), "unsupported index version"),
        (_tiny_index()[:-4], "truncated value"),
        (_tiny_index()[:-1], "unterminated value"),
        (struct.pack(">III", INDEX_MAGIC, 0x00020001, 0x4000FFFF), "beyond the end"),
    ],
)
def test_malformed_index(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "modules.dep.bin"
    path.write_bytes(data)
    with pytest.raises(IndexFormatError, match=message) as info:
        IndexFile(str(path)).lookup("ab")
    assert str(path) in str(info.value)


def test_cyclic_trie_is_an_error() -> None:
    # Root '*' child pointing back at the root: a wildcard walk would loop.
    header = struct.pack(">III", INDEX_MAGIC, 0x00020001, 12 | 0x20000000)
    node = b"**" + struct.pack(">I", 12 | 0x20000000)
    with pytest.raises(IndexFormatError, match="cycle"):
        KmodIndex(header + node).search_wild("x")


_libc = ctypes.CDLL(ctypes.util.find_library("c"))
_libc.fnmatch.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]


def glibc_fnmatch(pattern: str, string: str) -> bool:
    return _libc.fnmatch(pattern.encode(), string.encode(), 0) == 0


PATTERN_ALPHABET = st.sampled_from(
    [*list("ab*?[]!^-\\:0"), "[:digit:]", "[:alpha:]", "[a-c]", "[!a]"]
)


@settings(max_examples=3000, deadline=None, database=None)
@given(
    pattern=st.lists(PATTERN_ALPHABET, max_size=8).map("".join),
    string=st.text(alphabet="ab0[]!-\\:*?c9", max_size=8),
)
def test_fnmatch_agrees_with_glibc(pattern: str, string: str) -> None:
    assert fnmatch(pattern, string) == glibc_fnmatch(pattern, string), (pattern, string)


def test_fnmatch_real_alias_patterns(kernel_61: KernelFixture, report) -> None:  # type: ignore[no-untyped-def]
    lines = (kernel_61.indexed_moddir / "modules.alias").read_text().splitlines()
    patterns = sorted({line.split(" ")[1] for line in lines})[::7]
    probes = [
        "pci:v00008086d00001572sv00008086sd00000000bc02sc00i00",
        "usb:v046Dp0825d0012dc00dsc00dp00icFFiscFFipFFin00",
        "acpi*:PNP0A08:*",
        "of:NfooTbarCbaz",
        "platform:serial8250",
    ]
    compared = 0
    for pattern in patterns:
        for probe in [*probes, pattern.replace("*", "")]:
            assert fnmatch(pattern, probe) == glibc_fnmatch(pattern, probe), (pattern, probe)
            compared += 1
    report(f"fnmatch vs glibc on real alias patterns: {compared} cases")


# -- bulk searches: the branch table answers as the walk does --------------------


def _with_heads(data: bytes | IndexFile) -> KmodIndex:
    index = KmodIndex(data) if isinstance(data, bytes) else data
    heads = index._try_build_heads()
    assert heads is not None
    index._heads = heads
    return index


def _concrete(pattern: str) -> str:
    """A string ``pattern`` is likely to match: stars dropped, '?' as '0',
    a bracket expression as its first member."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "[" and "]" in pattern[i + 2 :]:
            end = pattern.index("]", i + 2)
            out.append(pattern[i + 1].lstrip("!^") or "x")
            i = end + 1
            continue
        out.append({"*": "", "?": "0"}.get(char, char))
        i += 1
    return "".join(out)


@pytest.mark.parametrize("label", ["6.1", "6.12"])
def test_branch_table_answers_as_the_walk(kernels: list[KernelFixture], label: str, report) -> None:  # type: ignore[no-untyped-def]
    moddir = next(k for k in kernels if k.label == label).indexed_moddir
    walk = IndexFile(str(moddir / "modules.alias.bin"))
    table_file = IndexFile(str(moddir / "modules.alias.bin"))
    table = _with_heads(table_file)
    keys = [_concrete(key) for key, _ in walk.items()]
    keys += [key + "x" for key in keys[::7]]  # a tail no pattern may expect
    found = 0
    for key in keys:
        expected = walk._search_walk(key)
        assert table.search_wild(key) == expected, key
        found += bool(expected)
    walk.close()
    table_file.close()
    assert found > len(keys) * 0.8
    report(f"alias branch table on {label}: {len(keys)} keys answered as the walk ({found} found)")


SEARCH_KEYS = st.text(alphabet="ab*?[]-_:0é", min_size=0, max_size=7)


@settings(max_examples=300, deadline=None, database=None)
@given(
    entries=st.lists(
        st.tuples(SEARCH_KEYS, st.sampled_from(["m1", "m2", "m3"]), st.integers(0, 2)),
        max_size=30,
    ),
    keys=st.lists(st.text(alphabet="ab-_:0é*", max_size=8), max_size=10),
)
def test_branch_table_on_any_index(entries: list[tuple[str, str, int]], keys: list[str]) -> None:
    from lkm.formats.kmod_index_writer import IndexBuilder

    builder = IndexBuilder()
    for key, value, priority in entries:
        builder.insert(key, value, priority)
    data = builder.to_bytes()
    walk, table = KmodIndex(data), _with_heads(data)
    for key in [*keys, *(_concrete(k) for k, _, _ in entries)]:
        assert table.search_wild(key) == walk._search_walk(key), key


def test_branch_table_comes_after_many_searches(kernel_61: KernelFixture) -> None:
    from lkm.formats import kmod_index

    index = IndexFile(str(kernel_61.indexed_moddir / "modules.alias.bin"))
    for _ in range(kmod_index.HEADS_AFTER - 1):
        index.search_wild("block_major_7_0")
    assert index._heads is None  # a few lookups never pay for the table
    assert [v.value for v in index.search_wild("block_major_7_0")] == ["loop"]
    assert index._heads is not None
    index.close()


def test_corrupt_branch_no_search_reaches_keeps_the_walk() -> None:
    # A trie whose root has children 'a' (sound) and 'b' (beyond the file):
    # the table cannot be built, searches under 'a' still work.
    from lkm.formats.kmod_index_format import NODE_CHILDS, NODE_PREFIX, NODE_VALUES

    header_size = 12
    root = header_size
    leaf = root + 2 + 8
    children = struct.pack(">BB", ord("a"), ord("b"))
    body = children + struct.pack(">II", leaf | NODE_PREFIX | NODE_VALUES, 1 << 20 | NODE_PREFIX)
    body += b"x\0" + struct.pack(">I", 1) + struct.pack(">I", 0) + b"mod\0"
    data = struct.pack(">III", INDEX_MAGIC, 0x00020001, root | NODE_CHILDS) + body
    index = KmodIndex(data)
    assert index._try_build_heads() is None
    assert [v.value for v in index.search_wild("ax")] == ["mod"]
    with pytest.raises(IndexFormatError):
        index.search_wild("bx")
