"""``lkm dkms autoinstall`` on real bookworm ``*-dkms`` packages (unpacked
from their ``.deb``, as test_dkms_vs_dkms.py does) and the 6.1 headers:
every package tried, a failure reported and not stopping the rest, the
newest version only, and a second run that builds nothing.

``make`` is found through a wrapper on PATH that logs each call and its
MAKEFLAGS, so the test sees which builds ran (each package's MAKE starts
with ``make``) and that they share lkm's jobserver."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest
from conftest import json_of, lkm
from test_dkms_vs_dkms import Side, sources  # noqa: F401 - the session fixture

from lkm.testing.debian_kernels import KernelFixture


def _copy_as(source: Path, dest: Path, name: str, version: str, conf_edit: str) -> None:
    """A copy of a package under another name/version with its dkms.conf edited."""
    shutil.copytree(source, dest, symlinks=True)
    conf = dest / "dkms.conf"
    text = re.sub(r"(?m)^PACKAGE_(NAME|VERSION)=.*\n", "", conf.read_text())
    conf.write_text(f'PACKAGE_NAME="{name}"\nPACKAGE_VERSION="{version}"\n{text}{conf_edit}')


def _make_logger(where: Path) -> Path:
    """A ``make`` that appends its arguments to ``make.calls`` and runs make."""
    real = shutil.which("make")
    assert real is not None
    bin_dir = where / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "make"
    wrapper.write_text(
        f'#!/bin/sh\necho "$MAKEFLAGS | $*" >> {where}/make.calls\nexec {real} "$@"\n'
    )
    wrapper.chmod(0o755)
    return bin_dir


def test_autoinstall_goes_past_a_failure(
    sources: dict[str, Path],  # noqa: F811
    kernel_61: KernelFixture,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    report,  # type: ignore[no-untyped-def]
) -> None:
    kernel = kernel_61
    side = Side(tmp_path / "side", kernel, sources)
    acpi = side.src / "acpi-call-1.2.2"
    # an older acpi-call (autoinstall must take only the newest) and a
    # package whose MAKE fails
    _copy_as(acpi, side.src / "acpi-call-1.0", "acpi-call", "1.0", "")
    _copy_as(acpi, side.src / "broken-1.0", "broken", "1.0", 'MAKE[0]="make -C /nonexistent"\n')
    options = side.options(kernel)  # --dkmstree … -k KVER --kernelsourcedir …
    bin_dir = _make_logger(tmp_path)
    calls = tmp_path / "make.calls"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("LKM_CACHE", str(tmp_path / "lkm-cache"))  # not the host's /var/cache
    for key, value in side.env().items():
        monkeypatch.setenv(key, value)
    for mv in ("acpi-call/1.2.2", "acpi-call/1.0", "tp_smapi/0.43", "broken/1.0"):
        assert lkm("dkms", ["add", mv, *options]).status == 0, mv

    result = lkm("dkms", ["autoinstall", "-j", "2", *options])
    err = result.stderr.decode()
    assert result.status == 11, err
    assert err.count("\n") == 1, err  # one line: the failure
    assert err.startswith("dkms: broken/1.0 for kernel ") and kernel.version in err
    assert "make failed" in err and "make.log" in err
    # Three builds, whose makes share lkm's 2 job slots (no -jN of their own).
    tops = [c for c in calls.read_text().splitlines() if "| KERNELRELEASE=" in c]
    assert len(tops) == 3 and all(" -j --jobserver-auth=" in c for c in tops), tops

    # (the headers from --kernelsourcedir: the side's tree has no build link)
    listed = lkm("dkms", ["status", "--json", *options[:6], *options[8:]])
    state = json_of("dkms-status", listed.stdout)
    got = {(e["module"], e["version"]): (e["state"], e["kernel"]) for e in state}
    assert got == {
        ("acpi-call", "1.0"): ("added", None),
        ("acpi-call", "1.2.2"): ("installed", kernel.version),
        ("broken", "1.0"): ("failed", kernel.version),
        ("tp_smapi", "0.43"): ("installed", kernel.version),
    }
    # lkm check's verdict on each built module against the kernel's tree and
    # headers: out of tree, signed by DKMS's key (not the kernel's), loads
    verdicts = {v["module"]: v for e in state for v in e["load"] or []}
    assert set(verdicts) >= {"acpi_call", "tp_smapi", "thinkpad_ec"}, verdicts
    assert {(v["verdict"], v["reason"]) for v in verdicts.values()} == {("loads with taint", None)}
    failed = next(e for e in state if e["module"] == "broken")
    assert failed["reason"] in err and Path(failed["log"]).read_text().count("/nonexistent")
    text = lkm("dkms", ["status", *options[:6]]).stdout.decode()
    assert "broken/1.0: added\n" in text  # dkms's line format: no failed state there
    placed = sorted(p.name for p in (side.moddir / "updates" / "dkms").iterdir())
    # hdaps is left out as dkms leaves it: the kernel has its own (version check)
    assert placed == ["acpi_call.ko", "thinkpad_ec.ko", "tp_smapi.ko"]
    dep = (side.moddir / "modules.dep").read_text()
    assert "updates/dkms/acpi_call.ko:" in dep and "updates/dkms/tp_smapi.ko:" in dep

    # Nothing changed: no make, under a second; the failure reported again
    # from its record, as a failure.
    calls.unlink()
    started = time.monotonic()
    again = lkm("dkms", ["autoinstall", "-j", "2", *options])
    took = time.monotonic() - started
    assert again.status == 11 and again.stderr.count(b"\n") == 1
    assert b"broken/1.0" in again.stderr and b"not rebuilt" in again.stderr
    assert not calls.exists(), calls.read_text()
    assert took < 1.0, took

    # Unbuilt (a kernel's prerm hook), then autoinstall: the same build
    # copied back from lkm's build cache, not compiled.
    built = side.tree / "acpi-call/1.2.2" / kernel.version / os.uname().machine
    module = built / "module" / "acpi_call.ko"
    before = module.read_bytes()
    assert lkm("dkms", ["unbuild", "acpi-call/1.2.2", *options]).status == 0
    assert not module.exists() and not (side.moddir / "updates/dkms/acpi_call.ko").exists()
    reused = lkm("dkms", ["autoinstall", "-j", "2", *options])
    assert reused.status == 11 and b"Reusing the build of acpi-call/1.2.2" in reused.stdout
    assert not calls.exists(), calls.read_text()
    assert module.read_bytes() == before == (side.moddir / "updates/dkms/acpi_call.ko").read_bytes()

    # A changed source file: tried again.
    with (side.src / "broken-1.0" / "dkms.conf").open("a") as conf:
        conf.write("# edited\n")
    third = lkm("dkms", ["autoinstall", "-j", "2", *options])
    assert third.status == 11 and b"not rebuilt" not in third.stderr
    assert calls.read_text().count("/nonexistent") == 1
    report(
        f"dkms autoinstall on {kernel.version}: 3 packages (1 failing), "
        f"second run {took:.2f} s without make"
    )
