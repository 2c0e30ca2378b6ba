"""Tutorial code as written, built with ``lkm build`` against the Debian 6.1
and 6.12 headers: a directory holding only ``hello.c`` and the classic
tutorial Makefile (which names ``/lib/modules/$(uname -r)/build``; lkm runs
kbuild against the kernel asked for, and kbuild reads only ``obj-m``).

What the two kernels really print, and the one line lkm adds for each:

* no ``MODULE_LICENSE()``: modpost's error on both kernels, the build
  fails; lkm says to add ``MODULE_LICENSE("GPL");`` to the file;
* ``init_module()``/``cleanup_module()`` defined by name (the style before
  ``module_init()``): 6.12's objtool warns twice ("not an indirect call
  target") and the build goes on; 6.1's says nothing. lkm adds a note.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from conftest import Ran, command

from lkm.formats.module_file import open_module
from lkm.testing.debian_kernels import KernelFixture

LKM = str(Path(sys.executable).with_name("lkm"))

TUTORIAL_MAKEFILE = """\
obj-m := hello.o
all:
\tmake -C /lib/modules/$(shell uname -r)/build M=$(PWD) modules
clean:
\tmake -C /lib/modules/$(shell uname -r)/build M=$(PWD) clean
"""

# The oldest tutorial style: the loader's entry points defined by name.
OLD_STYLE = """\
#include <linux/module.h>
#include <linux/printk.h>

int init_module(void)
{
	pr_info("hello from the tutorial\\n");
	return 0;
}

void cleanup_module(void)
{
	pr_info("goodbye from the tutorial\\n");
}
"""

# The style tutorials teach next: module_init()/module_exit().
REGISTERED = """\
#include <linux/init.h>
#include <linux/module.h>
#include <linux/printk.h>

static int __init hello_init(void)
{
	pr_info("hello from the tutorial\\n");
	return 0;
}

static void __exit hello_exit(void)
{
	pr_info("goodbye from the tutorial\\n");
}

module_init(hello_init);
module_exit(hello_exit);
"""

LICENSE = 'MODULE_LICENSE("GPL");\n'


def tutorial(directory: Path, source: str) -> Path:
    """A directory holding only ``hello.c`` and the tutorial's Makefile."""
    directory.mkdir()
    (directory / "Makefile").write_text(TUTORIAL_MAKEFILE)
    (directory / "hello.c").write_text(source)
    return directory


def lkm_build(directory: Path, kernel: KernelFixture) -> Ran:
    return command([LKM, "build", str(directory), "--kernel", kernel.version], text=True)


def init_module_note(kernel: KernelFixture) -> str:
    return (
        "note: hello.c: init_module() and cleanup_module() are defined by name, without "
        f"module_init()/module_exit(): kernel {kernel.version}'s objtool marks them for "
        "sealing, so on a CPU with IBT the module fails to load; rename them hello_init "
        "and hello_exit and add module_init(hello_init); module_exit(hello_exit);\n"
    )


@pytest.fixture(params=["6.1", "6.12"])
def kernel(request: pytest.FixtureRequest, kernels: list[KernelFixture]) -> KernelFixture:
    return next(k for k in kernels if k.label == request.param)


def _objtool_warns(kernel: KernelFixture) -> bool:
    """6.12's objtool warns about init_module() by name; 6.1's does not."""
    return kernel.label != "6.1"


def test_missing_license_is_one_line(kernel: KernelFixture, tmp_path: Path) -> None:
    directory = tutorial(tmp_path / "hello", OLD_STYLE)
    proc = lkm_build(directory, kernel)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"ERROR: modpost: missing MODULE_LICENSE() in {directory}/hello.o\n" in proc.stdout
    assert proc.stderr == (
        f"lkm build: hello.c has no MODULE_LICENSE(), which kernel {kernel.version} requires "
        'of every module: add MODULE_LICENSE("GPL"); to hello.c\n'
    )
    objtool = "hello.o: warning: objtool: init_module(): not an indirect call target\n"
    assert (objtool in proc.stdout) == _objtool_warns(kernel), proc.stdout
    assert (init_module_note(kernel) in proc.stdout) == _objtool_warns(kernel), proc.stdout
    assert proc.stdout.count("note: ") == _objtool_warns(kernel)


def test_with_the_license_it_builds_for_the_kernel_asked(
    kernel: KernelFixture, tmp_path: Path
) -> None:
    directory = tutorial(tmp_path / "hello", OLD_STYLE + LICENSE)
    proc = lkm_build(directory, kernel)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.endswith(f"built {directory}/hello.ko for {kernel.version}\n")
    assert (init_module_note(kernel) in proc.stdout) == _objtool_warns(kernel), proc.stdout
    with open_module(str(directory / "hello.ko")) as module:
        info = dict(module.modinfo() or [])
    # Built against the headers asked for, not those of `uname -r`.
    assert info["license"] == "GPL" and info["vermagic"].startswith(kernel.version + " ")


def test_module_init_style_builds_without_notes(kernel: KernelFixture, tmp_path: Path) -> None:
    directory = tutorial(tmp_path / "hello", REGISTERED + LICENSE)
    proc = lkm_build(directory, kernel)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "note: " not in proc.stdout and not re.search(r"warning", proc.stdout), proc.stdout
    assert (directory / "hello.ko").exists()
