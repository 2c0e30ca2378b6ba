"""lkm's fnmatch against glibc's ``fnmatch(3)`` itself, called through
ctypes in the C locale (kmod's tools never call setlocale): generated
patterns and names over an alphabet rich in what brackets and escapes are
made of, bytes that are not ASCII or not UTF-8 among them; every example
under a deadline, and patterns that made the old regex translation
backtrack for seconds asserted to finish in milliseconds (issue 14).

``LKM_FUZZ_EXAMPLES`` sets how many examples each property test runs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from conftest import fuzz_example
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lkm.formats import fnmatch as fnmatch_module
from lkm.formats.fnmatch import fnmatch, match_any

EXAMPLES = int(os.environ.get("LKM_FUZZ_EXAMPLES", "2200"))
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=timedelta(milliseconds=200),
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# -- glibc, in the C locale ------------------------------------------------------

_libc = ctypes.CDLL(ctypes.util.find_library("c"))
_libc.fnmatch.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
_libc.fnmatch.restype = ctypes.c_int
_libc.newlocale.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p]
_libc.newlocale.restype = ctypes.c_void_p
_libc.uselocale.argtypes = [ctypes.c_void_p]
_libc.uselocale.restype = ctypes.c_void_p
_LC_ALL_MASK = 0x1FBF  # glibc: every LC_*_MASK bit but LC_ALL's own (6)
# Python set LC_CTYPE from the environment (C.UTF-8 often), where glibc's
# fnmatch matches wide characters; kmod runs in the C locale: bytes.
_C_LOCALE = _libc.newlocale(_LC_ALL_MASK, b"C", None)


def glibc_fnmatch(pattern: bytes, string: bytes) -> bool:
    """glibc's answer, in the C locale for this thread only."""
    previous = _libc.uselocale(_C_LOCALE)
    try:
        return bool(_libc.fnmatch(pattern, string, 0) == 0)
    finally:
        _libc.uselocale(previous)


def ours(pattern: bytes, string: bytes) -> bool:
    """lkm's answer for the same bytes, as lkm holds them (surrogateescape)."""
    return fnmatch(
        pattern.decode("utf-8", "surrogateescape"), string.decode("utf-8", "surrogateescape")
    )


def test_the_oracle_is_in_the_c_locale() -> None:
    # In a UTF-8 locale '?' would take all of 'é' (two bytes).
    assert glibc_fnmatch(b"??", "é".encode()) and not glibc_fnmatch(b"?", "é".encode())


# -- generated patterns and names --------------------------------------------------

ATOMS = [
    *(bytes([c]) for c in b"ab*?[]!^-\\:=.zAZ09"),
    b"*", b"*", b"?",
    b"[:alpha:]", b"[:digit:]", b"[:upper:]", b"[:punct:]", b"[:space:]", b"[:xdigit:]",
    b"[:nosuch:]", b"[:", b":]", b"[=a=]", b"[=", b"=]",
    b"[.a.]", b"[.-.]", b"[.ab.]", b"[.", b".]",
    b"[a-c]", b"[!a]", b"[^a]", b"[]a]", b"[!]]", b"a-", b"-[", b"A-[", b"\\]", b"\\*", b"\\",
    "é".encode(), b"\xc3", b"\x80", b"\xff", b"[\x80-\xff]", b"[!\xc3]",
    # brackets whose end depends on the byte that matched (the automaton)
    b"[xA-[:alpha:]]", b"[!xA-[:digit:]]", b"[aZ-[=b=]", b"[a[.b.]-[:alpha:]]",
]  # fmt: skip
NAME_BYTES = [bytes([c]) for c in b"ab[]!^-\\:=.*?zAZ09 \t\x01\x7f\x80\xa9\xc3\xff"]


@functools.cache
def matching_pieces(atom: bytes) -> list[bytes]:
    """Short names glibc says ``atom`` alone matches (a byte, or one more
    ']' where a bracket leaves one to match)."""
    pieces = [*NAME_BYTES, *(b + b"]" for b in NAME_BYTES), b"x]", b"B]]", b"\xc3\xa9"]
    return [piece for piece in pieces if glibc_fnmatch(atom, piece)]


