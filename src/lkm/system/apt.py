"""Debian's package tools, as lkm uses them: ask apt what the archive
offers and download ``.deb`` files, never install them.

Every query goes through ``apt-cache`` and ``apt-get`` (they read the
machine's sources and verify what they download against the archive's
signed indexes), one :class:`Apt` per architecture. For an architecture
other than the machine's own, apt is pointed at a package list of its own
under lkm's cache, so the machine's dpkg and apt configuration stay as
they were (no ``dpkg --add-architecture``).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Sequence

from lkm.errors import LkmError
from lkm.records import Record
from lkm.system.run import CommandError, run


class AptError(LkmError):
    """apt could not answer or download; the message says what to do."""


class DebFile(Record):
    """One package as ``apt-get download`` would fetch it."""

    package: str
    filename: str  # NAME_VERSION_ARCH.deb
    size: int  # bytes


# Called while a download runs: (package, bytes so far, bytes in all).
DownloadProgress = Callable[[str, int, int], None]

_URI_LINE = re.compile(r"^'[^']*' (\S+) (\d+) \S+$", re.M)


class Apt:
    """apt for one Debian architecture (``options``: apt ``-o`` settings)."""

    def __init__(self, arch: str, options: Sequence[str] = ()) -> None:
        self.arch = arch
        self.options = tuple(options)
        self._linux: frozenset[str] | None = None

    @classmethod
    def for_arch(cls, arch: str, host_arch: str, state_dir: str) -> Apt:
        """The machine's apt for its own architecture; for another one, apt
        with package lists of its own in ``state_dir``."""
        if arch == host_arch:
            return cls(arch)
        lists = os.path.join(state_dir, arch, "lists")
        os.makedirs(os.path.join(lists, "partial"), exist_ok=True)
        os.makedirs(os.path.join(state_dir, "archives", "partial"), exist_ok=True)
        return cls(
            arch,
            (
                "-o",
                f"Dir::State::Lists={lists}",
                "-o",
                f"Dir::Cache={state_dir}",
                "-o",
                f"APT::Architecture={arch}",
                "-o",
                f"APT::Architectures::={arch}",
                "-o",
                "Dir::State::status=/dev/null",
            ),
        )

    def _query(self, *args: str, check: bool = True) -> str:
        try:
            return run(["apt-cache", *self.options, *args], check=check).text
        except CommandError as exc:
            raise AptError(f"apt-cache {' '.join(args)}: {exc}") from None

    def known(self, package: str) -> bool:
        """Whether apt knows the package (one query per Apt: every name
        lkm asks about starts with ``linux-``)."""
        return package in self.linux_packages()

    def linux_packages(self) -> frozenset[str]:
        """Every package name starting with ``linux-`` that apt knows."""
        if self._linux is None:
            self._linux = frozenset(self._query("pkgnames", "linux-", check=False).split())
        return self._linux

    def depends(self, package: str) -> list[str]:
        """The package's direct ``Depends:`` as apt-cache lists them."""
        text = self._query("depends", package, check=False)
        return re.findall(r"^\s+\|?Depends:\s+(\S+)$", text, re.M)

    def update(self) -> None:
        """Refresh the package lists (root only, for the machine's own).
        One index failing (a mirror in mid-sync) fails apt-get's status but
        not the lists that did arrive: what apt knows afterwards decides,
        and only when it knows no kernel at all is that an error."""
        self._linux = None
        try:
            done = run(["apt-get", *self.options, "update"], check=False)
        except CommandError as exc:
            raise AptError(f"apt-get update: {exc}") from None
        if done.status != 0 and not any(
            name.startswith("linux-image-") for name in self.linux_packages()
        ):
            hint = "" if os.geteuid() == 0 else " (as root: apt-get update)"
            last = done.stderr.decode(errors="replace").strip().splitlines()
            raise AptError(
                f"apt-get update failed{hint}: {last[-1] if last else f'status {done.status}'}"
            )

    def deb_files(self, packages: Sequence[str]) -> list[DebFile]:
        """What ``apt-get download PACKAGE…`` would fetch (no download), in order."""
        try:
            text = run(["apt-get", *self.options, "download", "--print-uris", *packages]).text
        except CommandError as exc:
            raise AptError(f"apt cannot download {' '.join(packages)}: {exc}") from None
        files = {
            m.group(1).split("_", 1)[0]: (m.group(1), int(m.group(2)))
            for m in _URI_LINE.finditer(text)
        }
        missing = [p for p in packages if p not in files]
        if missing:
            raise AptError(f"apt cannot download {' '.join(missing)}: it printed no file")
        return [DebFile(p, *files[p]) for p in packages]

    def download(
        self, debs: Sequence[DebFile], directory: str, progress: DownloadProgress | None = None
    ) -> list[str]:
        """Download packages into ``directory`` with one apt run; their
        paths. ``progress`` is told each package's bytes so far about twice
        a second while apt works, and once more when it is complete."""
        argv = ["apt-get", *self.options, *self._sandbox(), "download"]
        argv += [deb.package for deb in debs]
        paths = [os.path.join(directory, deb.filename) for deb in debs]
        done = threading.Event()
        watcher = None
        if progress is not None:
            watcher = threading.Thread(
                target=_watch_sizes, args=(paths, debs, progress, done), daemon=True
            )
            watcher.start()
        try:
            run(argv, cwd=directory)
        except CommandError as exc:
            names = " ".join(deb.package for deb in debs)
            raise AptError(f"apt-get download {names}: {exc}") from None
        finally:
            done.set()
            if watcher is not None:
                watcher.join()
        for path, deb in zip(paths, debs, strict=True):
            if _size(path) != deb.size:
                raise AptError(
                    f"{path}: apt left {_size(path)} bytes where {deb.size} were expected"
                )
        return paths

    @staticmethod
    def _sandbox() -> tuple[str, ...]:
        # apt drops to its _apt user to download, which cannot write into a
        # directory only root can: as root, download as root (apt would
        # itself, after a warning).
        return ("-o", "APT::Sandbox::User=root") if os.geteuid() == 0 else ()


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _watch_sizes(
    paths: Sequence[str],
    debs: Sequence[DebFile],
    progress: DownloadProgress,
    done: threading.Event,
) -> None:
    """Report each package's bytes while it grows (apt fetches them one
    after another, into their final names), and each one complete once."""
    reported: set[str] = set()
    finished = False
    while not finished:
        finished = done.wait(0.5)
        for path, deb in zip(paths, debs, strict=True):
            if deb.package in reported:
                continue
            size = _size(path)
            if size or finished:
                progress(deb.package, size, deb.size)
            if size >= deb.size:
                reported.add(deb.package)


__all__ = ["Apt", "AptError", "DebFile", "DownloadProgress"]
