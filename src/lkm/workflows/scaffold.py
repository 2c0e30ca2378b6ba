"""``lkm new``: a module source tree to start from.

Every template is a directory that builds with plain ``make`` (its
``Makefile`` calls kbuild for the running kernel, or ``KDIR=…``) and with
``lkm build``. Sources follow the kernel's style: tabs, SPDX line,
``pr_fmt`` prefixing every log line with the module's name.

* ``hello``: printk on load and unload.
* ``chardev``: a misc character device ``/dev/NAME`` holding up to a page
  of bytes: what is written can be read back.
* ``params``: module parameters under ``/sys/module/NAME/parameters``.
* ``pair``: two modules, ``NAME_core`` exporting a function and a
  variable, ``NAME_user`` using them.
"""

from __future__ import annotations

import os
import re
import shutil

from lkm.errors import LkmError
from lkm.records import Record

TEMPLATES = ("hello", "chardev", "params", "pair")
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,40}")


class ScaffoldError(LkmError):
    """A module tree that cannot be written (bad name, directory in the way)."""


class Scaffold(Record):
    directory: str
    files: tuple[str, ...]
    modules: tuple[str, ...]  # module names, in loading order


_HEADER = """\
// SPDX-License-Identifier: GPL-2.0
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

"""

_HELLO = (
    _HEADER
    + """\
#include <linux/init.h>
#include <linux/module.h>
#include <linux/printk.h>

static int __init @NAME@_init(void)
{
	pr_info("Hello, world\\n");
	return 0;
}

static void __exit @NAME@_exit(void)
{
	pr_info("Goodbye, world\\n");
}

module_init(@NAME@_init);
module_exit(@NAME@_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("@AUTHOR@");
MODULE_DESCRIPTION("Says hello on load and goodbye on unload");
"""
)

_CHARDEV = (
    _HEADER
    + """\
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/uaccess.h>

/* What was last written, read back by every reader. */
static char @NAME@_data[PAGE_SIZE];
static size_t @NAME@_length;
static DEFINE_MUTEX(@NAME@_lock);

static int @NAME@_open(struct inode *inode, struct file *file)
{
	pr_info("opened\\n");
	return 0;
}

static int @NAME@_release(struct inode *inode, struct file *file)
{
	pr_info("closed\\n");
	return 0;
}

static ssize_t @NAME@_read(struct file *file, char __user *buf,
			size_t count, loff_t *ppos)
{
	ssize_t ret;

	mutex_lock(&@NAME@_lock);
	ret = simple_read_from_buffer(buf, count, ppos, @NAME@_data, @NAME@_length);
	mutex_unlock(&@NAME@_lock);
	return ret;
}

static ssize_t @NAME@_write(struct file *file, const char __user *buf,
			size_t count, loff_t *ppos)
{
	ssize_t ret;

	mutex_lock(&@NAME@_lock);
	if (*ppos == 0)
		@NAME@_length = 0;	/* a new write replaces the data */
	ret = simple_write_to_buffer(@NAME@_data, sizeof(@NAME@_data), ppos, buf, count);
	if (ret > 0)
		@NAME@_length = *ppos;
	mutex_unlock(&@NAME@_lock);
	return ret;
}

static const struct file_operations @NAME@_fops = {
	.owner = THIS_MODULE,
	.open = @NAME@_open,
	.release = @NAME@_release,
	.read = @NAME@_read,
	.write = @NAME@_write,
	.llseek = default_llseek,
};

static struct miscdevice @NAME@_device = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "@NAME@",
	.fops = &@NAME@_fops,
	.mode = 0666,
};

static int __init @NAME@_init(void)
{
	int ret = misc_register(&@NAME@_device);

	if (ret)
		return ret;
	pr_info("registered /dev/%s (misc minor %d)\\n", @NAME@_device.name,
		@NAME@_device.minor);
	return 0;
}

static void __exit @NAME@_exit(void)
{
	misc_deregister(&@NAME@_device);
	pr_info("unregistered\\n");
}

module_init(@NAME@_init);
module_exit(@NAME@_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("@AUTHOR@");
MODULE_DESCRIPTION("A character device that gives back what was written to it");
"""
)

_PARAMS = (
    _HEADER
    + """\
#include <linux/init.h>
#include <linux/module.h>
#include <linux/moduleparam.h>

static int count = 1;
module_param(count, int, 0644);
MODULE_PARM_DESC(count, "How many times to greet (default 1)");

static char *greeting = "hello";
module_param(greeting, charp, 0644);
MODULE_PARM_DESC(greeting, "What to say");

static bool loud;
module_param(loud, bool, 0644);
MODULE_PARM_DESC(loud, "Shout (default N)");

static int __init @NAME@_init(void)
{
	int i;

	for (i = 0; i < count; i++)
		pr_info("%s%s\\n", greeting, loud ? "!" : "");
	return 0;
}

static void __exit @NAME@_exit(void)
{
	pr_info("count=%d greeting=%s loud=%d at unload\\n", count, greeting, loud);
}

module_init(@NAME@_init);
module_exit(@NAME@_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("@AUTHOR@");
MODULE_DESCRIPTION("Module parameters, visible in /sys/module/@NAME@/parameters");
"""
)

