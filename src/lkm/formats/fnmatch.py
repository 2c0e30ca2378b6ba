"""glibc ``fnmatch(pattern, string, 0)`` semantics, for module alias patterns.

kmod matches aliases with glibc's fnmatch and no flags, in the C locale;
Python's :mod:`fnmatch` differs where aliases can tell (no backslash
escapes, ``[^...]`` is a set holding '^', unclosed brackets, characters
rather than bytes). This module follows glibc 2.36 ``posix/fnmatch_loop.c``:

* bytes: lkm's ``str`` are UTF-8 with surrogateescape, so both sides are
  matched as the bytes they stand for ('?' takes one byte of 'ü', ranges
  are byte ranges, classes are the C locale's ASCII ones), and a string
  ends at its first NUL as a C string does;
* '*' crosses '/' and a leading '.'; '\\' escapes; a trailing '\\' never
  matches;
* brackets as glibc reads them, quirks included: ``[!...]`` and ``[^...]``
  (unless POSIXLY_CORRECT is set), ``[:class:]`` (an unknown name matches
  nothing), ``[=c=]`` and ``[.c.]``, an unclosed '[' is a literal; and
  where glibc's scan over the rest of a bracket that matched reads it
  otherwise than the scan that matched, the byte decides where matching
  goes on.

glibc places the part of the pattern after a star at the leftmost place it
fits and never comes back to that choice (its ``ends`` mechanism), so it
runs in polynomial time; a regex with ``.*`` for each star backtracks
exponentially (``*a*a…*aab`` against ``aaa…``). Here every pattern is
matched the way glibc does it, compiled once into one of:

* literals between stars (99% of real aliases): ``str.startswith``,
  ``find`` (leftmost) and ``endswith``, until the pattern is hot enough to
  pay for a regex;
* a regex, when each step other than a star takes one byte and goes on at
  one place: its middle segments are atomic lazy searches ``(?>.*?SEG)``,
  the same leftmost placement, run in C;
* otherwise (brackets that glibc reads differently byte by byte) an
  automaton over pattern positions and an interpreter of glibc's algorithm.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)


if TYPE_CHECKING:
    import re
    from collections.abc import Callable, Iterable

    # A step at a pattern position: (bytes, next position) pairs; a byte in
    # none of them does not match there.
    Routes = tuple[tuple[int, int], ...]

ALL_BYTES = (1 << 256) - 2  # byte masks: bit b is byte b; NUL ends a C string
_NEVER = "(?!)"

_BANG, _DOT, _COLON, _EQUALS = 0x21, 0x2E, 0x3A, 0x3D
_STAR, _QUESTION, _DASH = 0x2A, 0x3F, 0x2D
_LBRACKET, _BACKSLASH, _RBRACKET, _CARET = 0x5B, 0x5C, 0x5D, 0x5E
_LOWER_A, _LOWER_Z = 0x61, 0x7A


def _span(low: int, high: int) -> int:
    """The bytes ``low`` to ``high`` inclusive (none when low > high)."""
    return ((1 << (high + 1)) - (1 << low)) if low <= high else 0


_DIGIT = _span(0x30, 0x39)
_UPPER = _span(0x41, 0x5A)
_LOWER = _span(0x61, 0x7A)
_GRAPH = _span(0x21, 0x7E)
# The C locale's classes (glibc locale/C-ctype.c): ASCII only, so no byte
# from 0x80 up is in any of them.
_CLASSES = {
    b"alnum": _UPPER | _LOWER | _DIGIT,
    b"alpha": _UPPER | _LOWER,
    b"blank": 1 << 0x20 | 1 << 0x09,
    b"cntrl": _span(0x00, 0x1F) | 1 << 0x7F,
    b"digit": _DIGIT,
    b"graph": _GRAPH,
    b"lower": _LOWER,
    b"print": _span(0x20, 0x7E),
    b"punct": _GRAPH & ~(_UPPER | _LOWER | _DIGIT),
    b"space": _span(0x09, 0x0D) | 1 << 0x20,
    b"upper": _UPPER,
    b"xdigit": _DIGIT | _span(0x41, 0x46) | _span(0x61, 0x66),
}
# glibc's CHAR_CLASS_MAX_LENGTH (CHARCLASS_NAME_MAX, bits/posix2_lim.h): a
# longer run of name letters after "[:" makes the bracket match nothing.
_CLASS_NAME_MAX = 2048
_UNCLOSED = -1  # the scan met the pattern's end: '[' is an ordinary byte
# Literal-and-star patterns start on str.find: one lookup meets each
# pattern once, and compiling a regex (~75 us) costs ~150 such matches.
# A pattern matched this often in one process (a library caller, modprobe
# -a) is hot and gets its regex, which then matches ~1.5x faster.
_WARM = 64


# fnmatch()'s matchers by pattern, emptied when full: a process that
# meets more patterns than this walks an index, whose walk holds its own
# (compiled()). A dict rather than functools.lru_cache, whose import (with
# collections') would cost every modprobe a millisecond or two of start-up.
_MATCHERS_MAX = 8192
_matchers: dict[str, Compiled] = {}


def fnmatch(pattern: str, string: str) -> bool:
    """True when ``string`` matches ``pattern`` as glibc fnmatch(…, 0) says."""
    compiled = _matchers.get(pattern)
    if compiled is None:
        if len(_matchers) >= _MATCHERS_MAX:
            _matchers.clear()
        compiled = _matchers[pattern] = _compile(pattern)
    if not string.isascii() or "\0" in string:
        string = c_bytes(string)
    return bool(compiled.match(string))


def compiled(pattern: str) -> Compiled:
    """``fnmatch(pattern, ·)`` for a pattern matched many times, compiled
    once and held by the caller (outside fnmatch()'s shared cache, which a walk
    over thousands of index patterns would churn): call ``.match(string)``
    on it, looked up each time, as a star pattern swaps in its regex once
    warm. The string must already be in C's terms (:func:`c_bytes`; ASCII
    strings are)."""
    return _compile(pattern)


def required_literal(pattern: str) -> str:
    """A substring every string matching ``pattern`` contains: its longest
    run of literal characters ("" when it has brackets or escapes, whose
    literals are not simply read off)."""
    data = c_bytes(pattern)
    if "[" in data or "\\" in data:
        return ""
    return max(data.replace("?", "*").split("*"), key=len)


def match_any(patterns: Iterable[str]) -> Callable[[str], bool]:
    """A test of whether a string matches at least one of ``patterns`` (as
    :func:`fnmatch` says), cheap for thousands of them: a string costs a
    set lookup and a few regex calls, not one match per pattern (see
    :class:`_AnyOf`)."""
    return _AnyOf(patterns).matches


def c_bytes(string: str) -> str:
    """The bytes C sees for ``string``, one character per byte (latin-1):
    UTF-8 with lkm's surrogateescape, up to the first NUL."""
    if string.isascii() and "\0" not in string:  # nearly every caller's string
        return string
    try:
        data = string.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate no bytes decode to
        data = string.encode("utf-8", "surrogatepass")
    return data.split(b"\0", 1)[0].decode("latin-1")


