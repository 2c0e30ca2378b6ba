"""A module's parameter table, as the kernel's loader sees it.

``module_param()`` and its relatives put one ``struct kernel_param`` per
parameter in the ``__param`` section. In the object file its pointers are
still relocations (``.rela__param``): the name points into a string
section, the operations at ``param_ops_int``, ``param_array_ops``, … (an
undefined symbol the kernel exports) or at the module's own ops. That
table, not ``.modinfo`` (``parmtype=`` is missing for ``module_param_cb``),
is what ``parse_args`` matches a load's parameters against.

Read for 64-bit objects with RELA relocations (every architecture Debian
builds 64-bit); elsewhere :func:`module_params` returns None: not known.
"""

from __future__ import annotations

import struct

from lkm.records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from lkm.formats.elf import ElfFile, ElfSymbol

# struct kernel_param on 64-bit: name, mod, ops (pointers), perm (u16),
# level (s8), flags (u8), 4 bytes of padding, then the union (arg, str, arr).
PARAM_SIZE = 40
NAME_FIELD, OPS_FIELD, FLAGS_FIELD, ARG_FIELD = 0, 16, 27, 32
FLAG_UNSAFE = 1  # KERNEL_PARAM_FL_UNSAFE
FLAG_HWPARAM = 2  # KERNEL_PARAM_FL_HWPARAM: module_param_hw, refused under lockdown


class ModuleParam(Record):
    """One entry of the module's ``__param`` table."""

    name: str
    ops: str  # the kernel's ops symbol ("param_ops_int", …); "" for the module's own
    flags: int
    limit: int = 0  # param_array_ops: the array's size; param_ops_string: its buffer's


def module_params(elf: ElfFile) -> list[ModuleParam] | None:
    """The parameter table of a module (empty without parameters); None
    when this object's relocations are not read (32-bit, REL) or do not
    make sense."""
    table = elf.find_section("__param")
    if table is None:
        return []
    relocations = elf.find_section(".rela__param")
    rela = struct.Struct(elf.endian + "QQq")
    if not elf.is64 or relocations is None or table[1] % PARAM_SIZE or relocations[1] % rela.size:
        return None
    symbols = elf.symbols()
    if symbols is None:
        return None
    offset, size = relocations
    fields: dict[tuple[int, int], tuple[ElfSymbol, int]] = {}
    for r_offset, r_info, addend in rela.iter_unpack(elf.data[offset : offset + size]):
        index = r_info >> 32
        if not 1 <= index <= len(symbols):
            return None
        fields[divmod(r_offset, PARAM_SIZE)] = (symbols[index - 1], addend)
    count = table[1] // PARAM_SIZE
    params = []
    for slot in range(count):
        param = _param(elf, table[0] + slot * PARAM_SIZE, fields, slot)
        if param is None:
            return None
        params.append(param)
    return params


def _param(
    elf: ElfFile, at: int, fields: dict[tuple[int, int], tuple[ElfSymbol, int]], slot: int
) -> ModuleParam | None:
    name_target = fields.get((slot, NAME_FIELD))
    ops_target = fields.get((slot, OPS_FIELD))
    if name_target is None or ops_target is None:
        return None
    name = _string_at(elf, *name_target)
    if name is None:
        return None
    ops_symbol = ops_target[0]
    ops = (ops_symbol.name or "") if ops_symbol.shndx == 0 else ""
    flags = elf.data[at + FLAGS_FIELD : at + FLAGS_FIELD + 1][0]
    limit = 0
    if ops in ("param_array_ops", "param_ops_string"):
        # kparam_array and kparam_string both start with their size (u32):
        # the array's number of elements, the string buffer's length.
        arg = fields.get((slot, ARG_FIELD))
        limit = _u32_at(elf, *arg) if arg is not None else 0
    return ModuleParam(name, ops, flags, limit)


def _location(elf: ElfFile, symbol: ElfSymbol, addend: int) -> tuple[int, int] | None:
    """(file offset, end of its section) a relocation's target lies at."""
    bounds = elf.section_bounds_by_index(symbol.shndx)
    if bounds is None:
        return None
    start, size = bounds
    where = start + symbol.value + addend
    if not start <= where < start + size:
        return None
    return where, start + size


def _string_at(elf: ElfFile, symbol: ElfSymbol, addend: int) -> str | None:
    location = _location(elf, symbol, addend)
    return None if location is None else elf.cstring(*location)


def _u32_at(elf: ElfFile, symbol: ElfSymbol, addend: int) -> int:
    location = _location(elf, symbol, addend)
    if location is None or location[0] + 4 > location[1]:
        return 0
    value: int = struct.unpack_from(elf.endian + "I", elf.data[location[0] : location[0] + 4])[0]
    return value


__all__ = ["ModuleParam", "module_params"]
