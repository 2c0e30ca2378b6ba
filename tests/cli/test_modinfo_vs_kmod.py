"""``lkm modinfo FILE…`` against kmod's modinfo on every module of both trees.

Byte for byte: stdout, stderr and exit status, for the plain listing, ``-0``
and ``-F`` with the fields the issue names, plus the recompressed copies.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Result, chunks, kmod, lkm

from lkm.testing.debian_kernels import KernelFixture

BATCH = 400
VARIANTS: list[list[str]] = [
    [],
    ["-0"],
    *(
        ["-F", field]
        for field in ("signer", "sig_key", "sig_hashalgo", "depends", "vermagic", "alias")
    ),
]


def _compare_batches(files: list[str], options: list[str]) -> list[str]:
    """Per-batch comparison; on a difference, narrow it down to the files."""
    problems: list[str] = []
    for batch in chunks(files, BATCH):
        want = kmod("modinfo", [*options, *batch])
        got = lkm("modinfo", [*options, *batch])
        if want == got:
            continue
        for path in batch:
            one_want = kmod("modinfo", [*options, path])
            one_got = lkm("modinfo", [*options, path])
            if one_want != one_got:
                problems.append(_describe(path, options, one_want, one_got))
        if len(problems) > 20:
            break
    return problems


def _describe(path: str, options: list[str], want: Result, got: Result) -> str:
    return (
        f"{' '.join(options)} {path}:\n  kmod {want.status} {want.stdout[:300]!r} {want.stderr!r}"
        f"\n  lkm  {got.status} {got.stdout[:300]!r} {got.stderr!r}"
    )


@pytest.mark.parametrize("label", ["6.1", "6.12"])
@pytest.mark.parametrize("options", VARIANTS, ids=lambda o: " ".join(o) or "plain")
def test_every_module_file(
    kernels: list[KernelFixture], label: str, options: list[str], report
) -> None:  # type: ignore[no-untyped-def]
    kernel = next(k for k in kernels if k.label == label)
    files = [str(p) for p in kernel.modules()]
    assert len(files) > 3000, f"only {len(files)} modules in {kernel.moddir}"
    problems = _compare_batches(files, options)
    report(f"modinfo {' '.join(options) or '(plain)'} on {label}: {len(files)} modules")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("label", ["6.1", "6.12"])
@pytest.mark.parametrize(
    "options", [[], ["-0"], ["-F", "signer"]], ids=lambda o: " ".join(o) or "plain"
)
def test_recompressed_copies(
    kernels: list[KernelFixture], label: str, options: list[str], report
) -> None:  # type: ignore[no-untyped-def]
    """zstd copies compare directly. Debian's kmod 30 is built without zlib,
    so a gzip copy is compared with kmod's output for the zstd copy of the
    same module, the filename line adjusted."""
    kernel = next(k for k in kernels if k.label == label)
    zst = sorted(str(p) for p in (Path(kernel.recompressed) / "zst").iterdir())
    gz = [p.replace("/zst/", "/gz/").removesuffix(".zst") + ".gz" for p in zst]
    assert len(zst) >= 100
    problems = _compare_batches(zst, options)
    assert not problems, "\n".join(problems)
    for zst_path, gz_path in zip(zst, gz, strict=True):
        want = kmod("modinfo", [*options, zst_path])
        got = lkm("modinfo", [*options, gz_path])
        expected = want.stdout.replace(zst_path.encode(), gz_path.encode())
        assert (got.stdout, got.stderr, got.status) == (expected, want.stderr, want.status), gz_path
    shown = " ".join(options) or "(plain)"
    report(f"modinfo {shown} on {label} recompressed: {len(zst)} .zst + {len(gz)} .gz")