# -- compiling ----------------------------------------------------------------


def _compile(pattern: str) -> _Stars | re.Pattern[str] | _Automaton:
    """The matcher for a pattern: plain string searches for literals and
    stars (99% of real aliases; a regex would cost more to compile than
    the few matches a lookup makes with it); a regex when every step of
    its automaton has one successor; else the automaton itself."""
    data = c_bytes(pattern)
    if "[" not in data and "\\" not in data and "?" not in data:
        return _Stars(data.split("*"))
    import re  # only some wildcard lookups need it; keep it off lkm's start-up

    if "[" not in data and "\\" not in data:
        return re.compile(_join(_plain_segments(data)), re.DOTALL)
    automaton = _Automaton(data.encode("latin-1"))
    segments = automaton.segments()
    if segments is None:
        return automaton
    return re.compile(_regex(segments) if segments else _NEVER, re.DOTALL)


def _plain_segments(data: str) -> list[str]:
    """The regexes of the segments of a pattern of literals, '?' and '*'."""
    import re

    # re.escape turns '?' into r'\?' and makes no other r'\?' from these
    return [re.escape(segment).replace("\\?", ".") for segment in data.split("*")]


def _join(segments: list[str]) -> str:
    """The regexes of the fixed-length segments between a pattern's stars
    joined: the first anchored at the start and the last at the end, the
    middle ones each at the leftmost place after the one before, as glibc
    places them, atomic so ``re`` never tries another place."""
    head, *rest = segments
    if not rest:
        return head + r"\Z"
    *middle, last = rest
    out = [head, *(f"(?>.*?{seg})" for seg in middle if seg)]
    if last:
        out.append(f".*{last}\\Z")
    return "".join(out)


