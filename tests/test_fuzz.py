"""Fuzzing: mutated and truncated real modules and indexes.

Every input must end in a normal result or exactly one kind of outcome:
``modinfo`` exits 1 with error lines (``modinfo: ERROR: …``) whose first
one names the file, and the library raises an LkmError — never another
exception (a traceback), never a hang (hypothesis' deadline). CI runs at
least 2,000 mutated modules (``LKM_FUZZ_EXAMPLES`` raises it).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import command, fuzz_example, lkm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lkm.errors import LkmError
from lkm.formats.module_file import open_module
from lkm.formats.module_params import module_params
from lkm.model.modinfo import info_entries
from lkm.testing.debian_kernels import KernelFixture, load_manifest

EXAMPLES = int(os.environ.get("LKM_FUZZ_EXAMPLES", "2200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=timedelta(seconds=10),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@functools.cache
def _seed_paths() -> list[Path]:
    """Small real modules of every kind the reader meets."""
    kernels = {k.label: k for k in load_manifest()}
    seeds: list[Path] = []
    for label in ("6.1", "6.12", "6.1-s390x", "6.1-armhf"):
        if label in kernels:
            modules = kernels[label].modules()
            small = sorted(modules, key=lambda p: p.stat().st_size)[len(modules) // 10 :: 600]
            seeds.extend(small[:3])
    for label in ("6.1",):
        if label in kernels:
            for kind in ("gz", "zst"):
                seeds.extend(sorted((Path(kernels[label].recompressed) / kind).iterdir())[:2])
    return seeds


@functools.cache
def seeds() -> list[tuple[str, bytes]]:
    """(file name, bytes) of the seed modules, read once, when first needed
    (collecting the tests needs no fixtures: ``pytest -m "not fixtures"``)."""
    return [(p.name, p.read_bytes()) for p in _seed_paths()]


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    name, data = draw(st.sampled_from(seeds()))
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "bytes", "word", "header", "tail"]))
        if not buf:
            break
        if kind == "truncate":
            del buf[draw(st.integers(0, len(buf) - 1)) :]
        elif kind == "bytes":
            pos = draw(st.integers(0, len(buf) - 1))
            chunk = draw(st.binary(min_size=1, max_size=16))
            buf[pos : pos + len(chunk)] = chunk
        elif kind in ("word", "header", "tail"):
            # Offsets, sizes and counts: the fields a parser trusts.
            limit = {"word": len(buf), "header": min(len(buf), 64), "tail": len(buf)}[kind]
            low = max(0, len(buf) - 2048) if kind == "tail" else 0
            pos = draw(st.integers(low, max(low, limit - 1)))
            value = draw(
                st.sampled_from(
                    [0, 1, 0x7F, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, len(buf), len(buf) + 1]
                )
            )
            width = draw(st.sampled_from([1, 2, 4, 8]))
            buf[pos : pos + width] = value.to_bytes(8, "little")[:width]
    return name, bytes(buf)


def _check_cli(path: Path, args: list[str]) -> None:
    result = lkm("modinfo", [*args, str(path)])
    assert result.status in (0, 1)
    lines = result.stderr.decode(errors="replace").splitlines()
    if result.status == 1:
        assert lines, "failure without a message"
        assert str(path) in lines[0] or path.name.split(".")[0] in lines[0], lines
    assert all(line.startswith("modinfo: ERROR: ") for line in lines), lines


def _read_everything(path: Path, mapped: bool) -> object:
    """All a module reader answers, or the LkmError it raised."""
    try:
        with open_module(str(path), mapped=mapped) as module:
            return (
                info_entries(module),
                list(module.exports()),
                module.versions(),
                list(module.needed()),
                module.signature,
                module_params(module.elf),
            )
    except LkmError as exc:
        return exc


@pytest.mark.fixtures
@FUZZ
@given(case=mutated())
def test_mutated_modules(tmp_path_factory: pytest.TempPathFactory, case: tuple[str, bytes]) -> None:
    name, data = case
    path = tmp_path_factory.mktemp("fuzz") / name
    path.write_bytes(data)
    _check_cli(path, [])
    _check_cli(path, ["-F", "signer"])
    mapped = _read_everything(path, mapped=True)
    if isinstance(mapped, LkmError):
        assert (
            str(path) in str(mapped)
            or "symtab" in str(mapped)
            or "symbol" in str(mapped)
            or "__versions" in str(mapped)
        )
    # Read by position (depmod's way), the same file gives the same
    # answers and the same errors.
    by_position = _read_everything(path, mapped=False)
    assert repr(by_position) == repr(mapped)
    path.unlink()
    fuzz_example(
        "mutated and truncated modules (modinfo, every reader incl. the parameter table, "
        "mapped and by position)"
    )


@pytest.mark.fixtures
def test_seeds_cover_every_kind() -> None:
    suffixes = {name.split(".ko", 1)[1] for name, _ in seeds()}
    assert {"", ".xz", ".gz", ".zst"} <= suffixes, suffixes


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory: pytest.TempPathFactory, kernel_61: KernelFixture) -> Path:
    """A handful of real modules indexed by kmod's depmod: small indexes."""
    root = tmp_path_factory.mktemp("tree")
    moddir = root / "lib" / "modules" / kernel_61.version
    (moddir / "kernel").mkdir(parents=True)
    for name in ("loop.ko", "dummy.ko", "nbd.ko", "veth.ko", "tun.ko"):
        src = next(p for p in kernel_61.modules() if p.name == name)
        shutil.copy(src, moddir / "kernel" / name)
    shutil.copy(kernel_61.moddir / "modules.builtin", moddir)
    shutil.copy(kernel_61.moddir / "modules.builtin.modinfo", moddir)
    command(["depmod", "-b", str(root), kernel_61.version], check=True)
    return root


