"""depmod's resolve stage: kmod's symbol table, each module's
dependencies, their topological order, and kmod's messages for cycles."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import repeat
from operator import itemgetter

from lkm.errors import LkmError, one_line
from lkm.records import Record, field
from lkm.workflows.depmod.discover import FoundModule
from lkm.workflows.depmod.facts import ModuleFacts, ScanFailure

Report = Callable[[str, str], None]
Show = Callable[[str], None]

KERNEL = -1  # owner index of symbols exported by the kernel image


class DependencyCycle(LkmError):
    """Modules that need each other; the message lines are kmod's."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


class Resolved(Record):
    """Everything the outputs are made from."""

    modules: list[FoundModule]
    facts: list[ModuleFacts | None]  # None: unreadable module
    deps: list[list[int]]  # direct dependencies, by module index
    sort_index: list[int]  # topological position (users before providers)
    symbols: dict[str, tuple[int, int]]  # name -> (owner index or KERNEL, crc)


class KernelSymbols(Record):
    """-E/-F input: kernel-exported symbols and whether CRCs are checked."""

    crcs: dict[str, int] = field(default_factory=dict)
    check_crcs: bool = False
    loaded: bool = False


def readable_facts(
    modules: list[FoundModule], results: Sequence[ModuleFacts | ScanFailure], report: Report
) -> list[ModuleFacts | None]:
    """Each module's facts, None for one that could not be read (reported
    as kmod does, before anything else)."""
    facts: list[ModuleFacts | None] = []
    for module, result in zip(modules, results, strict=True):
        if isinstance(result, ScanFailure):
            shown = one_line(module.path)
            report("ERROR", f"failed to load symbols from {shown}: {result.message}")
            facts.append(None)
        else:
            facts.append(result)
    return facts


class SymbolChecks(Record):
    """What resolving does beyond finding who provides each needed symbol:
    show each dependency (-v), report unknown symbols and CRC mismatches
    (-e), strip a symbol prefix (-P). Without any (``None`` where a
    ``SymbolChecks`` is taken), the scan may leave needed symbols' CRCs
    and weak flags out: the one condition both stages follow."""

    show: Show | None = None
    print_unknown: bool = False
    prefix: str | None = None


def resolve(
    modules: list[FoundModule],
    facts: list[ModuleFacts | None],
    kernel: KernelSymbols,
    report: Report,
    checks: SymbolChecks | None = None,
) -> Resolved:
    """Symbol table, dependencies and topological order (kmod's passes).

    Raises DependencyCycle when modules need each other.
    """
    prefix = checks.prefix if checks is not None else None
    symbols: dict[str, tuple[int, int]] = {}
    if kernel.loaded:
        for name, crc in kernel.crcs.items():
            symbols[name] = (KERNEL, crc)
        for name in ("__this_module", "_GLOBAL_OFFSET_TABLE_"):
            symbols[name] = (KERNEL, 0)
        symbols.setdefault("TOC.", (KERNEL, 0))
    for index, module_facts in enumerate(facts):
        if module_facts is not None:
            for name, crc in module_facts.exports:
                symbols[_strip(name, prefix)] = (index, crc)
    if checks is not None:
        deps = _dependencies(
            modules, facts, symbols, kernel, report, checks.show, checks.print_unknown, prefix
        )
    else:
        deps = _quiet_dependencies(facts, symbols)
    sort_index = _topological_order(modules, deps)
    return Resolved(modules, facts, deps, sort_index, symbols)


def _quiet_dependencies(
    facts: list[ModuleFacts | None], symbols: dict[str, tuple[int, int]]
) -> list[list[int]]:
    """:func:`_dependencies` when it has nothing to report (no -e, -v or
    -P): each module's owners looked up and de-duplicated in C, in the
    order of first need. 200,000 needed symbols in a tree."""
    owner_of = dict(zip(symbols, map(itemgetter(0), symbols.values()), strict=True))
    deps: list[list[int]] = []
    for module_facts in facts:
        if module_facts is None:
            deps.append([])
            continue
        names: Sequence[str] = module_facts.needed_names
        if any(map(str.startswith, names, repeat("."))):  # ppc64 descriptors: looked up without it
            names = [name[1:] if name.startswith(".") else name for name in names]
        owners = dict.fromkeys(map(owner_of.get, names))
        deps.append([owner for owner in owners if owner is not None and owner != KERNEL])
    return deps


def _strip(name: str, prefix: str | None) -> str:
    return name[1:] if prefix and name.startswith(prefix) else name