def _regex(segments: list[list[int]]) -> str:
    """Regex for a single-path pattern from the byte masks of the segments
    between its stars."""
    return _join([_segment(masks) for masks in segments])


def _segment(masks: list[int]) -> str:
    return "".join(_byte_regex(mask) for mask in masks)


def _byte_regex(mask: int) -> str:
    """Regex for one byte of a mask, over strings of latin-1 characters."""
    import re

    if mask == ALL_BYTES:
        return "."
    if mask & (mask - 1) == 0:
        return re.escape(chr(mask.bit_length() - 1))
    if mask.bit_count() > 128:  # shorter as the bytes it excludes
        return "[^" + _ranges(~mask & ((1 << 256) - 1)) + "]"
    return "[" + _ranges(mask) + "]"


def _ranges(mask: int) -> str:
    out: list[str] = []
    byte = 0
    while mask >> byte:
        if not mask >> byte & 1:
            byte += 1
            continue
        high = byte
        while mask >> (high + 1) & 1:
            high += 1
        out.append(f"\\x{byte:02x}" if high == byte else f"\\x{byte:02x}-\\x{high:02x}")
        byte = high + 1
    return "".join(out)


_caret_negation: list[bool] = []  # the answer, once known


def _caret_negates() -> bool:
    """glibc reads ``[^...]`` as negated unless POSIXLY_CORRECT is set,
    looked up once per process (fnmatch.c's ``posixly_correct``)."""
    if not _caret_negation:
        import os

        _caret_negation.append("POSIXLY_CORRECT" not in os.environ)
    return _caret_negation[0]


class _Stars:
    """A pattern of literal segments between stars: the first at the start,
    the last at the end, each middle one at its leftmost place after the
    one before (``str.find``), as glibc places them."""

    __slots__ = ("head", "match", "middle", "starred", "tail", "uses")

    def __init__(self, segments: list[str]) -> None:
        self.head = segments[0]
        self.starred = len(segments) > 1
        self.middle = [segment for segment in segments[1:-1] if segment]
        self.tail = segments[-1] if self.starred else ""
        self.uses = 0
        # A pattern without a star is a string comparison, which no regex
        # beats: it never warms (modprobe's softdep walk matched one such
        # pattern 120 times, and warming imported re, 8 ms of the call).
        self.match: Callable[[str], object] = self.scan if self.starred else self.head.__eq__

    def scan(self, string: str) -> bool:
        self.uses += 1
        if self.uses == _WARM:
            import re

            self.match = re.compile(self.regex(), re.DOTALL).match
        if not string.startswith(self.head):
            return False
        pos = len(self.head)
        end = len(string) - len(self.tail)  # where the last segment starts
        for segment in self.middle:
            pos = string.find(segment, pos, end)
            if pos < 0:
                return False
            pos += len(segment)
        return pos <= end and string.endswith(self.tail)

    def regex(self) -> str:
        import re

        segments = [self.head, *self.middle, self.tail] if self.starred else [self.head]
        return _join([re.escape(segment) for segment in segments])


# -- the automaton ------------------------------------------------------------