INDEXES = [
    "modules.dep.bin",
    "modules.alias.bin",
    "modules.builtin.bin",
    "modules.builtin.alias.bin",
    "modules.symbols.bin",
]


@settings(
    max_examples=max(300, EXAMPLES // 4),
    deadline=timedelta(seconds=10),
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    index=st.sampled_from(INDEXES),
    cut=st.integers(0, 1 << 16),
    patches=st.lists(
        st.tuples(st.integers(0, 1 << 16), st.binary(min_size=1, max_size=4)), max_size=4
    ),
    query=st.sampled_from(
        [
            "loop",
            "dummy",
            "block-major-7-0",
            "char-major-10-200",
            "symbol:tun_get_socket",
            "no_such",
            "fs-ext4",
            "crypto-sha256",
            "pci:v0000*",
        ]
    ),
)
def test_mutated_indexes(
    small_tree: Path,
    kernel_61: KernelFixture,
    index: str,
    cut: int,
    patches: list[tuple[int, bytes]],
    query: str,
) -> None:
    moddir = small_tree / "lib" / "modules" / kernel_61.version
    original = (moddir / index).read_bytes()
    data = bytearray(
        original[: max(0, len(original) - cut % (len(original) + 1))] if cut % 3 == 0 else original
    )
    for pos, chunk in patches:
        if data:
            at = pos % len(data)
            data[at : at + len(chunk)] = chunk
    (moddir / index).write_bytes(bytes(data))
    try:
        result = lkm("modinfo", ["-b", str(small_tree), "-k", kernel_61.version, query])
        assert result.status in (0, 1)
        lines = result.stderr.decode(errors="replace").splitlines()
        assert all(line.startswith("modinfo: ERROR: ") for line in lines), lines
        if result.status == 1:
            assert len(lines) >= 1
    finally:
        (moddir / index).write_bytes(original)
    fuzz_example("mutated and truncated indexes (modinfo lookups)")


@FUZZ
@given(raw=st.binary(max_size=300) | st.builds(lambda b: b"6,1,2,-;" + b, st.binary(max_size=200)))
def test_kmsg_records(raw: bytes) -> None:
    """A kernel log record parses and prints, or raises FormatError."""
    from lkm.errors import FormatError
    from lkm.formats.kmsg import format_record, from_module, parse_record

    fuzz_example("kernel log records")
    try:
        record = parse_record(raw)
    except FormatError:
        return
    assert format_record(record, decode=True).endswith(b"\n")
    from_module(record, "dummy")
    from_module(record, "d\udcffmmy")  # a module name that is not UTF-8


@pytest.mark.fixtures
@FUZZ
@given(data=st.data())
def test_bzimage_headers(data: st.DataObject) -> None:
    """Mutated and truncated kernel headers: a result or FormatError only."""
    from lkm.errors import FormatError
    from lkm.formats.bzimage import has_pvh_entry, payload

    bzimage, elf = _kernel_heads()
    for seed, parse in ((bzimage, payload), (elf, has_pvh_entry)):
        header = bytearray(seed)
        for _ in range(data.draw(st.integers(1, 4))):
            at = data.draw(st.integers(0, len(header) - 1))
            header[at] = data.draw(st.integers(0, 255))
        with contextlib.suppress(FormatError):
            parse(bytes(header[: data.draw(st.integers(0, len(header)))]))
    fuzz_example("bzImage and vmlinux headers")


@functools.cache
def _kernel_heads() -> tuple[bytes, bytes]:
    """The start of the 6.1 bzImage and of its vmlinux (headers and notes)."""
    from lkm.vm.kernel_image import bootable_image

    kernel = next(k for k in load_manifest() if k.label == "6.1")
    with open(bootable_image(str(kernel.vmlinuz)), "rb") as f:
        elf = f.read(1 << 16)
    return kernel.vmlinuz.read_bytes()[:8192], elf


# Text as lkm reads it from files and argv: bytes, not always UTF-8,
# decoded with surrogateescape.
RAW_TEXT = st.binary(max_size=6).map(lambda raw: raw.decode("utf-8", "surrogateescape"))
CONFIG_WORDS = ["alias", "options", "install", "remove", "softdep", "weakdep", "blacklist",
                "pre:", "post:", "[", "]", "-", "\\", "\\\n", "\n", " ", "\t", "#", "x-y",
                '"', ".", "=", "modprobe.blacklist=", "include"]  # fmt: skip


@FUZZ
@given(parts=st.lists(st.sampled_from(CONFIG_WORDS) | st.text(max_size=6) | RAW_TEXT, max_size=40))
def test_modprobe_config_and_cmdline(parts: list[str]) -> None:
    """Any modprobe.d text or kernel command line parses: bad lines become
    one-line warnings, never exceptions."""
    from lkm.model.modprobe_config import ModprobeConfig, parse_cmdline, parse_config

    text = "".join(parts)
    config = ModprobeConfig()
    warnings: list[str] = []
    parse_config(text, "fuzz.conf", config, warnings.append)
    parse_cmdline(text, config, warnings.append)
    assert all("\n" not in w for w in warnings)
    config.show()
    fuzz_example("modprobe.d text and kernel command lines")


PLAN_WORDS = ["9p", "loop", "dummy", "pci:v*", "[", "]", "*", "?", "symbol:", "fs-", "-", "_",
              "crc32c", "ext4", ":"]  # fmt: skip


@pytest.mark.fixtures
@FUZZ
@given(
    config_parts=st.lists(
        st.sampled_from(CONFIG_WORDS + PLAN_WORDS) | st.text(max_size=6) | RAW_TEXT, max_size=30
    ),
    request=st.lists(
        st.sampled_from(PLAN_WORDS) | st.text(max_size=4) | RAW_TEXT, min_size=1, max_size=4
    ),
)
def test_modprobe_plans_any_configuration_and_name(
    config_parts: list[str], request: list[str]
) -> None:
    """Whatever the configuration and the name, a plan comes back: a status
    and one-line messages, never an exception or a hang (softdep cycles
    included)."""
    from lkm.model.modprobe_config import ModprobeConfig, parse_config
    from lkm.system.kernel import KernelModules
    from lkm.workflows.modprobe import LoadFlags, Modprobe, RemoveFlags, split_env_options

    kernel = next(k for k in load_manifest() if k.label == "6.1")
    config = ModprobeConfig()
    parse_config("".join(config_parts), "fuzz.conf", config, lambda _message: None)
    name = "".join(request)
    with Modprobe(str(kernel.indexed_moddir), config, KernelModules("/nonexistent")) as modprobe:
        for plan in (
            modprobe.plan_load(name, flags=LoadFlags(ignore_loaded=True)),
            modprobe.plan_remove(name, RemoveFlags(ignore_loaded=True)),
        ):
            assert isinstance(plan.status, int)
            assert all(text.count("\n") == 1 and text.endswith("\n") for _, text in plan.messages)
    split_env_options("".join(config_parts))
    fuzz_example("modprobe plans for any configuration and name")
