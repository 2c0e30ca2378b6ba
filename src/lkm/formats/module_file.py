"""Reading kernel module files (``.ko``, ``.ko.gz``, ``.ko.xz``, ``.ko.zst``).

:class:`ModuleImage` is pure: an uncompressed module image in memory (bytes
or an mmap) in, typed facts out. :func:`open_module` is the one function
that touches the filesystem: it maps an uncompressed module (no copy) or
decompresses a compressed one, choosing by magic bytes, and turns every
failure into one error that names the file.

What each method returns mirrors libkmod (libkmod-elf.c) so that depmod and
modprobe built on it agree with kmod module for module.
"""

from __future__ import annotations

import mmap
import os
import struct
from array import array
from functools import cached_property
from itertools import compress, repeat
from operator import itemgetter, not_

from lkm.errors import (
    FormatError,
    LkmError,
    ModuleFileNotFoundError,
    ModuleFormatError,
    NotElfError,
    NotElfModuleError,
)
from lkm.formats import compression
from lkm.formats.compression import Compression
from lkm.formats.elf import (
    BIND_FROM_ELF,
    EM_SPARC,
    EM_SPARCV9,
    NATIVE_BYTE_ORDER,
    SHN_ABS,
    SHN_UNDEF,
    STT_REGISTER,
    Bind,
    ElfFile,
    ElfSource,
    SymbolColumns,
)
from lkm.formats.elf_layout import MODVERSION_SIZE
from lkm.formats.file_kinds import open_regular, too_large
from lkm.formats.file_regions import FileRegions
from lkm.formats.module_names import (
    MODULE_EXTENSIONS as MODULE_EXTENSIONS,  # re-exported: callers import them from here too
)
from lkm.formats.module_names import has_module_extension as has_module_extension
from lkm.formats.module_names import module_name_from_path as module_name_from_path
from lkm.records import Record

# Each __versions entry: a CRC word (4 or 8 bytes) then the name, 64 bytes.
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from lkm.formats.signature import ModuleSignature

_CRC_PREFIX = "__crc_"


class Symbol(Record):
    """A symbol with its modversion CRC (0 when there is none)."""

    name: str
    crc: int
    bind: Bind


class ModVersion(Record):
    """One entry of the ``__versions`` section."""

    name: str
    crc: int


class Exports:
    """A module's exported symbols as columns: ``names``, ``crcs`` (0
    without modversions) and ``binds``, the last two read on first use;
    iterating gives :class:`Symbol` records."""

    __slots__ = ("_binds", "_crcs", "_read_binds", "_read_crcs", "names")

    def __init__(
        self,
        names: list[str],
        read_crcs: Callable[[], list[int]] | None = None,
        read_binds: Callable[[], list[Bind]] | None = None,
    ) -> None:
        self.names = names
        self._read_crcs = read_crcs
        self._read_binds = read_binds
        self._crcs: list[int] | None = None
        self._binds: list[Bind] | None = None

    @property
    def crcs(self) -> list[int]:
        if self._crcs is None:
            read = self._read_crcs
            self._crcs = read() if read is not None else [0] * len(self.names)
        return self._crcs

    @property
    def binds(self) -> list[Bind]:
        if self._binds is None:
            read = self._read_binds
            self._binds = read() if read is not None else [Bind.GLOBAL] * len(self.names)
        return self._binds

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[Symbol]:
        return map(Symbol, self.names, self.crcs, self.binds)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Exports) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]


class NeededSymbols:
    """The symbols a module imports, as kmod lists them: undefined
    ``.symtab`` entries in table order (weak ones marked WEAK), then the
    ``__versions`` entries no symbol referred to (``module_layout`` and the
    like), their CRCs from ``__versions``. Columns (``names``, ``crcs``,
    ``weak``) read together on first use; iterating gives :class:`Symbol`
    records (bind WEAK or UNDEF)."""

    __slots__ = ("_columns", "_image")

    def __init__(self, image: ModuleImage) -> None:
        self._image = image
        self._columns: tuple[list[str], list[int], list[bool]] | None = None

    def _read(self) -> tuple[list[str], list[int], list[bool]]:
        if self._columns is None:
            self._columns = self._image._needed_columns()
        return self._columns

    @property
    def names(self) -> list[str]:
        return self._read()[0]

    @property
    def crcs(self) -> list[int]:
        return self._read()[1]

    @property
    def weak(self) -> list[bool]:
        return self._read()[2]

    def distinct_names(self) -> list[str]:
        """Each needed name once, in order of first appearance — the
        names alone, for working out dependencies: without the CRCs and
        weak flags or the work of matching them."""
        if self._columns is not None:
            return list(dict.fromkeys(self._columns[0]))
        return self._image._distinct_needed_names()

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[Symbol]:
        binds = [Bind.WEAK if weak else Bind.UNDEF for weak in self.weak]
        return map(Symbol, self.names, self.crcs, binds)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NeededSymbols) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]