class _Automaton:
    """A pattern's steps by position (computed when first reached), and
    glibc's star algorithm over them."""

    def __init__(self, pattern: bytes) -> None:
        self.pattern = pattern
        self.end = len(pattern)
        self._steps: dict[int, Routes] = {}

    def is_star(self, p: int) -> bool:
        return p < self.end and self.pattern[p] == _STAR

    def routes(self, p: int) -> Routes:
        """Where each byte goes from the (non-star) step at ``p``."""
        found = self._steps.get(p)
        if found is None:
            found = self._steps[p] = self._step(p)
        return found

    def _step(self, p: int) -> Routes:
        c = self.pattern[p]
        if c == _QUESTION:
            return ((ALL_BYTES, p + 1),)
        if c == _BACKSLASH:  # glibc: "Trailing \ loses"
            return ((1 << self.pattern[p + 1], p + 2),) if p + 1 < self.end else ()
        if c == _LBRACKET:
            return _Bracket(self.pattern, p + 1, _caret_negates()).scan()
        return ((1 << c, p + 1),)

    def segments(self) -> list[list[int]] | None:
        """The byte masks between stars when every step has one successor;
        None when one has several; [] when a step takes no byte at all
        (every match would have to pass it)."""
        segments: list[list[int]] = [[]]
        p = 0
        while p < self.end:
            if self.is_star(p):
                segments.append([])
                p += 1
                continue
            routes = self.routes(p)
            if not routes:
                return []
            if len(routes) > 1:
                return None
            mask, p = routes[0]
            segments[-1].append(mask)
        return segments

    def match(self, string: str) -> bool:
        """glibc's algorithm (``FCT``): walk to the first star; then, star
        after star, place what follows at the leftmost position it fits."""
        found = self._walk(0, string, 0)
        while found is not None:
            p, n = found
            if p == self.end:
                return True  # _walk stops at the end only with the string
            while self.is_star(p):
                p += 1
            if p == self.end:
                return True  # stars at the end take the rest
            found = next(
                (w for m in range(n, len(string)) if (w := self._walk(p, string, m)) is not None),
                None,
            )
        return False

    def _walk(self, p: int, string: str, n: int) -> tuple[int, int] | None:
        """(star position, string position) where a walk from ``p`` at
        ``n`` reaches a star; (end, len) when it reaches the pattern's end
        with the string; None when it fails first."""
        while p < self.end and not self.is_star(p):
            if n == len(string):
                return None
            byte = ord(string[n])
            for mask, target in self.routes(p):
                if mask >> byte & 1:
                    p = target
                    break
            else:
                return None
            n += 1
        if p == self.end and n != len(string):
            return None
        return p, n


if TYPE_CHECKING:
    # A compiled pattern: ``.match(string)`` is fnmatch's answer (truthy).
    Compiled = _Stars | re.Pattern[str] | _Automaton


