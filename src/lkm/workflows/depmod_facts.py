"""What depmod reads from each module file, as plain data.

Kept apart from :mod:`lkm.workflows.depmod_scan` (which reads the files)
so that a run answered from the cache does not import the module readers.
Plain tuples: results cross a process boundary and are cached between runs.
"""

from __future__ import annotations

from lkm.records import FrozenRecord


class ModuleFacts(FrozenRecord):
    """What depmod reads from one module file."""

    __slots__ = ("exports", "modinfo", "needed_crcs", "needed_names", "needed_weak")

    def __init__(
        self,
        modinfo: str,
        exports: tuple[tuple[str, int], ...],
        needed_names: tuple[str, ...],
        needed_crcs: tuple[int, ...],
        needed_weak: tuple[bool, ...],
    ) -> None:
        # .modinfo as one string of NUL-separated key=value entries (see
        # lkm.formats.module_file.modinfo_text): one object per module
        # where the pairs would be dozens, to send, cache and keep.
        self.modinfo = modinfo
        self.exports = exports  # (symbol, crc); crc 0 when read for dependencies only
        # Needed symbols as three columns, in kmod's order: names, CRCs,
        # weak or not. Columns, not a tuple per symbol: a tree needs
        # 200,000 symbols, which cross a pipe, go into the cache and get
        # looked up. Read for dependencies only (depmod_scan's ``lean``),
        # the names may repeat and the CRCs and weak flags are empty.
        self.needed_names = needed_names
        self.needed_crcs = needed_crcs
        self.needed_weak = needed_weak

    @property
    def needed(self) -> tuple[tuple[str, int, bool], ...]:
        """(symbol, crc, weak) of each needed symbol."""
        return tuple(zip(self.needed_names, self.needed_crcs, self.needed_weak, strict=True))

    def modinfo_pairs(self) -> list[tuple[str, str]]:
        """(key, value) of each .modinfo entry, in order."""
        from lkm.formats.module_file import modinfo_pairs

        return modinfo_pairs(self.modinfo)

    def values(self, key: str) -> list[str]:
        return [v for k, v in self.modinfo_pairs() if k == key]

    def fields(self) -> tuple[object, ...]:
        """Plain data (for marshal): ``ModuleFacts(*facts.fields())`` is ``facts``."""
        return (self.modinfo, self.exports, self.needed_names, self.needed_crcs, self.needed_weak)


class ScanFailure(FrozenRecord):
    """A module that could not be read: the one-line message."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message