def _dependencies(
    modules: list[FoundModule],
    facts: list[ModuleFacts | None],
    symbols: dict[str, tuple[int, int]],
    kernel: KernelSymbols,
    report: Report,
    show: Show | None,
    print_unknown: bool,
    prefix: str | None,
) -> list[list[int]]:
    deps: list[list[int]] = [[] for _ in modules]
    for index, module_facts in enumerate(facts):
        if module_facts is None:
            continue
        mine = deps[index]
        for name, crc, weak in zip(
            module_facts.needed_names,
            module_facts.needed_crcs,
            module_facts.needed_weak,
            strict=True,
        ):
            lookup = name[1:] if name.startswith(".") else name
            found = symbols.get(_strip(lookup, prefix))
            if found is None:
                if print_unknown and not weak:
                    shown = one_line(modules[index].path)
                    report("WARNING", f"{shown} needs unknown symbol {one_line(name)}")
                continue
            owner, owner_crc = found
            if kernel.check_crcs and owner_crc != crc and not weak and print_unknown:
                shown = one_line(modules[index].path)
                report("WARNING", f"{shown} disagrees about version of symbol {one_line(name)}")
            if owner == KERNEL or owner in mine:
                continue
            mine.append(owner)
            if show is not None:
                stored = _strip(lookup, prefix)
                show(f'{modules[index].path} needs "{stored}": {modules[owner].path}\n')
    return deps


def _topological_order(modules: list[FoundModule], deps: list[list[int]]) -> list[int]:
    """kmod's Kahn sort: users before what they use; a stack of roots."""
    users = [0] * len(modules)
    for mine in deps:
        for dep in mine:
            users[dep] += 1
    remaining = list(users)
    roots = [i for i, count in enumerate(users) if count == 0]
    sort_index = [-1] * len(modules)
    done = 0
    while roots:
        current = roots.pop()
        sort_index[current] = done
        done += 1
        for dep in deps[current]:
            remaining[dep] -= 1
            if remaining[dep] == 0:
                roots.append(dep)
    if done < len(modules):
        raise DependencyCycle(cycle_report(modules, deps, remaining))
    return sort_index


def cycle_report(
    modules: list[FoundModule], deps: list[list[int]], remaining: list[int]
) -> list[str]:
    """kmod's cycle messages (depmod_report_cycles), walk for walk.

    kmod's own walk can assert or never end on some graphs (a cycle that
    leads into another one); lkm stops such a walk and reports what it
    found, which is where kmod would have aborted.
    """
    ring = [i for i, count in enumerate(remaining) if count > 0]
    limit = len(ring)
    visited: set[int] = set()
    in_loops: set[int] = set()
    lines: list[str] = []
    budget = 100 * (limit + 1) ** 2
    while ring:
        root = ring.pop(0)
        stack: list[tuple[int, tuple[int, ...]]] = [(root, ())]
        while stack and budget > 0:
            budget -= 1
            current, chain = stack.pop()
            if current in visited and current == root:
                in_loops.update(chain)
                for member in chain:
                    ring = _remove_rotating(ring, member)
                names = [modules[m].name for m in (*chain, current)]
                lines.append("Cycle detected: " + " -> ".join(names))
                continue
            visited.add(current)
            if not deps[current]:
                ring = _remove_rotating(ring, current)
                continue
            for dep in deps[current]:
                if len(stack) >= limit:
                    budget = 0
                    break
                stack.append((dep, (*chain, current)))
        if budget <= 0:
            break
    lines.append(f"Found {len(in_loops)} modules in dependency cycles!")
    return lines


def _remove_rotating(ring: list[int], item: int) -> list[int]:
    """libkmod's kmod_list_remove_data on a circular list: the element after
    the removed one becomes the head."""
    if item not in ring:
        return ring
    at = ring.index(item)
    return ring[at + 1 :] + ring[:at]


# -- outputs -----------------------------------------------------------------


def all_dependencies(resolved: Resolved, index: int) -> list[int]:
    """Every module ``index`` needs, directly or not, in kmod's order."""
    seen: set[int] = set()
    stack = list(reversed(resolved.deps[index]))
    while stack:
        dep = stack.pop()
        if dep in seen:
            continue
        seen.add(dep)
        stack.extend(resolved.deps[dep])
    return sorted(seen, key=resolved.sort_index.__getitem__)


def dep_lines(resolved: Resolved) -> list[str]:
    lines = []
    modules = resolved.modules
    for index, module in enumerate(modules):
        needed = all_dependencies(resolved, index)
        tail = "".join(" " + modules[d].listed_path for d in needed)
        lines.append(f"{module.listed_path}:{tail}")
    return lines
