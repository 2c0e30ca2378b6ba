"""What depmod reads from each module file, as plain data.

Kept apart from :mod:`lkm.workflows.depmod_scan` (which reads the files)
so that a run answered from the cache does not import the module readers.
Plain tuples: results cross a process boundary and are cached between runs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ModuleFacts:
    """What depmod reads from one module file."""

    modinfo: tuple[tuple[str, str], ...]
    exports: tuple[tuple[str, int], ...]  # (symbol, crc)
    needed: tuple[tuple[str, int, bool], ...]  # (symbol, crc, weak)

    def values(self, key: str) -> list[str]:
        return [v for k, v in self.modinfo if k == key]


@dataclass(frozen=True, slots=True)
class ScanFailure:
    """A module that could not be read: the one-line message."""

    message: str
