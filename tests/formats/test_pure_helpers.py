"""Pure helpers, no fixtures: the small rules kmod's output depends on."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lkm.cli.options import UsageError, parse
from lkm.formats.builtin_modinfo import builtin_table
from lkm.formats.compression import Compression, compress, decompress, detect
from lkm.formats.kmod_hash import superfast_hash, superfast_hashes
from lkm.formats.module_file import has_module_extension, module_name_from_path, split_modinfo
from lkm.model.moddir import normalize_alias, normalize_modname
from lkm.model.modinfo import hex_fold, merge_parameters


def test_split_modinfo_like_kmod() -> None:
    assert split_modinfo(b"\0\0license=GPL\0\0alias=a\0noequals\0") == [
        ("license", "GPL"),
        ("alias", "a"),
        ("noequals", ""),
    ]
    assert split_modinfo(b"a=1\0b=2") == [("a", "1"), ("b", "2")]  # unterminated last
    assert split_modinfo(b"\0\0x") == []  # one byte left after the padding: kmod says none
    assert split_modinfo(b"") == []
    assert split_modinfo(b"k=\xff\0") == [("k", "\udcff")]  # bytes survive a round trip


def test_module_names() -> None:
    assert module_name_from_path("/x/y/snd-hda-intel.ko.xz") == "snd_hda_intel"
    assert module_name_from_path("a.b-c.ko") == "a"
    assert has_module_extension("x.ko.zst") and has_module_extension("x.ko.gz")
    assert not has_module_extension(".ko") and not has_module_extension("x.ko.bz2")
    assert normalize_modname("snd-hda.ko") == "snd_hda"


def test_normalize_alias() -> None:
    assert normalize_alias("pci:v-[a-c]d-") == "pci:v_[a-c]d_"
    for bad in ("a]b", "x[y"):
        with pytest.raises(ValueError):
            normalize_alias(bad)


def test_hex_fold() -> None:
    assert hex_fold(b"") == ""
    assert hex_fold(bytes(range(20))) == ":".join(f"{i:02X}" for i in range(20))
    folded = hex_fold(bytes(range(41)))
    lines = folded.split("\n\t\t")
    assert [len(line) for line in lines] == [60, 60, 2]
    assert lines[0].endswith("13:") and lines[2] == "28"


def test_merge_parameters_keeps_first_mention_order() -> None:
    params, warnings = merge_parameters(
        [
            ("parmtype", "b:int"),
            ("parm", "a:first"),
            ("parm", "b:desc"),
            ("parm", "a:second"),
            ("parm", "bad"),
        ]
    )
    assert [(p.name, p.description, p.type) for p in params] == [
        ("b", "desc", "int"),
        ("a", "second", None),
    ]
    assert warnings == ["Found invalid \"parm=bad\": missing ':'"]


def test_builtin_table_first_block_wins() -> None:
    data = b"ext4.license=GPL\0ext4.alias=fs-ext4\0vfat.license=GPL\0ext4.author=later\0"
    table = builtin_table(data)
    assert table["ext4"] == [("license", "GPL"), ("alias", "fs-ext4")]
    assert table["vfat"] == [("license", "GPL")]
    assert builtin_table(b"a.x=1\0nodot\0b.y=2\0") == {"a": [("x", "1")]}


@pytest.mark.parametrize("kind", list(Compression))
def test_compression_round_trip(kind: Compression) -> None:
    data = b"\x7fELF" + bytes(range(256)) * 64
    packed = compress(data, kind)
    assert detect(packed[:6]) is kind
    assert decompress(packed, kind) == data


def test_getopt_long() -> None:
    opts, rest = parse(
        "p", ["x", "-0Ffld", "--fie=v", "--au", "y", "--", "-n"], "0F:n", ["field=", "author"]
    )
    assert opts == [("-0", ""), ("-F", "fld"), ("--field", "v"), ("--author", "")]
    assert rest == ["x", "y", "-n"]
    with pytest.raises(UsageError, match="'--x' is ambiguous"):
        parse("p", ["--x"], "", ["xa", "xb"])
    with pytest.raises(UsageError, match="invalid option -- ':'"):
        parse("p", ["-:"], "F:", [])


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(st.binary(max_size=40), max_size=60))
def test_batched_superfast_hash_equals_one_by_one(keys: list[bytes]) -> None:
    assert superfast_hashes(keys) == [superfast_hash(k) for k in keys]
