"""depmod: scan → resolve → write, byte-compatible with kmod's depmod.

Scan (:mod:`depmod_discover`, :mod:`depmod_scan`) finds the module files
and reads each one's facts. Resolve builds kmod's symbol table, gives each
module its dependencies, orders them topologically and reports cycles with
kmod's messages. Write renders every index (text and binary) and replaces
each file through a temporary file and a rename, so a reader — or a run
killed half-way — only ever sees a complete old or a complete new file.

lkm follows upstream kmod 34 where versions differ: it writes
``modules.weakdep`` and pre-order binary indexes by default
(``Layout.POST_ORDER`` gives kmod ≤ 33's files byte for byte).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from functools import cached_property
from itertools import groupby, repeat
from operator import itemgetter

from lkm.errors import AliasError, LkmError
from lkm.formats.kmod_hash import hash_order
from lkm.formats.kmod_index_writer import IndexBuilder, Layout
from lkm.records import Record, field
from lkm.system.atomic import replace_file
from lkm.workflows.depmod_discover import FoundModule
from lkm.workflows.depmod_facts import ModuleFacts, ScanFailure

Report = Callable[[str, str], None]
Show = Callable[[str], None]

# kmod's symbol table: a 2048-bucket hash whose order modules.symbols keeps.
SYMBOL_HASH_BUCKETS = 2048
KERNEL = -1  # owner index of symbols exported by the kernel image

OUTPUT_FILES = (
    "modules.dep",
    "modules.dep.bin",
    "modules.alias",
    "modules.alias.bin",
    "modules.softdep",
    "modules.weakdep",
    "modules.symbols",
    "modules.symbols.bin",
    "modules.builtin.bin",
    "modules.builtin.alias.bin",
    "modules.devname",
)
TEXT_FILES = (
    "modules.dep",
    "modules.alias",
    "modules.softdep",
    "modules.weakdep",
    "modules.symbols",
    "modules.devname",
)


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
            report("ERROR", f"failed to load symbols from {module.path}: {result.message}")
            facts.append(None)
        else:
            facts.append(result)
    return facts


def resolve(
    modules: list[FoundModule],
    facts: list[ModuleFacts | None],
    kernel: KernelSymbols,
    report: Report,
    show: Show | None = None,
    print_unknown: bool = False,
    prefix: str | None = None,
) -> Resolved:
    """Symbol table, dependencies and topological order (kmod's passes).

    Raises DependencyCycle when modules need each other.
    """
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
    if print_unknown or show is not None or prefix:
        deps = _dependencies(modules, facts, symbols, kernel, report, show, print_unknown, prefix)
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
                    report("WARNING", f"{modules[index].path} needs unknown symbol {name}")
                continue
            owner, owner_crc = found
            if kernel.check_crcs and owner_crc != crc and not weak and print_unknown:
                report("WARNING", f"{modules[index].path} disagrees about version of symbol {name}")
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


_MAJOR_MINOR = re.compile(r"(char|block)-major-\s*\+?(\d+)-\s*\+?(\d+)")


def devname_lines(aliases: list[tuple[str, str, int]], report: Report) -> list[str]:
    """modules.devname's lines from (alias, module name, module index)
    in module order: a module's devname and its first device number."""
    lines: list[str] = []
    # Few modules have a devname: only their aliases are looked at.
    wanted = {at for alias, _, at in aliases if alias.startswith("devname:")}
    if not wanted:
        return lines
    aliases = [entry for entry in aliases if entry[2] in wanted]
    for (_, name), entries in groupby(aliases, key=itemgetter(2, 1)):
        devname: str | None = None
        node: tuple[str, int, int] | None = None
        for alias, _, _ in entries:
            if alias.startswith("devname:"):
                devname = alias[len("devname:") :]
            else:
                match = _MAJOR_MINOR.match(alias)
                if match:
                    kind = "c" if match.group(1) == "char" else "b"
                    node = (kind, int(match.group(2)) % (1 << 32), int(match.group(3)) % (1 << 32))
            if node is not None and devname is not None:
                break
        if devname is None:
            continue
        if node is None:
            report(
                "ERROR",
                f"Module '{name}' has devname ({devname}) but lacks major and minor "
                "information. Ignoring.",
            )
            continue
        lines.append(f"{name} {devname} {node[0]}{node[1]}:{node[2]}")
    return lines


class Outputs(Record):
    """Rendered files, name → bytes (None: left out, as kmod does)."""

    files: dict[str, FileData | None]


# Output files rendered from the same inputs form a group: a group is
# rendered, cached and reused as a whole. The order is kmod's: messages
# are replayed group by group in this order (devname's come last).
GROUPS: dict[str, tuple[str, ...]] = {
    "dep": ("modules.dep", "modules.dep.bin"),
    "alias": ("modules.alias", "modules.alias.bin"),
    "softdep": ("modules.softdep",),
    "weakdep": ("modules.weakdep",),
    "symbols": ("modules.symbols", "modules.symbols.bin"),
    "builtin": ("modules.builtin.bin",),
    "builtin.alias": ("modules.builtin.alias.bin",),
    "devname": ("modules.devname",),
}
BUILTIN_INPUTS = {"builtin": "modules.builtin", "builtin.alias": "modules.builtin.modinfo"}

Messages = list[tuple[str, str]]
# A file's contents: rendered bytes, or a view of the cache's copy (written
# out as it is, never copied).
FileData = bytes | memoryview
# A rendered group: its files and the messages rendering it reported.
RenderedGroup = tuple[dict[str, FileData | None], Messages]
# A built-in list read from the module directory: its bytes, or None and
# why it could not be read.
BuiltinInput = tuple[bytes | None, str | None]


def read_builtin_inputs(moddir: str) -> dict[str, BuiltinInput]:
    """modules.builtin and modules.builtin.modinfo, read once: the same
    bytes are rendered and (for the cache) digested."""
    inputs: dict[str, BuiltinInput] = {}
    for group, name in BUILTIN_INPUTS.items():
        try:
            with open(f"{moddir}/{name}", "rb") as f:
                inputs[group] = (f.read(), None)
        except OSError as exc:
            inputs[group] = (None, f"could not open {name} at {moddir}: {exc.strerror}")
    return inputs


# The entries modinfo_entries keeps: a whole entry (after a NUL; the text
# gets one in front) whose key (the text before its first '=') is alias,
# softdep or weakdep, and its value (empty without '='). Found in C,
# module by module; the leading NUL lets the search skip from NUL to NUL.
_MODINFO_WANTED = re.compile(r"\0(alias|softdep|weakdep)(?:=([^\0]*)|(?=\0|$))")

# Groups made from resolved dependencies and symbols; the others need only
# the modules' facts, so they can be rendered while resolving runs.
RESOLVED_GROUPS = ("dep", "symbols")


class Rendering:
    """What the output groups are made of, computed once and shared; each
    group rendered on its own (:meth:`render`), and described by exactly
    the data its files and messages depend on (:meth:`inputs`), which is
    what the cache keys a rendered group by.

    ``resolver`` runs (once) when a group of :data:`RESOLVED_GROUPS`
    first needs it; it may raise :class:`DependencyCycle`.
    """

    def __init__(
        self,
        modules: list[FoundModule],
        facts: list[ModuleFacts | None],
        resolver: Callable[[], Resolved],
        builtins: dict[str, BuiltinInput],
        layout: Layout = Layout.PRE_ORDER,
        warn_dups: bool = False,
        binary: bool = True,
    ) -> None:
        self.modules = modules
        self.facts = facts
        self.resolver = resolver
        self.builtins = builtins
        self.layout = layout
        self.warn_dups = warn_dups
        self.binary = binary

    @cached_property
    def resolved(self) -> Resolved:
        return self.resolver()

    @cached_property
    def dep_lines(self) -> list[str]:
        return dep_lines(self.resolved)

    @cached_property
    def modinfo_entries(self) -> dict[str, list[tuple[str, str, int]]]:
        """(value, module name, module index) of every ``alias``,
        ``softdep`` and ``weakdep`` entry, by key, in module order: one
        pass over all modules' .modinfo for every group that reads it."""
        entries: dict[str, list[tuple[str, str, int]]] = {
            "alias": [],
            "softdep": [],
            "weakdep": [],
        }
        for index, (module, info) in enumerate(zip(self.modules, self.facts, strict=True)):
            if info is None:
                continue
            for key, value in _MODINFO_WANTED.findall("\0" + info.modinfo):
                entries[key].append((value, module.name, index))
        return entries

    @property
    def aliases(self) -> list[tuple[str, str, int]]:
        """(alias, module name, module index), in module order."""
        return self.modinfo_entries["alias"]

    @cached_property
    def owned_symbols(self) -> list[tuple[str, int]]:
        """(symbol, owner index) of every symbol a module exports."""
        return [
            (name, owner) for name, (owner, _) in self.resolved.symbols.items() if owner != KERNEL
        ]

    def inputs(self, group: str) -> object:
        """Everything group ``group``'s files and messages are made from
        (plain data with a faithful repr)."""
        modules = self.modules
        options = (self.layout.value, self.warn_dups, self.binary)
        if group == "dep":
            return (options, [m.name for m in modules], self.dep_lines)
        if group == "alias":
            return (options, self.aliases)
        if group in ("softdep", "weakdep"):
            return [(name, value) for value, name, _ in self.modinfo_entries[group]]
        if group == "symbols":
            return (
                options,
                [(name, owner, modules[owner].name) for name, owner in self.owned_symbols],
            )
        if group in BUILTIN_INPUTS:
            return (options, self.builtins.get(group))
        if group == "devname":
            return self.aliases
        raise KeyError(group)

    def render(self, group: str) -> RenderedGroup:
        messages: Messages = []
        note = _collector(messages)
        files: dict[str, FileData | None]
        if group == "dep":
            files = {"modules.dep": _text(self.dep_lines)}
            if self.binary:
                files["modules.dep.bin"] = self._dep_index(note)
        elif group == "alias":
            files = {
                "modules.alias": _text(
                    ["# Aliases extracted from modules themselves."]
                    + [f"alias {a} {m}" for a, m, _ in self.aliases]
                )
            }
            if self.binary:
                files["modules.alias.bin"] = self._alias_index(note)
        elif group == "softdep":
            files = {"modules.softdep": _soft_dependencies(self.modinfo_entries, "softdep", "Soft")}
        elif group == "weakdep":
            files = {"modules.weakdep": _soft_dependencies(self.modinfo_entries, "weakdep", "Weak")}
        elif group == "symbols":
            files = self._symbols(note)
        elif group in BUILTIN_INPUTS:
            files = {}
            if self.binary:
                build = _builtin_index if group == "builtin" else _builtin_alias_index
                (name,) = GROUPS[group]
                files[name] = build(self.builtins[group], note, self.layout)
        elif group == "devname":
            devnames = devname_lines(self.aliases, note)
            files = {
                "modules.devname": _text(
                    ["# Device nodes to trigger on-demand module loading.", *devnames]
                )
                if devnames
                else b""
            }
        else:
            raise KeyError(group)
        return files, messages

    def _dep_index(self, note: Report) -> bytes:
        index = IndexBuilder()
        lines = self.dep_lines
        entries = [
            (module.name, line, at)
            for at, (module, line) in enumerate(zip(self.modules, lines, strict=True))
        ]
        for _, line in index.extend(entries):
            if self.warn_dups:
                note("WARNING", f"duplicate module deps:\n{line}")
        return index.to_bytes(self.layout)

    def _alias_index(self, note: Report) -> bytes:
        from lkm.model.moddir import normalize_alias

        index = IndexBuilder()
        try:
            keys = _normalize_aliases([a for a, _, _ in self.aliases])
            entries = [
                (key, name, at) for key, (_, name, at) in zip(keys, self.aliases, strict=True)
            ]
        except AliasError:
            # Rare: warn about each bad alias in turn, among any duplicates.
            for alias, name, at in self.aliases:
                try:
                    key = normalize_alias(alias)
                except AliasError:
                    note("WARNING", f"Unmatched bracket in {alias}")
                    continue
                if index.insert(key, name, at) and self.warn_dups:
                    note("WARNING", f"duplicate module alias:\n{key} {name}")
            return index.to_bytes(self.layout)
        for key, name in index.extend(entries):
            if self.warn_dups:
                note("WARNING", f"duplicate module alias:\n{key} {name}")
        return index.to_bytes(self.layout)

    def _symbols(self, note: Report) -> dict[str, FileData | None]:
        modules = self.modules
        owners = dict(self.owned_symbols)
        order = hash_order(owners, SYMBOL_HASH_BUCKETS)
        files: dict[str, FileData | None] = {
            "modules.symbols": _text(
                ["# Aliases for symbols, used by symbol_request()."]
                + [f"alias symbol:{name} {modules[owners[name]].name}" for name in order]
            )
        }
        if self.binary:
            index = IndexBuilder()
            entries = [
                (f"symbol:{name}", modules[owners[name]].name, owners[name]) for name in order
            ]
            for key, module in index.extend(entries):
                if self.warn_dups:
                    note("WARNING", f"duplicate module syms:\n{key} {module}")
            files["modules.symbols.bin"] = index.to_bytes(self.layout)
        return files


def render_groups(rendering: Rendering, groups: Sequence[str]) -> dict[str, RenderedGroup]:
    """The given groups; with the binary indexes, those that need no
    resolving (the alias index, the largest, among them) on the other
    core while this one resolves and renders the rest."""

    def build(names: Sequence[str]) -> list[tuple[str, RenderedGroup]]:
        return [(name, rendering.render(name)) for name in names]

    mine = [name for name in groups if name in RESOLVED_GROUPS]
    theirs = [name for name in groups if name not in RESOLVED_GROUPS]
    if not (mine and theirs and rendering.binary):
        return dict(build(groups))
    from lkm.system.fork import split_map

    share = len(mine) / (len(mine) + len(theirs))
    parts = split_map([*mine, *theirs], build, min_items=2, parent_share=share)
    return {name: group for part in parts for name, group in part}


def render_unresolved_groups(
    modules: list[FoundModule],
    modinfos: list[str | None],
    builtins: dict[str, BuiltinInput],
    layout: Layout,
    warn_dups: bool,
) -> dict[str, RenderedGroup]:
    """The groups that need no resolving (alias, softdep, weakdep, the
    built-in indexes, devname), from each module's ``.modinfo`` text alone
    (None: an unreadable module): what a helper process renders while
    this one resolves."""
    facts: list[ModuleFacts | None] = [
        None if text is None else ModuleFacts(text, (), (), (), ()) for text in modinfos
    ]
    rendering = Rendering(modules, facts, _not_resolvable, builtins, layout, warn_dups, True)
    return {group: rendering.render(group) for group in GROUPS if group not in RESOLVED_GROUPS}


def _not_resolvable() -> Resolved:
    raise AssertionError("these groups need no resolving")


def merge_groups(rendered: dict[str, RenderedGroup], report: Report) -> Outputs:
    """All groups' files; their messages replayed in kmod's order."""
    files: dict[str, FileData | None] = {}
    for group in GROUPS:
        group_files, messages = rendered[group]
        for level, text in messages:
            report(level, text)
        files.update(group_files)
    return Outputs(files)


def render(rendering: Rendering, report: Report, groups: Sequence[str] = tuple(GROUPS)) -> Outputs:
    """Every output file's bytes; messages reported in kmod's order."""
    return merge_groups(render_groups(rendering, groups), report)


def _normalize_aliases(aliases: list[str]) -> list[str]:
    """:func:`~lkm.model.moddir.normalize_alias` of each alias; when none
    has brackets (the usual case), all at once in C."""
    from lkm.model.moddir import normalize_alias

    joined = "\0".join(aliases)  # no NUL inside a .modinfo string
    if "[" in joined or "]" in joined:
        return [normalize_alias(alias) for alias in aliases]
    return joined.replace("-", "_").split("\0") if aliases else []


def _soft_dependencies(
    entries: dict[str, list[tuple[str, str, int]]], key: str, kind: str
) -> bytes:
    """modules.softdep / modules.weakdep: each module's entries, as given."""
    return _text(
        [f"# {kind} dependencies extracted from modules themselves."]
        + [f"{key} {name} {value}" for value, name, _ in entries[key]]
    )


def _text(lines: list[str]) -> bytes:
    if not lines:
        return b""
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")


def _collector(notes: Messages) -> Report:
    def note(level: str, text: str) -> None:
        notes.append((level, text))

    return note


def _builtin_index(source: BuiltinInput, report: Report, layout: Layout) -> bytes:
    """modules.builtin.bin: every built-in module name (empty file without input)."""
    raw, problem = source
    if raw is None:
        report("WARNING", problem or "modules.builtin is missing")
        return b""
    index = IndexBuilder()
    for line in raw.decode("utf-8", "surrogateescape").splitlines(keepends=True):
        if not line[:1].isascii() or not line[:1].isalpha():
            report("ERROR", f"Invalid modules.builtin line: {line}")
            continue
        base = line.rstrip("\n").rsplit("/", 1)[-1]
        index.insert(base.split(".", 1)[0].replace("-", "_"), "", 0)
    return index.to_bytes(layout)


def _builtin_alias_index(source: BuiltinInput, report: Report, layout: Layout) -> bytes:
    """modules.builtin.alias.bin from modules.builtin.modinfo's alias entries."""
    raw, problem = source
    if raw is None:
        report("WARNING", problem or "modules.builtin.modinfo is missing")
        return b""
    from lkm.model.moddir import normalize_alias

    index = IndexBuilder()
    for item in raw.decode("utf-8", "surrogateescape").split("\0"):
        module, dot, rest = item.partition(".")
        key, equals, value = rest.partition("=")
        if not dot or not module or not equals or key != "alias" or not value:
            continue
        try:
            alias = normalize_alias(value)
        except AliasError:
            report("WARNING", f"Unmatched bracket in {value}")
            continue
        index.insert(alias, module, 0)
    return index.to_bytes(layout)


# -- writing -----------------------------------------------------------------


def write_outputs(outputs: Outputs, outdir: str) -> None:
    """Each file through ``NAME.PID.USEC.SEC`` and a rename, in kmod's order.

    A killed run leaves every index either complete-old or complete-new;
    at worst a stray temporary file.
    """
    os.makedirs(outdir, mode=0o755, exist_ok=True)
    now = time.time()
    suffix = f"{os.getpid()}.{int(now * 1_000_000) % 1_000_000}.{int(now)}"
    for name in OUTPUT_FILES:
        data = outputs.files.get(name)
        if data is None:
            continue
        target = f"{outdir}/{name}"
        replace_file(target, data, f"{target}.{suffix}")
