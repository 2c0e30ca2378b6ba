"""What depmod reads from each module file, as plain data.

Kept apart from :mod:`lkm.workflows.depmod.scan` (which reads the files)
so that a run answered from the cache does not import the module readers.
Plain tuples: results cross a process boundary and are cached between runs.
"""

from __future__ import annotations

from lkm.records import Record


class ModuleFacts(Record):
    """What depmod reads from one module file."""

    # .modinfo as one string of NUL-separated key=value entries (see
    # lkm.formats.module_file.modinfo_text): one object per module
    # where the pairs would be dozens, to send, cache and keep.
    modinfo: str
    exports: tuple[tuple[str, int], ...]  # (symbol, crc); crc 0 when read for dependencies only
    # Needed symbols as three columns, in kmod's order: names, CRCs,
    # weak or not. Columns, not a tuple per symbol: a tree needs
    # 200,000 symbols, which cross a pipe, go into the cache and get
    # looked up. Read for dependencies only (scan's ``lean``),
    # the names may repeat and the CRCs and weak flags are empty.
    needed_names: tuple[str, ...]
    needed_crcs: tuple[int, ...]
    needed_weak: tuple[bool, ...]

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


class ScanFailure(Record):
    """A module that could not be read: the one-line message."""

    message: str
