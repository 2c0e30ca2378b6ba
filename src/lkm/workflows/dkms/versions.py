"""Module versions as dkms compares them: ``version:`` and ``srcversion:``
from modinfo, and its ``VER`` padding for ordering (every number in the
version padded to three digits, then compared as text)."""

from __future__ import annotations

import re

from lkm.errors import LkmError


def version_info(path: str | None) -> tuple[str, str]:
    """(version's first word, srcversion or else version's second word),
    as dkms's get_module_verinfo reads ``modinfo``; ("", "") for a file
    that cannot be read."""
    if not path:
        return "", ""
    from lkm.formats.module_file import open_module

    try:
        with open_module(path) as module:
            fields = module.modinfo() or []
    except (LkmError, OSError):
        return "", ""
    version, checksum, srcversion = "", "", ""
    for key, value in fields:
        words = value.split()
        if key == "version":
            version = words[0] if words else ""
            checksum = words[1] if len(words) > 1 else ""
        elif key == "srcversion":
            srcversion = words[0] if words else ""
    return version, srcversion or checksum


def padded(version: str) -> str:
    """dkms's VER: numbers padded to three digits (by the same sed steps,
    which miss every second single-digit number in a row, as dkms does)."""
    text = re.sub(r"([^0-9])([0-9])", r"\1 \2", version)
    text = re.sub(r"([0-9])([^0-9])", r"\1 \2", text)
    text = f" {text} "
    text = re.sub(r" ([0-9]) ", r" 00\1 ", text)
    text = re.sub(r" ([0-9][0-9]) ", r" 0\1 ", text)
    return text.replace(" ", "")


def compare(first: str | None, second: str | None) -> str:
    """``==`` same version and srcversion, ``=`` same version, ``>``/``<``
    first newer/older, ``?`` unknown (dkms's compare_module_version)."""
    from lkm.workflows.dkms.tree import collation_key

    v1, s1 = version_info(first)
    v2, s2 = version_info(second)
    if v1 == v2:
        return "==" if s1 == s2 else "="
    if not v1 or not v2:
        return "?"
    a, b = collation_key(padded(v1)), collation_key(padded(v2))
    return ">" if a > b else "<"  # type: ignore[operator]


def same_version(first: str | None, second: str | None) -> bool:
    return compare(first, second) in ("=", "==")


__all__ = ["compare", "padded", "same_version", "version_info"]