class _Bracket:
    """Where each byte goes from one '[', glibc's ``case L_('[')`` run for
    all bytes at once.

    glibc scans a bracket item by item for the byte at hand; the scan
    depends on the byte only through where it stops ("goto matched"), so
    one scan with the set of bytes still undecided (``pending``) gives
    every byte's outcome. A byte that matched goes through glibc's second
    scan, over the rest of the bracket, which decides where matching goes
    on (it reads some constructs otherwise than the first scan).
    """

    def __init__(self, pattern: bytes, start: int, caret_negates: bool) -> None:
        self.pattern = pattern
        self.start = start  # glibc's p_init: just after the '['
        first = self.at(start)
        self.negate = first == _BANG or (caret_negates and first == _CARET)
        self.pending = ALL_BYTES
        self.targets: dict[int, int] = {}  # next position -> its bytes
        self.skips: dict[int, int | None] = {}

    def at(self, i: int) -> int:
        """The pattern byte at ``i``, NUL past the end (a C string)."""
        return self.pattern[i] if i < len(self.pattern) else 0

    def scan(self) -> Routes:
        """glibc's first scan; returns the routes."""
        at = self.at
        p = self.start + self.negate
        c = at(p)
        p += 1
        while self.pending:
            step: tuple[int, int] | None
            if c == _BACKSLASH:
                step = self.item(at(p), p + 1) if at(p) else None
            elif c == _LBRACKET and at(p) == _COLON:
                step = self.char_class(p)
            elif c == _LBRACKET and at(p) == _EQUALS:
                step = self.equivalence(p)
            elif c == 0:  # "[ unterminated, treat as normal character"
                self.unclosed(self.pending)
                break
            elif c == _LBRACKET and at(p) == _DOT:
                step = self.collating(p)
            else:
                step = self.item(c, p)
            if step is None:  # glibc returns FNM_NOMATCH for every byte left
                break
            c, p = step
            if c == _RBRACKET:
                if self.negate:
                    self.go(self.pending, p)
                break
        return tuple((mask, target) for target, mask in self.targets.items())

    def go(self, mask: int, target: int) -> None:
        if mask:
            self.targets[target] = self.targets.get(target, 0) | mask

    def unclosed(self, mask: int) -> None:
        """The '[' is an ordinary byte, the pattern goes on right after it."""
        self.go(mask & 1 << _LBRACKET, self.start)

    def matched(self, mask: int, p: int) -> None:
        """glibc's ``goto matched`` at ``p`` for the bytes of ``mask``."""
        mask &= self.pending
        if not mask:
            return
        self.pending &= ~mask
        if p not in self.skips:
            self.skips[p] = self.skip(p)
        end = self.skips[p]
        if end == _UNCLOSED:
            self.unclosed(mask)
        elif end is not None and not self.negate:
            self.go(mask, end)

    def item(self, c: int, p: int) -> tuple[int, int] | None:
        """``normal_bracket``: the byte ``c``, or a range starting at it."""
        at = self.at
        if not (at(p) == _DASH and at(p + 1) not in (0, _RBRACKET)):
            self.matched(1 << c, p)
        return self.range_end(c, at(p), p + 1)

    def range_end(self, low: int, c: int, p: int) -> tuple[int, int] | None:
        """After an item whose byte is ``low`` and the byte ``c`` that
        follows: a range when ``c`` is a '-' not before ']'. The C locale
        collates in byte order, so a range is the bytes low..high."""
        at = self.at
        if c != _DASH or at(p) == _RBRACKET:
            return c, p
        high = at(p)
        p += 1
        if high == _LBRACKET and at(p) == _DOT:
            found = self.collating_symbol(p)
            if found is None:
                return None
            high, p = found
        else:
            if high == _BACKSLASH:
                high = at(p)
                p += 1
            if high == 0:
                return None
        self.matched(_span(low, high), p)
        return at(p), p + 1

    def collating_symbol(self, dot: int) -> tuple[int, int] | None:
        """``[.c.]`` with ``dot`` at its first '.': (c, position after it).
        The C locale has no multi-character collating elements."""
        at = self.at
        p, length = dot, 0
        while True:
            p += 1
            if at(p) == _DOT and at(p + 1) == _RBRACKET:
                break
            if at(p) == 0:
                return None
            length += 1
        return (self.pattern[dot + 1], p + 2) if length == 1 else None

    def collating(self, dot: int) -> tuple[int, int] | None:
        """A ``[.c.]`` item; glibc takes it as a range start when '-'
        follows, even before ']'."""
        found = self.collating_symbol(dot)
        if found is None:
            return None
        c, p = found
        if not (self.at(p) == _DASH and self.at(p + 1) != 0):
            self.matched(1 << c, p)
        return self.range_end(c, self.at(p), p + 1)

    def char_class(self, colon: int) -> tuple[int, int] | None:
        """``[:name:]`` with ``colon`` at its first ':'; anything but a-y
        before ":]" makes the '[' an ordinary item (glibc: ``c >= 'z'``)."""
        at = self.at
        p, length = colon, 0
        while True:
            if length == _CLASS_NAME_MAX:
                return None
            p += 1
            if at(p) == _COLON and at(p + 1) == _RBRACKET:
                break
            if not _LOWER_A <= at(p) < _LOWER_Z:
                return self.item(_LBRACKET, colon)
            length += 1
        mask = _CLASSES.get(self.pattern[colon + 1 : p])
        if mask is None:  # "Invalid character class name"
            return None
        self.matched(mask, p + 2)
        return at(p + 2), p + 3

    def equivalence(self, equals: int) -> tuple[int, int] | None:
        """``[=c=]``: in the C locale, the byte c alone."""
        at = self.at
        c = at(equals + 1)
        if c == 0 or at(equals + 2) != _EQUALS or at(equals + 3) != _RBRACKET:
            return self.item(_LBRACKET, equals)
        self.matched(1 << c, equals + 4)
        return at(equals + 4), equals + 5

    def skip(self, p: int) -> int | None:
        """glibc's scan over the rest of a bracket that matched (after
        ``matched:``): the position after its ']', _UNCLOSED, or None
        where glibc returns FNM_NOMATCH."""
        at = self.at
        while True:
            c = at(p)
            p += 1
            if c == _RBRACKET:
                return p
            if c == 0:
                return _UNCLOSED
            if c == _BACKSLASH:
                if at(p) == 0:
                    return None
                p += 1
            elif c == _LBRACKET and at(p) in (_COLON, _EQUALS, _DOT):
                end = self.skip_bracketed(p)
                if end is None:
                    return None
                p = end

    def skip_bracketed(self, p: int) -> int | None:
        """The second scan over ``[:``, ``[=`` or ``[.`` (``p`` at the
        ':', '=' or '.'): where it goes on, None for FNM_NOMATCH."""
        at = self.at
        kind = at(p)
        if kind == _EQUALS:
            if at(p + 1) == 0 or at(p + 2) != _EQUALS or at(p + 3) != _RBRACKET:
                return None
            return p + 4
        if kind == _DOT:
            while True:
                p += 1
                if at(p) == 0:
                    return None
                if at(p) == _DOT and at(p + 1) == _RBRACKET:
                    return p + 2
        colon, length = p, 0
        while True:
            p += 1
            length += 1
            if length == _CLASS_NAME_MAX:
                return None
            if at(p) == _COLON and at(p + 1) == _RBRACKET:
                return p + 2
            if not _LOWER_A <= at(p) < _LOWER_Z:
                return colon  # just the '[' skipped; go on at the ':'