@st.composite
def pattern_and_name(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A pattern, and a name made from it (so that many examples match):
    stars filled with a few bytes, each other atom with what it matches
    alone (or a byte); or a name drawn freely."""
    atoms = draw(st.lists(st.sampled_from(ATOMS), max_size=12))
    pattern = b"".join(atoms)
    if draw(st.integers(0, 3)) == 0:
        return pattern, b"".join(draw(st.lists(st.sampled_from(NAME_BYTES), max_size=12)))
    name = b""
    for atom in atoms:
        if atom == b"*":
            name += b"".join(draw(st.lists(st.sampled_from(NAME_BYTES), max_size=3)))
        elif matching_pieces(atom) and draw(st.integers(0, 7)):
            name += draw(st.sampled_from(matching_pieces(atom)))
        else:
            name += draw(st.sampled_from(NAME_BYTES))
    return pattern, name


@PROPERTY
@given(case=pattern_and_name())
def test_fnmatch_agrees_with_glibc(case: tuple[bytes, bytes]) -> None:
    pattern, name = case
    assert ours(pattern, name) == glibc_fnmatch(pattern, name), case
    fuzz_example("fnmatch vs glibc fnmatch(3), C locale")


@PROPERTY
@given(
    patterns=st.lists(st.lists(st.sampled_from(ATOMS), max_size=6).map(b"".join), max_size=10),
    names=st.lists(st.lists(st.sampled_from(NAME_BYTES), max_size=8).map(b"".join), max_size=10),
)
def test_match_any_is_any_fnmatch(patterns: list[bytes], names: list[bytes]) -> None:
    texts = [p.decode("utf-8", "surrogateescape") for p in patterns]
    matches = match_any(texts)
    for name in names:
        text = name.decode("utf-8", "surrogateescape")
        assert matches(text) == any(fnmatch(p, text) for p in texts), (patterns, name)
    fuzz_example("match_any vs any(fnmatch)")


# -- the rules one by one, every byte ------------------------------------------------

CLASSES = [b"alnum", b"alpha", b"blank", b"cntrl", b"digit", b"graph",
           b"lower", b"print", b"punct", b"space", b"upper", b"xdigit"]  # fmt: skip


def _every_byte() -> Iterator[bytes]:
    return (bytes([b]) for b in range(1, 256))


@pytest.mark.parametrize("name", CLASSES)
def test_classes_are_the_c_locales_on_every_byte(name: bytes) -> None:
    for byte in _every_byte():
        for pattern in (b"[[:" + name + b":]]", b"[![:" + name + b":]]"):
            assert ours(pattern, byte) == glibc_fnmatch(pattern, byte), (pattern, byte)


def test_single_byte_wildcards_on_every_byte() -> None:
    for byte in _every_byte():
        for pattern in (b"?", b"[\x01-\xff]", b"[\x80-\xc3]", b"[!a-z]", b"[=" + byte + b"=]",
                        b"\\" + byte, b"[\\" + byte + b"]", b"*" + byte):  # fmt: skip
            assert ours(pattern, byte) == glibc_fnmatch(pattern, byte), (pattern, byte)


def test_bytes_not_characters() -> None:
    assert fnmatch("??", "ü") and not fnmatch("?", "ü")  # two bytes in UTF-8
    assert fnmatch("[\udcc3]?", "ü")  # its first byte, as lkm holds a lone byte
    assert fnmatch("x\udcff*", "x\udcffy") and not fnmatch("x?", "x\udcff\udcfe")
    assert fnmatch("a", "a\0b") and fnmatch("a\0z", "a")  # C strings end at NUL


@pytest.mark.parametrize("length", [2045, 2046, 2047, 2048, 2049])
def test_class_names_at_glibcs_length_limit(length: int) -> None:
    name = b"a" * length
    for pattern in (b"[[:" + name + b":]]", b"[x[:" + name + b":]]", b"[x[:" + name + b"Q]]"):
        for byte in (b"x", b"a", b"[", b":", b"Q"):
            assert ours(pattern, byte) == glibc_fnmatch(pattern, byte), (length, pattern[:6], byte)


def test_bracket_whose_two_scans_disagree() -> None:
    # After 'x' matched, glibc's scan over the rest of the bracket reads
    # "[:alpha:]" as a class, ']' and all; the scan that matched 'B' read
    # "A-[" as a range and ":alpha:" as bytes, and stops at the first ']'.
    # So after 'x' one ']' is left to match, after 'B' two.
    pattern = b"[xA-[:alpha:]]]"
    for name in (b"x", b"x]", b"x]]", b"B", b"B]", b"B]]", b":]]", b"[]]", b"q]]"):
        assert ours(pattern, name) == glibc_fnmatch(pattern, name), name
    assert ours(pattern, b"x]") and ours(pattern, b"B]]")
    assert not ours(pattern, b"x]]") and not ours(pattern, b"B]")


def test_posixly_correct_makes_caret_a_byte() -> None:
    # glibc reads POSIXLY_CORRECT once per process; so do we.
    code = (
        "import sys; sys.path[:0] = sys.argv[1:]\n"
        "from test_fnmatch import glibc_fnmatch, ours\n"
        "cases = [(b'[^a]', b'b'), (b'[^a]', b'^'), (b'[^a]', b'a')]\n"
        "print([(ours(p, s), glibc_fnmatch(p, s)) for p, s in cases])\n"
    )
    here = os.path.dirname(__file__)
    env = {**os.environ, "POSIXLY_CORRECT": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code, here, os.path.dirname(here)],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert done.stdout.strip() == "[(False, False), (True, True), (True, True)]", done.stderr


# -- time: what made the regex translation backtrack ----------------------------------

HOSTILE = [
    ("*a" * 19 + "ab", "a" * 36),  # the probe's alias (issue 14): 10 s, then > 60 s
    ("*a" * 19 + "a?b", "a" * 36),  # '?': the regex path
    ("*a" * 19 + "[ab]b", "a" * 36),  # a bracket: the regex path
    ("*a" * 19 + "[xA-[:alpha:]]]b", "a" * 36),  # the automaton
    ("*a" * 500 + "ab", "a" * 5000),
    ("*" + "a" * 200 + "b", "a" * 5000),
    ("*?" * 300 + "b", "a" * 3000),
    ("*[a-z]" * 300 + "b", "a" * 3000),
    ("*a" * 200 + "*[xA-[:alpha:]]]b", "a" * 3000),
]


@pytest.mark.parametrize(("pattern", "name"), HOSTILE, ids=range(len(HOSTILE)))
def test_many_stars_against_a_long_name_are_fast(pattern: str, name: str) -> None:
    start = time.perf_counter()
    got = fnmatch(pattern, name)
    elapsed = time.perf_counter() - start
    assert got == glibc_fnmatch(pattern.encode(), name.encode())
    assert elapsed < 0.5, f"{elapsed:.2f} s"


def test_a_hot_pattern_without_stars_stays_a_string_comparison() -> None:
    # issue 20: modprobe -D's softdep walk matched one literal pattern 120
    # times; warming it imported re, 8 ms of the call, to compare strings.
    code = (
        "import sys\n"
        "from lkm.formats.fnmatch import fnmatch\n"
        "hits = [fnmatch('ksmbd', name) for name in ('ksmbd', 'cifs') * 500]\n"
        "assert hits == [True, False] * 500\n"
        "assert 're' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_hot_patterns_answer_the_same_after_their_regex() -> None:
    # A literal-and-star pattern gets a regex after _WARM matches.
    patterns = ("*a*b", "a*b*", "ab", "*", "a**b*c")
    cases = [(p, s) for p in patterns for s in ("", "ab", "aab", "abc", "ba", "acbc")]
    first = [fnmatch(p, s) for p, s in cases]
    for _ in range(fnmatch_module._WARM + 1):
        assert [fnmatch(p, s) for p, s in cases] == first
    assert first == [glibc_fnmatch(p.encode(), s.encode()) for p, s in cases]