class _Unread:
    """The type of :data:`_UNREAD`: a cached value not read yet."""


_UNREAD = _Unread()


def split_modinfo(raw: bytes) -> list[tuple[str, str]]:
    """``.modinfo`` contents → (key, value) pairs in file order.

    The section holds NUL-terminated ``key=value`` strings, padded with NULs
    between them. Like kmod: leading NULs skipped, a remainder of one byte
    or less is empty, empty strings are dropped, a string without ``=`` is
    a key with an empty value.
    """
    return modinfo_pairs(modinfo_text(raw))


def modinfo_text(raw: bytes) -> str:
    """``.modinfo`` contents as one string of NUL-separated entries, as
    :func:`split_modinfo` reads them (leading NULs dropped; a remainder of
    one byte or less is empty). One object instead of a tuple per entry:
    depmod keeps this for thousands of modules."""
    stripped = raw.lstrip(b"\0")
    if len(stripped) <= 1:
        return ""
    return stripped.decode("utf-8", "surrogateescape")


def modinfo_pairs(text: str) -> list[tuple[str, str]]:
    """(key, value) pairs of a :func:`modinfo_text` string, in order."""
    # Comprehensions, not a loop of appends: modinfo splits ~20 entries
    # of each of thousands of modules.
    split = [item.partition("=") for item in text.split("\0") if item]
    return [(key, value) for key, _, value in split]


