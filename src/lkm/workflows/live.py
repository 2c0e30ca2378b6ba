"""What is loaded, and whether it may go: the logic behind lsmod and rmmod.

Reads the running kernel through :class:`~lkm.system.kernel.KernelModules`
and answers the way kmod does: sizes from ``/sys/module/NAME/coresize``
(``/proc/modules`` when that is missing), use counts from ``refcnt``,
holders in the kernel's directory order, a module that is built in or
still held refused before ``delete_module`` is tried.
"""

from __future__ import annotations

import errno

from lkm.errors import LkmError
from lkm.records import Record
from lkm.system.kernel import KernelModules


class LoadedModule(Record):
    """One row of lsmod."""

    name: str
    size: int  # bytes; a negative errno when unknown, as kmod prints it
    refcnt: int  # a negative errno when unknown, as kmod prints it
    holders: tuple[str, ...]
    state: str  # Live, Loading or Unloading (from /proc/modules)
    taints: str

    def as_json(self) -> dict[str, object]:
        return {
            "module": self.name,
            "size": self.size,
            "refcount": self.refcnt,
            "used_by": list(self.holders),
            "state": self.state,
            "taints": self.taints.strip("()"),
        }


def loaded_modules(kernel: KernelModules) -> list[LoadedModule]:
    """The loaded modules in ``/proc/modules`` order (newest first)."""
    rows = []
    for entry in kernel.proc_modules():
        size = kernel.coresize(entry.name)
        refcnt = kernel.refcnt(entry.name)
        rows.append(
            LoadedModule(
                name=entry.name,
                size=entry.size if size is None else size,
                refcnt=-errno.ENOENT if refcnt is None else refcnt,
                holders=tuple(kernel.holders(entry.name) or ()),
                state=entry.state,
                taints=entry.taints,
            )
        )
    return rows


LSMOD_HEADER = "Module                  Size  Used by\n"


def lsmod_table(modules: list[LoadedModule]) -> str:
    """kmod's lsmod output for ``modules``: ``"%-19s %8ld  %d"`` and the holders."""
    rows = [LSMOD_HEADER]
    for m in modules:
        holders = f" {','.join(m.holders)}" if m.holders else ""
        rows.append(f"{m.name:<19} {m.size:>8}  {m.refcnt}{holders}\n")
    return "".join(rows)


def holder_forest(modules: list[LoadedModule]) -> list[tuple[str, list[str]]]:
    """Who holds whom, for ``lsmod --tree``: (module, modules it uses) pairs.

    A module's holders are the modules that use it, so the modules a module
    uses are those that name it among their holders.
    """
    uses: dict[str, list[str]] = {m.name: [] for m in modules}
    for module in modules:
        for holder in module.holders:
            uses.setdefault(holder, []).append(module.name)
    return [(m.name, uses[m.name]) for m in modules]


def tree_lines(modules: list[LoadedModule]) -> list[str]:
    """Modules nobody holds at the top, what each uses below it."""
    uses = dict(holder_forest(modules))
    held = {m.name for m in modules if m.holders}
    lines: list[str] = []

    def walk(name: str, prefix: str, seen: frozenset[str]) -> None:
        children = [c for c in uses.get(name, []) if c not in seen]
        for i, child in enumerate(children):
            last = i == len(children) - 1
            lines.append(f"{prefix}{'└── ' if last else '├── '}{child}")
            walk(child, prefix + ("    " if last else "│   "), seen | {child})

    for module in modules:
        if module.name not in held:
            lines.append(module.name)
            walk(module.name, "", frozenset({module.name}))
    return lines


class RemovalRefused(LkmError):
    """kmod's rmmod would not try to remove this module; ``lines`` say why."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("; ".join(lines))
        self.lines = lines


def check_removable(kernel: KernelModules, name: str, builtin: bool) -> list[str]:
    """Refuse like kmod's rmmod: built in, not loaded, held, or in use.

    ``lines`` of the exception are kmod's error messages, in order. The
    lines returned are errors kmod reports without refusing.
    """
    if builtin:
        raise RemovalRefused([f"Module {name} is builtin."])
    if kernel.initstate(name) is None:
        raise RemovalRefused([f"Module {name} is not currently loaded"])
    holders = kernel.holders(name)
    if holders is None:
        # kmod reports the missing directory and carries on.
        lines = [f"could not open '{kernel.module_dir(name)}/holders': No such file or directory"]
    elif holders:
        raise RemovalRefused([f"Module {name} is in use by: {' '.join(holders)}"])
    else:
        lines = []
    refcnt = kernel.refcnt(name)
    if refcnt is None:
        raise RemovalRefused([*lines, "Module unloading is not supported"])
    if refcnt > 0:
        raise RemovalRefused([*lines, f"Module {name} is in use"])
    return lines
