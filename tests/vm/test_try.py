"""``lkm try`` in the real Debian kernels: every template on 6.1 and 6.12,
and modules that fail the ways modules fail (init returns -ENODEV, a
non-GPL license, a warning, an oops, a panic).

Each test runs the real command: kbuild against the fixture's headers, a
QEMU boot of the matching kernel, the module loaded, tested and unloaded
there, and the report printed on stdout.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from conftest import command, json_of

from lkm.testing.debian_kernels import KernelFixture
from lkm.workflows.scaffold import create

LKM = str(Path(sys.executable).with_name("lkm"))


def lkm_try(
    directory: Path, kernel: KernelFixture, test: list[str] | None = None
) -> tuple[int, str]:
    argv = [LKM, "try", str(directory), "--kernel", kernel.version, "-j2"]
    if test:
        argv += ["--", *test]
    proc = command(argv, text=True, timeout=900)
    return proc.returncode, proc.stdout + proc.stderr


def report_of(output: str) -> str:
    """The report after the build output (starts at the boot line)."""
    return output[output.index("== boot ") :]


def log_lines(output: str, phase: str) -> list[str]:
    """The kernel log lines the report attributes to ``phase``, without time stamps."""
    pattern = re.compile(rf"^  {phase} +\[ *\d+\.\d+\] (.*)$", re.M)
    return pattern.findall(output)


def shell(script: str) -> list[str]:
    return ["sh", "-c", script]


@pytest.fixture(params=["6.1", "6.12"])
def kernel(request: pytest.FixtureRequest, kernels: list[KernelFixture]) -> KernelFixture:
    return next(k for k in kernels if k.label == request.param)


def test_hello_logs_on_load_and_unload(kernel: KernelFixture, tmp_path: Path) -> None:
    create(str(tmp_path / "hello"))
    status, output = lkm_try(tmp_path / "hello", kernel)
    assert status == 0, output
    report = report_of(output)
    assert "hello: Hello, world" in log_lines(report, "load")
    assert "hello: Goodbye, world" in log_lines(report, "unload")
    assert re.search(r"^  hello +\d+  0$", report, re.M), report  # the lsmod line
    assert "insmod hello: ok\n" in report and "rmmod hello: ok\n" in report
    # Debian's kernels sign their modules; one built here is neither in-tree nor signed.
    assert (
        "taint: O (externally-built (out-of-tree) module was loaded), E (unsigned module" in report
    )
    assert re.search(r"^ok \(build [\d.]+ s, boot [\d.]+ s, load ", report, re.M)


def test_chardev_gives_back_what_was_written(kernel: KernelFixture, tmp_path: Path) -> None:
    create(str(tmp_path / "echodev"), "chardev")
    payload = "lkm wrote these 32 bytes to it!"
    script = 'printf %s "$1" > /dev/echodev && cat /dev/echodev && echo && ls -l /dev/echodev'
    status, output = lkm_try(tmp_path / "echodev", kernel, [*shell(script), "sh", payload])
    assert status == 0, output
    report = report_of(output)
    stdout = [line[4:] for line in report.splitlines() if line.startswith("  | ")]
    assert stdout[0] == payload, report
    assert stdout[1].startswith("crw-rw-rw- ") and stdout[1].endswith(" /dev/echodev")
    assert "echodev: registered /dev/echodev" in " ".join(log_lines(report, "load"))


def test_params_are_read_and_changed_through_sysfs(kernel: KernelFixture, tmp_path: Path) -> None:
    create(str(tmp_path / "knobs"), "params")
    script = (
        "cd /sys/module/knobs/parameters && cat count greeting loud"
        " && echo 3 > count && printf hey > greeting && echo Y > loud"
        " && cat count greeting loud"
    )
    # The report as JSON (lkm/schemas/try.schema.json); the build's lines on stderr.
    argv = [LKM, "try", str(tmp_path / "knobs"), "--kernel", kernel.version, "-j2", "--json"]
    proc = command([*argv, "--", *shell(script)], text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "== boot " in proc.stderr
    (report,) = json_of("try", proc.stdout)
    assert report["ok"] and report["problems"] == [] and report["kernel"] == kernel.version
    assert report["test"]["stdout"].splitlines() == ["1", "hello", "N", "3", "hey", "Y"]
    assert report["parameters"]["knobs"]["count"] == "1"
    assert [(c["call"], c["module"], c["ok"]) for c in report["load"]] == [
        ("insmod", "knobs", True)
    ]
    assert [m["module"] for m in report["loaded"]] == ["knobs"]
    assert {t["letter"] for t in report["taints"]} == {"O", "E"}
    messages = {(r["phase"], r["message"]) for r in report["log"]}
    assert ("load", "knobs: hello") in messages
    assert ("unload", "knobs: count=3 greeting=hey loud=1 at unload") in messages
    assert {"build", "boot", "load", "unload"} <= set(report["seconds"])


PAIR_SCRIPT = """
set -u
# The exporter cannot go while the importer uses it: lkm says what kmod says.
lkm_says=$(lkm rmmod duo_core 2>&1; echo "status $?")
kmod_says=$(rmmod duo_core 2>&1; echo "status $?")
[ "$lkm_says" = "$kmod_says" ] && echo "same: $kmod_says"
# A module directory holding both, indexed by lkm depmod: modprobe of the
# importer loads the exporter first.
lkm rmmod duo_user duo_core
tree=$(mktemp -d)
extra=$tree/lib/modules/$(uname -r)/extra
mkdir -p "$extra" && cp duo_core.ko duo_user.ko "$extra"
lkm depmod -b "$tree"
lkm modprobe -v -d "$tree" duo_user | sed "s|$tree|TREE|"
lsmod | grep duo_
"""


def test_pair_loads_in_dependency_order(kernel: KernelFixture, tmp_path: Path) -> None:
    create(str(tmp_path / "duo"), "pair")
    status, output = lkm_try(tmp_path / "duo", kernel, shell(PAIR_SCRIPT))
    assert status == 0, output
    report = report_of(output)
    assert "== boot " in report and " try duo_core duo_user\n" in report
    assert report.index("insmod duo_core: ok") < report.index("insmod duo_user: ok")
    assert re.search(r"^  duo_core +\d+  1 duo_user$", report, re.M), report
    stdout = [line[4:] for line in report.splitlines() if line.startswith("  | ")]
    assert stdout[:2] == ["same: rmmod: ERROR: Module duo_core is in use by: duo_user", "status 1"]
    version = kernel.version
    assert stdout[2:4] == [
        f"insmod TREE/lib/modules/{version}/extra/duo_core.ko ",
        f"insmod TREE/lib/modules/{version}/extra/duo_user.ko ",
    ], report
    assert re.match(r"duo_core +\d+ +1 duo_user$", stdout[5]), report
    assert "duo_user: 2 + 3 = 5 (calls: 1)" in log_lines(report, "load")


def try_init(
    tmp_path: Path,
    kernel: KernelFixture,
    name: str,
    init: str,
    license: str = "GPL",
    prelude: str = "",
) -> tuple[int, str]:
    """``lkm try`` of a one-file module whose init function's body is ``init``;
    the status and the report after the build output."""
    directory = tmp_path / name
    directory.mkdir()
    (directory / "Kbuild").write_text(f"obj-m += {name}.o\n")
    (directory / f"{name}.c").write_text(
        f"#include <linux/module.h>\n#include <linux/init.h>\n{prelude}"
        f"static int __init m_init(void) {{ {init} }}\nmodule_init(m_init);\n"
        "static void __exit m_exit(void) {}\nmodule_exit(m_exit);\n"
        f'MODULE_LICENSE("{license}");\nMODULE_DESCRIPTION("lkm try test");\n'
    )
    status, output = lkm_try(directory, kernel)
    return status, report_of(output) if "== boot " in output else output


def test_init_returning_enodev_is_reported_plainly(
    kernel_61: KernelFixture, tmp_path: Path
) -> None:
    status, report = try_init(tmp_path, kernel_61, "nodev", "return -ENODEV;")
    assert status == 1, report
    assert "insmod nodev: FAILED\n" in report
    assert (
        "problem: load failed: nodev: No such device (-ENODEV): its init function"
        " returned -ENODEV, so it was not loaded\n"
    ) in report
    assert "rmmod" not in report


def test_proprietary_license_shows_the_taint(kernel_61: KernelFixture, tmp_path: Path) -> None:
    init = 'pr_info("closed\\n"); return 0;'
    status, report = try_init(tmp_path, kernel_61, "closed", init, license="Proprietary")
    assert status == 0, report
    assert "taint: P (proprietary module was loaded), O (" in report
    assert "closed: module license 'Proprietary' taints kernel." in log_lines(report, "load")


def test_warning_is_reported_with_its_call_trace(kernel_61: KernelFixture, tmp_path: Path) -> None:
    init = 'WARN(1, "lkm try saw this"); return 0;'
    status, report = try_init(tmp_path, kernel_61, "warns", init)
    assert status == 1, report
    assert "insmod warns: ok" in report and "rmmod warns: ok" in report
    assert re.search(r"^load: WARNING: CPU: \d+ PID: \d+ at .*warns\.c", report, re.M), report
    assert "  Call Trace:" in report and "m_init" in report
    assert "W (kernel issued warning)" in report
    assert "problem: the kernel logged 'WARNING: CPU:" in report


def test_oops_in_init_is_reported_and_the_try_fails(
    kernel_61: KernelFixture, tmp_path: Path
) -> None:
    status, report = try_init(tmp_path, kernel_61, "oopses", "*(volatile int *)0 = 1; return 0;")
    assert status == 1, report
    assert "insmod oopses: FAILED" in report
    assert "problem: load failed: oopses: the task loading it was killed" in report
    assert "load: BUG: kernel NULL pointer dereference, address: 0000000000000000" in report
    assert "  Call Trace:" in report
    assert "D (kernel died recently, i.e. there was an OOPS or BUG)" in report


def test_panic_ends_the_try_with_the_console(kernel_61: KernelFixture, tmp_path: Path) -> None:
    init = 'panic("lkm try panics here"); return 0;'
    status, report = try_init(tmp_path, kernel_61, "panics", init)
    assert status == 1, report
    assert "problem: the kernel panicked" in report
    assert "  [" in report and "] Kernel panic - not syncing: lkm try panics here" in report
    assert report.count("console (last lines):") == 1, report


def test_bad_starts_are_one_line(kernel_61: KernelFixture, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    create(str(tmp_path / "hello"))
    cases = [
        ([str(tmp_path / "empty"), "--kernel", kernel_61.version], "no Kbuild or Makefile"),
        ([str(tmp_path / "hello"), "--kernel", "9.9.9-nothing"], "no kernel 9.9.9-nothing"),
    ]
    for args, words in cases:
        proc = command([LKM, "try", *args], text=True)
        assert proc.returncode == 1
        assert proc.stderr.startswith("lkm try: ") and proc.stderr.count("\n") == 1, proc.stderr
        assert words in proc.stderr


def test_kernel_modules_the_module_needs_are_loaded_first(
    kernel_612: KernelFixture, tmp_path: Path
) -> None:
    """A module using crc_itu_t (exported by the kernel's crc-itu-t module,
    xz-compressed on 6.12) gets that module loaded first, as modprobe would."""
    prelude = "#include <linux/crc-itu-t.h>\nstatic const u8 data[] = {1, 2, 3};\n"
    init = 'pr_info("crc %04x\\n", crc_itu_t(0, data, sizeof(data))); return 0;'
    status, report = try_init(tmp_path, kernel_612, "usescrc", init, prelude=prelude)
    assert status == 0, report
    assert report.index("modprobe crc-itu-t: ok") < report.index("insmod usescrc: ok")
    assert re.search(r"^  crc_itu_t +\d+  1 usescrc$", report, re.M), report
    # CRC-16/XMODEM of 01 02 03, computed by the kernel's crc-itu-t module.
    assert "crc 6131" in log_lines(report, "load")
