"""glibc ``fnmatch(pattern, string, 0)`` semantics, for module alias patterns.

Python's :mod:`fnmatch` differs from glibc where aliases can tell: it has no
backslash escapes, reads ``[^...]`` as a set containing '^', and treats the
characters of an unclosed bracket differently. kmod matches aliases with
glibc's fnmatch and no flags (so '*' crosses '/' and a leading '.'), in the
C locale (ranges are byte ranges), and so do we.
"""

from __future__ import annotations

from functools import lru_cache

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)


if TYPE_CHECKING:
    import re

_CLASSES = {
    "alnum": "a-zA-Z0-9",
    "alpha": "a-zA-Z",
    "blank": " \\t",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "\\x21-\\x7e",
    "lower": "a-z",
    "print": "\\x20-\\x7e",
    # Inside a character class only \ ] ^ - need escaping.
    "punct": r"""!"#$%&'()*+,\-./:;<=>?@[\\\]\^_`{|}~""",
    "space": " \\t\\n\\r\\f\\v",
    "upper": "A-Z",
    "xdigit": "0-9a-fA-F",
}

_NEVER = "(?!)"


def fnmatch(pattern: str, string: str) -> bool:
    """True when ``string`` matches ``pattern`` as glibc fnmatch(…, 0) says."""
    compiled = _compile(pattern)
    return compiled is not None and compiled.match(string) is not None


@lru_cache(maxsize=8192)
def _compile(pattern: str) -> re.Pattern[str] | None:
    """Regex for a pattern, or None for a pattern that can never match."""
    import re  # only wildcard lookups need it; keep it off lkm's start-up

    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            if not out or out[-1] != ".*":
                out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "\\":
            if i >= n:
                return None  # glibc: a trailing backslash never matches
            out.append(re.escape(pattern[i]))
            i += 1
        elif c == "[":
            parsed = _bracket(pattern, i)
            if parsed is None:
                out.append(re.escape("["))
            else:
                fragment, i = parsed
                out.append(fragment)
        else:
            out.append(re.escape(c))
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def _bracket(pattern: str, i: int) -> tuple[str, int] | None:
    """Regex for the bracket expression after '[' at ``i``; None if unclosed."""
    import re

    n = len(pattern)
    negate = i < n and pattern[i] in "!^"
    if negate:
        i += 1
    items: list[str] = []
    first = True
    while True:
        if i >= n:
            return None
        c = pattern[i]
        if c == "]" and not first:
            i += 1
            break
        first = False
        if c == "[" and pattern.startswith(":", i + 1):
            end = pattern.find(":]", i + 2)
            name = pattern[i + 2 : end] if end >= 0 else ""
            if name in _CLASSES:
                items.append(_CLASSES[name])
                i = end + 2
                continue
        if c == "\\":
            i += 1
            if i >= n:
                return None
            c = pattern[i]
        i += 1
        if i + 1 < n and pattern[i] == "-" and pattern[i + 1] != "]":
            high = pattern[i + 1]
            i += 2
            if high == "\\":
                if i >= n:
                    return None
                high = pattern[i]
                i += 1
            if c <= high:
                items.append(f"{re.escape(c)}-{re.escape(high)}")
        else:
            items.append(re.escape(c))
    if negate:
        return (f"[^{''.join(items)}]" if items else "."), i
    return (f"[{''.join(items)}]" if items else _NEVER), i