_PAIR_CORE = (
    _HEADER
    + """\
#include <linux/module.h>

/* Shared with @NAME@_user through the kernel's symbol table. */
int @NAME@_calls;
EXPORT_SYMBOL(@NAME@_calls);

int @NAME@_add(int a, int b)
{
	@NAME@_calls++;
	return a + b;
}
EXPORT_SYMBOL(@NAME@_add);

static int __init @NAME@_core_init(void)
{
	pr_info("exporting @NAME@_add and @NAME@_calls\\n");
	return 0;
}

static void __exit @NAME@_core_exit(void)
{
	pr_info("done after %d calls\\n", @NAME@_calls);
}

module_init(@NAME@_core_init);
module_exit(@NAME@_core_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("@AUTHOR@");
MODULE_DESCRIPTION("Exports a function and a variable");
"""
)

_PAIR_USER = (
    _HEADER
    + """\
#include <linux/module.h>

extern int @NAME@_calls;
int @NAME@_add(int a, int b);

static int __init @NAME@_user_init(void)
{
	/* Call first: the order C evaluates arguments in is unspecified. */
	int sum = @NAME@_add(2, 3);

	pr_info("2 + 3 = %d (calls: %d)\\n", sum, @NAME@_calls);
	return 0;
}

static void __exit @NAME@_user_exit(void)
{
	pr_info("leaving\\n");
}

module_init(@NAME@_user_init);
module_exit(@NAME@_user_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("@AUTHOR@");
MODULE_DESCRIPTION("Uses what @NAME@_core exports");
"""
)

_MAKEFILE = """\
# Builds against the running kernel's headers; another kernel: make KDIR=...
# (or: lkm build --kernel VERSION|HEADERS_DIR)
KDIR ?= /lib/modules/$(shell uname -r)/build

all:
\t$(MAKE) -C $(KDIR) M=$(CURDIR) modules

clean:
\t$(MAKE) -C $(KDIR) M=$(CURDIR) clean

.PHONY: all clean
"""


def _files(template: str, name: str) -> dict[str, str]:
    if template == "pair":
        return {
            "Kbuild": f"obj-m += {name}_core.o {name}_user.o\n",
            f"{name}_core.c": _PAIR_CORE,
            f"{name}_user.c": _PAIR_USER,
        }
    source = {"hello": _HELLO, "chardev": _CHARDEV, "params": _PARAMS}[template]
    return {"Kbuild": f"obj-m += {name}.o\n", f"{name}.c": source}


def module_names(template: str, name: str) -> tuple[str, ...]:
    return (f"{name}_core", f"{name}_user") if template == "pair" else (name,)


def _check_target(directory: str) -> None:
    if os.path.islink(directory) and not os.path.exists(directory):
        raise ScaffoldError(
            f"{directory}: is a symbolic link to nothing; remove it or choose another"
        )
    if os.path.exists(directory) and (not os.path.isdir(directory) or os.listdir(directory)):
        raise ScaffoldError(f"{directory}: already exists and is not an empty directory")


def _write_tree(directory: str, bodies: dict[str, str]) -> None:
    """Write the files into a new directory beside ``directory``, then
    rename it into place: a full or read-only filesystem leaves nothing
    behind (no empty Makefile that makes the next try refuse)."""
    parent = os.path.dirname(os.path.abspath(directory))
    staging = os.path.join(parent, f".{os.path.basename(os.path.abspath(directory))}.{os.getpid()}")
    try:
        os.makedirs(parent, exist_ok=True)
        os.mkdir(staging)
        for filename, body in bodies.items():
            with open(os.path.join(staging, filename), "wb") as f:
                f.write(body.encode("utf-8", "surrogateescape"))
        os.rename(staging, directory)  # replaces an empty directory too
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        where = exc.filename if exc.filename and exc.filename != staging else directory
        if isinstance(where, str) and where.startswith(staging):
            where = directory + where[len(staging) :]
        raise ScaffoldError(f"{where}: {exc.strerror or exc}") from None


def create(directory: str, template: str = "hello", author: str | None = None) -> Scaffold:
    """Write a module tree into ``directory`` (created; must not exist or be
    empty). The module is named after the directory's last component."""
    if template not in TEMPLATES:
        raise ScaffoldError(f"unknown template '{template}' (choose from {', '.join(TEMPLATES)})")
    name = os.path.basename(os.path.normpath(directory)).replace("-", "_")
    if not NAME_PATTERN.fullmatch(name):
        raise ScaffoldError(
            f"{directory}: a module name is lower-case letters, digits and '_', "
            "starting with a letter"
        )
    _check_target(directory)
    who = author or os.environ.get("USER") or "lkm"
    contents = {"Makefile": _MAKEFILE, **_files(template, name)}
    bodies = {
        filename: text.replace("@NAME@", name).replace("@AUTHOR@", who.replace('"', "'"))
        for filename, text in contents.items()
    }
    _write_tree(directory, bodies)
    written = [os.path.join(directory, filename) for filename in bodies]
    return Scaffold(directory, tuple(written), module_names(template, name))


__all__ = ["TEMPLATES", "Scaffold", "ScaffoldError", "create", "module_names"]