# -- many patterns at once ------------------------------------------------------


class _AnyOf:
    """Patterns grouped by what makes them cheap to test together: literal
    names in a set; patterns that start with a literal byte in one regex
    per byte (anchored); patterns that start with stars and then a literal
    byte in one regex per byte, searched for (re's literal-prefix scan) in
    strings holding that byte (floating[""]: the rest of those, searched
    in every string); those that start with '?', '[' or '\\' in one more
    regex; and the few that need the automaton one by one."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.literals: set[str] = set()
        self.everything = False  # a pattern of stars alone
        self.automata: list[_Automaton] = []
        anchored: dict[str, list[str]] = {}
        floating: dict[str, list[str]] = {}
        for pattern in dict.fromkeys(patterns):
            data = c_bytes(pattern)
            if not any(c in data for c in "*?[\\"):
                self.literals.add(data)
                continue
            segments = _segment_regexes(data)
            if segments is None:
                self.automata.append(_Automaton(data.encode("latin-1")))
            elif segments:
                self._add(data, segments, anchored, floating)
        general = anchored.pop("", None)  # those that start with '?', '[' or '\\'
        self.general = _fold(general, "match") if general else None
        self.anchored = {first: _fold(sources, "match") for first, sources in anchored.items()}
        self.floating = {first: _fold(sources, "search") for first, sources in floating.items()}

    def _add(
        self,
        data: str,
        segments: list[str],
        anchored: dict[str, list[str]],
        floating: dict[str, list[str]],
    ) -> None:
        lead = data.lstrip("*")
        if not lead:
            self.everything = True
            return
        first = lead[0] if lead[0] not in "?[\\" else ""
        if not data.startswith("*"):
            anchored.setdefault(first, []).append(_join(segments))
            return
        # "*SEG…" matches where SEG is found first if anywhere: a later
        # SEG leaves less room for the rest. So: search for SEG….
        while not segments[0]:
            del segments[0]
        floating.setdefault(first, []).append(_join(segments))

    def matches(self, string: str) -> bool:
        if not string.isascii() or "\0" in string:
            string = c_bytes(string)
        if self.everything or string in self.literals:
            return True
        anchored = self.anchored.get(string[:1])
        if anchored is not None and anchored(string):
            return True
        floating = self.floating
        for first in (*set(string), ""):
            search = floating.get(first)
            if search is not None and search(string):
                return True
        if self.general is not None and self.general(string):
            return True
        return any(automaton.match(string) for automaton in self.automata)


def _segment_regexes(data: str) -> list[str] | None:
    """The regexes of a pattern's segments between stars; None when the
    pattern needs the automaton, [] when it never matches."""
    if "[" not in data and "\\" not in data:
        return _plain_segments(data)
    segments = _Automaton(data.encode("latin-1")).segments()
    return None if segments is None else [_segment(masks) for masks in segments]


def _fold(sources: list[str], how: str) -> Callable[[str], object]:
    """One regex trying each source in turn (each anchors its own end);
    bare alternatives, so that re factors out a common literal prefix."""
    import re

    compiled = re.compile("|".join(sources), re.DOTALL)
    return compiled.match if how == "match" else compiled.search
