"""Exports and ``__versions`` read by lkm against kmod's ``modprobe
--show-exports`` and ``--dump-modversions`` on real modules of both trees."""

from __future__ import annotations

import pytest
from conftest import Result, kmod

from lkm.errors import LkmError
from lkm.formats.module_file import open_module
from lkm.testing.debian_kernels import KernelFixture

SAMPLE_EVERY = 8


def _lines(pairs: list[tuple[int, str]]) -> bytes:
    return b"".join(f"0x{crc:08x}\t{name}\n".encode() for crc, name in pairs)


def _check(want: Result, got: list[tuple[int, str]], path: object) -> None:
    """kmod fails (ENOENT) where a module has no such section; lkm then
    returns nothing, and a non-empty answer must match kmod's lines."""
    if want.status != 0:
        assert b"No such file or directory" in want.stderr and not got, path
    else:
        assert _lines(got) == want.stdout, path


@pytest.mark.parametrize("label", ["6.1", "6.12", "6.1-s390x", "6.1-armhf"])
def test_exports_and_versions(kernels: list[KernelFixture], label: str, report) -> None:  # type: ignore[no-untyped-def]
    kernel = next(k for k in kernels if k.label == label)
    paths = kernel.modules()[::SAMPLE_EVERY]
    exported = versioned = 0
    for path in paths:
        with open_module(str(path)) as module:
            exports = [(s.crc, s.name) for s in module.exports()]
            versions = [(v.crc, v.name) for v in module.versions()]
            symbols = module.elf.symbols() or []
        with open_module(str(path), mapped=False) as module:  # depmod's reader
            assert module.exports().names == [name for _, name in exports], path
            columns = module.exports()
            pairs = list(zip(columns.names, columns.crcs, strict=True))
            assert pairs == [(n, c) for c, n in exports], path
            table = module.elf.symbol_columns()
            undefined = [row for row, symbol in enumerate(symbols) if symbol.shndx == 0]
            assert table is None or table.undefined_rows() == undefined, path
        _check(kmod("modprobe", ["--show-exports", str(path)]), exports, path)
        _check(kmod("modprobe", ["--dump-modversions", str(path)]), versions, path)
        exported += bool(exports)
        versioned += bool(versions)
    assert exported > len(paths) // 10 and versioned > len(paths) // 2
    report(f"exports/__versions on {label}: {len(paths)} modules ({exported} with exports)")


def test_needed_symbols_cover_undefined_and_versions(kernel_61: KernelFixture) -> None:
    """Every undefined symbol is needed, with the CRC __versions gives it;
    entries no symbol refers to (module_layout) come last."""
    path = next(p for p in kernel_61.modules() if p.name == "loop.ko")
    with open_module(str(path)) as module:
        needed = list(module.needed())
        versions = {v.name: v.crc for v in module.versions()}
        undefined = [s.name for s in module.elf.symbols() or [] if s.shndx == 0 and s.name]
    names = [s.name for s in needed]
    assert names[: len(undefined)] == undefined
    assert set(names) == set(undefined) | set(versions)
    for symbol in needed:
        assert symbol.crc == versions.get(symbol.name, 0)
    assert "module_layout" in names[len(undefined) :] or "module_layout" not in versions


@pytest.mark.parametrize("label", ["6.1", "6.12", "6.1-s390x", "6.1-armhf"])
def test_read_by_position_equals_mapped(kernels: list[KernelFixture], label: str, report) -> None:  # type: ignore[no-untyped-def]
    """depmod reads modules by position (pread), the other tools map
    them: both give the same facts, module for module."""
    kernel = next(k for k in kernels if k.label == label)
    paths = kernel.modules()[::SAMPLE_EVERY]
    for path in paths:
        answers = []
        for mapped in (True, False):
            with open_module(str(path), mapped=mapped) as module:
                answers.append(
                    (
                        module.modinfo(),
                        list(module.exports()),
                        module.versions(),
                        list(module.needed()),
                        module.signature,
                    )
                )
        assert answers[0] == answers[1], path
    report(f"read by position = mapped on {label}: {len(paths)} modules")


@pytest.mark.parametrize("label", ["6.1", "6.12", "6.1-s390x", "6.1-armhf"])
def test_import_names_are_needed_names(kernels: list[KernelFixture], label: str, report) -> None:  # type: ignore[no-untyped-def]
    """What an uncached depmod reads for dependencies: the needed names,
    first seen in the same order, each once, module for module."""
    kernel = next(k for k in kernels if k.label == label)
    paths = kernel.modules()[::SAMPLE_EVERY]
    names = 0
    for path in paths:
        with open_module(str(path), mapped=False) as module:
            needed = module.needed().names
            imports = module.needed().distinct_names()  # a fresh one: the names-only path
        assert imports == list(dict.fromkeys(needed)), path
        names += len(imports)
    assert names > 10 * len(paths)
    report(f"import names = needed names on {label}: {len(paths)} modules, {names} names")


def test_reading_a_closed_module_is_an_error_naming_it(kernel_61: KernelFixture) -> None:
    """Columns are read on first use: after close() that is one LkmError
    naming the file, on both ways of opening."""
    path = next(p for p in kernel_61.modules() if p.name == "mii.ko")  # exports with CRCs
    for mapped in (True, False):
        with open_module(str(path), mapped=mapped) as module:
            exports, needed = module.exports(), module.needed()
            names = exports.names  # read while open: kept
        assert exports.names is names  # what was read while open stays
        late_reads = (lambda: exports.crcs, lambda: needed.names, module.modinfo)  # noqa: B023
        for late in late_reads:
            with pytest.raises(LkmError, match=f"{path}: read after the module file was closed"):
                late()
