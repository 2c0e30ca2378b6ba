"""Tutorial code as written, tried with ``lkm try`` in the real Debian
kernels: ``hello.c`` in the oldest style (``init_module()`` and
``cleanup_module()`` by name) with its license line, and the tutorial's
Makefile. It loads and unloads in 6.1 and in 6.12: objtool's warning on
6.12 matters only where the CPU has IBT, which the guest's does not
(TCG's CPU model has none; under KVM the guest gets the host's CPU, and
the machines lkm is tested on have none either). An init function that
returns a positive value is explained in the report.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from conftest import command
from workflows.test_tutorial_builds import LICENSE, OLD_STYLE, init_module_note, tutorial

from lkm.testing.debian_kernels import KernelFixture

LKM = str(Path(sys.executable).with_name("lkm"))


def lkm_try(directory: Path, kernel: KernelFixture) -> tuple[int, str]:
    argv = [LKM, "try", str(directory), "--kernel", kernel.version, "-j2"]
    proc = command(argv, text=True, timeout=900)
    return proc.returncode, proc.stdout + proc.stderr


def report_of(output: str) -> str:
    """The report after the build output (starts at the boot line)."""
    return output[output.index("== boot ") :]


def load_log(report: str) -> list[str]:
    return re.findall(r"^  load +\[ *\d+\.\d+\] (.*)$", report, re.M)


@pytest.fixture(params=["6.1", "6.12"])
def kernel(request: pytest.FixtureRequest, kernels: list[KernelFixture]) -> KernelFixture:
    return next(k for k in kernels if k.label == request.param)


def test_tutorial_hello_loads_and_unloads(kernel: KernelFixture, tmp_path: Path) -> None:
    directory = tutorial(tmp_path / "hello", OLD_STYLE + LICENSE)
    status, output = lkm_try(directory, kernel)
    assert status == 0, output
    report = report_of(output)
    assert "insmod hello: ok\n" in report and "rmmod hello: ok\n" in report
    assert "hello from the tutorial" in load_log(report)
    assert re.search(r"^  unload +\[ *\d+\.\d+\] goodbye from the tutorial$", report, re.M)
    # 6.12's objtool warning, as a note in the build output and the report.
    note = init_module_note(kernel)
    assert (note in report) == (kernel.label != "6.1"), report


POSITIVE = """\
#include <linux/init.h>
#include <linux/module.h>

static int __init hello_init(void)
{
	pr_info("hello returns 1\\n");
	return 1;
}

static void __exit hello_exit(void)
{
}

module_init(hello_init);
module_exit(hello_exit);
"""


def test_init_returning_a_positive_value_is_explained(
    kernel_612: KernelFixture, tmp_path: Path
) -> None:
    directory = tutorial(tmp_path / "hello", POSITIVE + LICENSE)
    status, output = lkm_try(directory, kernel_612)
    assert status == 1, output
    report = report_of(output)
    # The kernel loads it anyway, after its warning and a stack dump.
    assert "insmod hello: ok\n" in report and "rmmod hello: ok\n" in report
    assert any(
        "'hello'->init suspiciously returned 1, it should follow 0/-E convention" in line
        for line in load_log(report)
    ), report
    assert (
        "problem: hello: its init function returned 1; return 0 when it succeeds and a "
        "negative error code (-ENOMEM, -ENODEV, ...) when it fails (the kernel loaded it "
        "anyway and dumped the stack)\n"
    ) in report
    assert report.count("problem: ") == 1, report