class ModuleImage:
    """An uncompressed module image: ELF facts and the signature trailer."""

    __slots__ = ("__dict__", "_signature", "data", "elf")

    def __init__(self, data: ElfSource) -> None:
        self.data = data
        self.elf = ElfFile(data)
        self._signature: ModuleSignature | _Unread | None = _UNREAD

    # -- .modinfo -----------------------------------------------------------

    def modinfo(self) -> list[tuple[str, str]] | None:
        """(key, value) pairs of ``.modinfo`` in file order; None if absent."""
        raw = self.elf.section_data(".modinfo")
        if raw is None:
            return None
        return split_modinfo(raw)

    def modinfo_text(self) -> str:
        """``.modinfo`` as one string (see :func:`modinfo_text`); empty
        when absent."""
        return self.find_modinfo_text() or ""

    def find_modinfo_text(self) -> str | None:
        """``.modinfo`` as one string (see :func:`modinfo_text`); None
        when absent."""
        raw = self.elf.section_data(".modinfo")
        return None if raw is None else modinfo_text(raw)

    # -- signature ------------------------------------------------------------

    @property
    def signature(self) -> ModuleSignature | None:
        # Cached in a slot, not a cached_property: that takes a lock on
        # every first read, once per module of a modinfo over a tree.
        found = self._signature
        if isinstance(found, _Unread):
            from lkm.formats.signature import read_signature  # not for depmod's thousands

            found = self._signature = read_signature(self.data)
        return found

    @cached_property
    def _symbol_columns(self) -> SymbolColumns | None:
        # exports() and needed() both scan the table: unpack it once.
        return self.elf.symbol_columns()

    # -- symbols --------------------------------------------------------------

    def versions(self) -> list[ModVersion]:
        """The ``__versions`` table (CRCs of imported symbols), in order.

        A leading '.' on a name (ppc64 function descriptors) is dropped, as
        kmod does.
        """
        bounds = self.elf.find_section("__versions")
        if bounds is None:
            return []
        offset, size = bounds
        if size % MODVERSION_SIZE:
            raise FormatError(
                f"__versions section size {size} is not a multiple of {MODVERSION_SIZE}"
            )
        result = []
        for crc, name in self._modversion_entries(offset, size):
            result.append(ModVersion(name[1:] if name.startswith(".") else name, crc))
        return result

    def _modversion_entries(self, offset: int, size: int) -> list[tuple[int, str]]:
        """(crc, name) of each 64-byte ``__versions`` entry."""
        return [(crc, _decode(raw)) for crc, raw in self._raw_modversions(offset, size)]

    def _raw_modversions(self, offset: int, size: int) -> list[tuple[int, bytes]]:
        """(crc, name bytes) of each ``__versions`` entry."""
        crcs, names = self._modversion_columns(offset, size)
        return list(zip(crcs, names, strict=True))

    def _modversion_columns(self, offset: int, size: int) -> tuple[list[int], list[bytes]]:
        """CRCs and names (bytes, up to the first NUL) of the
        ``__versions`` entries, each column made in a few C calls."""
        raw = self.data[offset : offset + size]
        layout = self.elf.layout
        words = array(layout.word, raw)[:: MODVERSION_SIZE // layout.word_size]
        if self.elf.endian != NATIVE_BYTE_ORDER:
            words.byteswap()
        return words.tolist(), self._modversion_names_in(raw)

    def _modversion_names(self, offset: int, size: int) -> list[bytes]:
        """The ``__versions`` names (bytes, up to the first NUL)."""
        return self._modversion_names_in(self.data[offset : offset + size])

    def _modversion_names_in(self, raw: bytes) -> list[bytes]:
        fields = map(itemgetter(0), self.elf.layout.modversion_name.iter_unpack(raw))
        return list(map(itemgetter(0), map(bytes.partition, fields, repeat(b"\0"))))

    def exports(self) -> Exports:
        """Exported symbols, as columns: the names at once, CRCs and
        bindings when first asked for (depmod working out dependencies
        reads thousands of modules' names and nothing else).

        From ``__crc_*`` symbols in ``.symtab`` when there are any (the CRC
        is the symbol value, or the u32 it points at inside a section);
        otherwise from ``__ksymtab_strings`` with CRC 0 — kmod's order.
        A name offset outside ``.strtab`` anywhere in the table also means
        the fallback, as in kmod.
        """
        found = self._crc_exports()
        if found is None:
            return Exports(self._ksymtab_strings())
        names, rows, table = found
        return Exports(
            names,
            lambda: self._export_crcs(rows, table),
            lambda: [_bind(table.infos[row] >> 4) for row in rows],
        )

    def _crc_exports(self) -> tuple[list[str], list[int], SymbolColumns] | None:
        """Names and rows of the ``__crc_`` symbols, the names made in a
        few C calls, and their table; None when ``__ksymtab_strings`` is
        the source instead."""
        table = self._symbol_columns
        # Most modules export nothing: no __crc_ name at all settles it
        # before the whole table is checked.
        crc_prefix = _CRC_PREFIX.encode()
        if table is None or crc_prefix not in table.strings or not table.names_in_range():
            return None
        rows = table.rows_named_with_prefix(crc_prefix)
        if not rows:
            return None
        raw_names = table.raw_names_of(rows)
        assert raw_names is not None  # every name is in range
        # Each name starts with the prefix and none holds a NUL: one
        # decode, one split.
        text = b"\0".join(raw_names).decode("utf-8", "surrogateescape")
        return text[len(_CRC_PREFIX) :].split("\0" + _CRC_PREFIX), rows, table

    def _export_crcs(self, rows: list[int], table: SymbolColumns) -> list[int]:
        """CRC of each ``__crc_`` symbol in ``rows``: its value when
        absolute, else the u32 its value points at inside its section
        (kmod's rule)."""
        word = struct.Struct(">I" if self.elf.big_endian else "<I")
        sections: dict[int, bytes | None] = {}  # CRCs share one or two sections
        crcs = []
        shndxs = map(table.shndxs.__getitem__, rows)
        for shndx, value in zip(shndxs, table.values_of(rows), strict=True):
            if shndx in (SHN_ABS, SHN_UNDEF):
                crcs.append(value)
                continue
            if shndx not in sections:
                bounds = self.elf.section_bounds_by_index(shndx)
                sections[shndx] = None if bounds is None else self.data[bounds[0] : sum(bounds)]
            contents = sections[shndx]
            if contents is None or len(contents) < 4 or value > len(contents) - 4:
                crcs.append(0xFFFFFFFFFFFFFFFF)
            else:
                crcs.append(word.unpack_from(contents, value)[0])
        return crcs

    def _ksymtab_strings(self) -> list[str]:
        raw = self.elf.section_data("__ksymtab_strings")
        if not raw:
            return []
        text = raw.lstrip(b"\0")
        if len(text) <= 1:
            return []
        return [name for name in text.decode("utf-8", "surrogateescape").split("\0") if name]

    def needed(self) -> NeededSymbols:
        """Symbols the module imports, as columns read on first use (see
        :class:`NeededSymbols`)."""
        return NeededSymbols(self)

    def _distinct_needed_names(self) -> list[str]:
        _, version_names = self._version_columns(crcs=False)
        _, _, raw_names = self._undefined_symbols()
        return _decode_all(list(dict.fromkeys(raw_names + version_names)))

    def _version_columns(self, crcs: bool) -> tuple[list[int], list[bytes]]:
        """``__versions``' CRCs (if asked for) and names; empty without a
        usable section."""
        bounds = self.elf.find_section("__versions")
        if bounds is None or bounds[1] % MODVERSION_SIZE:
            return [], []
        if crcs:
            return self._modversion_columns(*bounds)
        return [], self._modversion_names(*bounds)

    def _undefined_symbols(self) -> tuple[SymbolColumns, list[int], list[bytes]]:
        """The symbol table, and the rows and names (bytes) of its named
        undefined symbols, in table order."""
        table = self._symbol_columns
        if table is None:
            raise FormatError("no usable .symtab/.strtab")
        rows = table.undefined_rows()
        if self.elf.machine in (EM_SPARC, EM_SPARCV9):
            rows = [row for row in rows if table.infos[row] & 0xF != STT_REGISTER]
        raw_names = table.raw_names_of(rows)
        if raw_names is None:
            bad = next(row for row in rows if table.names[row] >= table.str_size)
            raise FormatError(f"symbol {bad + 1} names a string outside .strtab")
        if b"" in raw_names:  # nameless undefined symbols are not imports
            kept = [i for i, name in enumerate(raw_names) if name]
            rows, raw_names = [rows[i] for i in kept], [raw_names[i] for i in kept]
        return table, rows, raw_names

    def _needed_columns(self) -> tuple[list[str], list[int], list[bool]]:
        """Names, CRCs (from ``__versions``) and weak flags of the symbols
        the module imports, as three columns (see :class:`NeededSymbols`)."""
        version_crcs, version_names = self._version_columns(crcs=True)
        table, rows, raw_names = self._undefined_symbols()
        names = _decode_all(raw_names)
        weak = table.weak_flags(rows)
        if len(set(version_names)) < len(version_names):
            versions = list(zip(version_crcs, version_names, strict=True))
            crcs, extra = _match_versions_in_order(raw_names, versions)
        else:
            # The usual case, every name once: matched with C maps, which
            # matters for the 190,000 entries of a tree.
            crc_of = dict(zip(version_names, version_crcs, strict=True))
            crcs = list(map(crc_of.get, raw_names, repeat(0)))
            referenced = set(raw_names)
            extra = list(
                compress(
                    range(len(version_names)),
                    map(not_, map(referenced.__contains__, version_names)),
                )
            )
        # Entries no symbol refers to follow, in table order.
        names += _decode_all([version_names[i] for i in extra])
        crcs += [version_crcs[i] for i in extra]
        weak += [False] * len(extra)
        return names, crcs, weak


def _match_versions_in_order(
    raw_names: list[bytes], versions: list[tuple[int, bytes]]
) -> tuple[list[int], list[int]]:
    """CRCs of ``raw_names`` (each name's first ``__versions`` entry) and
    the positions of the entries no name took, repeated names included."""
    first: dict[bytes, tuple[int, int]] = {}
    for position, (crc, version_name) in enumerate(versions):
        first.setdefault(version_name, (position, crc))
    found = list(map(first.get, raw_names, repeat((-1, 0))))
    taken = set(map(itemgetter(0), found))
    return list(map(itemgetter(1), found)), [i for i in range(len(versions)) if i not in taken]


def _decode_all(raw: list[bytes]) -> list[str]:
    """Decode many names in one call (none holds a NUL byte)."""
    if not raw:
        return []
    return b"\0".join(raw).decode("utf-8", "surrogateescape").split("\0")


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _bind(elf_bind: int) -> Bind:
    return BIND_FROM_ELF.get(elf_bind, Bind.NONE)


class ModuleFile(ModuleImage):
    """A module read from a file; keeps the path, name and compression."""

    __slots__ = ("_fd", "_mmap", "compression", "name", "path")

    def __init__(
        self,
        data: ElfSource,
        path: str,
        kind: Compression,
        mapping: mmap.mmap | None = None,
        fd: int | None = None,
    ) -> None:
        self.path = path
        self.name = module_name_from_path(path)
        self.compression = kind
        self._mmap = mapping
        self._fd = fd  # owned: the file is read by position until close()
        super().__init__(data)

    def close(self) -> None:
        """Release the file; reading from the module after this raises
        :class:`~lkm.errors.LkmError` naming it."""
        closed: ElfSource = _Closed(self.path)  # type: ignore[assignment]
        self.data = self.elf.data = closed
        if self._mmap is not None:
            self._mmap.close()
            self._mmap = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ModuleFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Closed:
    """Stands in for a closed module's bytes: every read is an error
    naming the file, not a crash on a closed map or descriptor."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path

    def _fail(self) -> LkmError:
        return LkmError(f"{self.path}: read after the module file was closed")

    def __getitem__(self, _key: object) -> bytes:
        raise self._fail()

    def __len__(self) -> int:
        raise self._fail()

    def __getattr__(self, _name: str) -> object:
        raise self._fail()


def open_module(path: str, *, mapped: bool = True, tail: int = 0) -> ModuleFile:
    """Open a module file, decompressing by magic bytes.

    An uncompressed module is mapped (``mapped``, the default) or, with
    ``mapped=False``, read by position: only the regions asked for are
    read, which is cheaper for a reader that touches a few sections of
    each of thousands of files (depmod, modinfo). ``tail`` bytes at the
    end are then read at once (see :class:`FileRegions`).

    Every failure (missing file, not a regular file, empty or short file,
    corrupt stream, bad ELF) raises one :class:`~lkm.errors.LkmError` whose
    message names the file and the problem.
    """
    try:
        # Regular files only: the kernel loads nothing else (finit_module
        # says EINVAL), kmod maps the file by its size, and a FIFO or a
        # device would block or never end.
        fd, st = open_regular(path)
    except FileNotFoundError:
        raise ModuleFileNotFoundError(path) from None
    except OSError as exc:
        raise ModuleFormatError(path, exc.strerror or str(exc)) from None
    if not mapped:
        return _open_by_position(fd, path, st.st_size, tail)  # keeps fd open for reading on
    try:
        return _open_fd(fd, path, st.st_size)
    finally:
        os.close(fd)


def _open_fd(fd: int, path: str, size: int) -> ModuleFile:
    try:
        if size == 0:
            raise FormatError(_problem_of_size_zero(fd))
        mapping = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    except FormatError as exc:
        raise ModuleFormatError(path, str(exc)) from None
    except ValueError:  # emptied since the fstat: mmap refuses empty files
        raise ModuleFormatError(path, "empty file") from None
    except OSError as exc:
        raise ModuleFormatError(path, exc.strerror or str(exc)) from None
    try:
        kind = _compression_of(mapping)
        if kind is Compression.NONE:
            return ModuleFile(mapping, path, kind, mapping)
        data = compression.decompress(mapping, kind)
        mapping.close()
        return ModuleFile(data, path, kind)
    except FormatError as exc:
        mapping.close()
        raise _module_format_error(path, exc) from None
    except BaseException:
        mapping.close()
        raise


def _open_by_position(fd: int, path: str, size: int, tail: int = 0) -> ModuleFile:
    """A module over :class:`FileRegions` of ``fd`` (``size`` bytes long),
    which it then owns (closed here on failure)."""
    try:
        if size == 0:
            raise FormatError(_problem_of_size_zero(fd))
        regions = FileRegions(fd, size)
        kind = _compression_of_head(regions.head, size)
        if kind is Compression.NONE:
            if tail:  # a compressed module is read whole below: no tail for it
                regions.read_tail(tail)
            return ModuleFile(regions, path, kind, fd=fd)
        if size > compression.MAX_DECOMPRESSED:  # read whole below
            raise too_large(path, compression.MAX_DECOMPRESSED)
        data = compression.decompress(regions[:size], kind)
    except FormatError as exc:
        os.close(fd)
        raise _module_format_error(path, exc) from None
    except OSError as exc:
        os.close(fd)
        raise ModuleFormatError(path, exc.strerror or str(exc)) from None
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    try:
        return ModuleFile(data, path, kind)
    except FormatError as exc:
        raise _module_format_error(path, exc) from None


def _problem_of_size_zero(fd: int) -> str:
    """Why a regular file of size 0 is no module: empty, or a file whose
    size the kernel does not report (/proc, /sys), which kmod cannot map
    either (its mmap of 0 bytes fails with EINVAL)."""
    if os.pread(fd, 1, 0):
        return "its size is 0 but it is not empty (a /proc or /sys file?)"
    return "empty file"


def _module_format_error(path: str, exc: FormatError) -> ModuleFormatError:
    """The parser's error with the file's name, keeping "not ELF at all" apart."""
    kind = NotElfModuleError if isinstance(exc, NotElfError) else ModuleFormatError
    return kind(path, str(exc))


def _compression_of(data: ElfSource) -> Compression:
    return _compression_of_head(data[: compression.MAGIC_PROBE_SIZE], len(data))


def _compression_of_head(head: bytes, size: int) -> Compression:
    """Compression of a file ``size`` bytes long from its first bytes."""
    if size < compression.MAGIC_PROBE_SIZE:
        raise FormatError(f"file too short to be a module ({size} bytes)")
    return compression.detect(head[: compression.MAGIC_PROBE_SIZE])
