"""depmod's render stage: every output file's bytes, group by group.

The output files fall into groups (:data:`GROUPS`), each made from one
set of inputs: the group's table entry names its files, whether it needs
resolved dependencies, what its inputs are (what the cache digests) and
how it is rendered. Groups that need no resolving are rendered on the
other core while this one resolves.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import cached_property
from itertools import groupby
from operator import itemgetter

from lkm.errors import AliasError, one_line
from lkm.formats.kmod_hash import hash_order
from lkm.formats.kmod_index_writer import IndexBuilder, Layout
from lkm.records import Record
from lkm.system.files import INDEX_TEXT, read_file
from lkm.workflows.depmod.discover import FoundModule
from lkm.workflows.depmod.facts import ModuleFacts
from lkm.workflows.depmod.resolve import KERNEL, Resolved, dep_lines

Report = Callable[[str, str], None]

# kmod's symbol table: a 2048-bucket hash whose order modules.symbols keeps.
SYMBOL_HASH_BUCKETS = 2048

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
            inputs[group] = (read_file(f"{moddir}/{name}", INDEX_TEXT), None)
        except OSError as exc:
            inputs[group] = (None, f"could not open {name} at {moddir}: {exc.strerror}")
    return inputs


# The entries modinfo_entries keeps: a whole entry (after a NUL; the text
# gets one in front) whose key (the text before its first '=') is alias,
# softdep or weakdep, and its value (empty without '='). Found in C,
# module by module; the leading NUL lets the search skip from NUL to NUL.
_MODINFO_WANTED = re.compile(r"\0(alias|softdep|weakdep)(?:=([^\0]*)|(?=\0|$))")


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

    def _paths_of_non_ascii(self, keys: Sequence[tuple[str, int]]) -> list[str]:
        """The files of the modules whose (key, module index) keys are not
        ASCII: their warnings name those files, so the files are part of
        the group's inputs (the cache replays a group's messages)."""
        if "".join(key for key, _ in keys).isascii():
            return []
        return [self.modules[at].path for key, at in keys if not key.isascii()]

    def _warn_left_out(self, index: IndexBuilder, file: str, what: str, note: Report) -> None:
        """One warning per module with keys the index could not hold."""
        by_module: dict[int, list[str]] = {}
        for key, _, at in index.left_out:
            by_module.setdefault(at, []).append(key)
        for at, keys in by_module.items():
            note("WARNING", f"{one_line(self.modules[at].path)}: {_not_ascii(what, keys, file)}")

    @property
    def _options(self) -> tuple[object, ...]:
        return (self.layout.value, self.warn_dups, self.binary)

    def inputs(self, group: str) -> object:
        """Everything group ``group``'s files and messages are made from
        (plain data with a faithful repr)."""
        return GROUPS[group].inputs(self)

    def render(self, group: str) -> RenderedGroup:
        messages: Messages = []
        files = GROUPS[group].render(self, _collector(messages))
        return files, messages

    # -- each group's inputs and files (see GROUPS) ---------------------------

    def _dep_inputs(self) -> object:
        return (self._options, [m.name for m in self.modules], self.dep_lines)

    def _dep_files(self, note: Report) -> dict[str, FileData | None]:
        files: dict[str, FileData | None] = {"modules.dep": _text(self.dep_lines)}
        if self.binary:
            files["modules.dep.bin"] = self._dep_index(note)
        return files

    def _alias_inputs(self) -> object:
        keys = [(alias, at) for alias, _, at in self.aliases]
        return (self._options, self.aliases, self._paths_of_non_ascii(keys))

    def _alias_files(self, note: Report) -> dict[str, FileData | None]:
        lines = ["# Aliases extracted from modules themselves."]
        lines += [f"alias {a} {m}" for a, m, _ in self.aliases]
        files: dict[str, FileData | None] = {"modules.alias": _text(lines)}
        if self.binary:
            files["modules.alias.bin"] = self._alias_index(note)
        return files

    def _soft_inputs(self, key: str) -> object:
        return [(name, value) for value, name, _ in self.modinfo_entries[key]]

    def _soft_files(self, key: str, kind: str) -> dict[str, FileData | None]:
        return {f"modules.{key}": _soft_dependencies(self.modinfo_entries, key, kind)}

    def _symbols_inputs(self) -> object:
        names = [(name, owner, self.modules[owner].name) for name, owner in self.owned_symbols]
        return (self._options, names, self._paths_of_non_ascii(self.owned_symbols))

    def _builtin_inputs(self, group: str) -> object:
        return (self._options, self.builtins.get(group))

    def _builtin_files(
        self, group: str, build: Callable[[BuiltinInput, Report, Layout], bytes], note: Report
    ) -> dict[str, FileData | None]:
        if not self.binary:
            return {}
        name = GROUPS[group].binary
        assert name is not None
        return {name: build(self.builtins[group], note, self.layout)}

    def _devname_inputs(self) -> object:
        return self.aliases

    def _devname_files(self, note: Report) -> dict[str, FileData | None]:
        devnames = devname_lines(self.aliases, note)
        header = "# Device nodes to trigger on-demand module loading."
        return {"modules.devname": _text([header, *devnames]) if devnames else b""}

    def _dep_index(self, note: Report) -> bytes:
        index = IndexBuilder()
        lines = self.dep_lines
        entries = [
            (module.name, line, at)
            for at, (module, line) in enumerate(zip(self.modules, lines, strict=True))
        ]
        for _, line in index.extend(entries):
            if self.warn_dups:
                note("WARNING", f"duplicate module deps:\n{one_line(line)}")
        self._warn_left_out(index, "modules.dep.bin", "name", note)
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
                    note("WARNING", f"Unmatched bracket in {one_line(alias)}")
                    continue
                if index.insert(key, name, at) and self.warn_dups:
                    note("WARNING", f"duplicate module alias:\n{one_line(key)} {one_line(name)}")
        else:
            for key, name in index.extend(entries):
                if self.warn_dups:
                    note("WARNING", f"duplicate module alias:\n{one_line(key)} {one_line(name)}")
        self._warn_left_out(index, "modules.alias.bin", "alias", note)
        return index.to_bytes(self.layout)

    def _symbols_files(self, note: Report) -> dict[str, FileData | None]:
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
                    note("WARNING", f"duplicate module syms:\n{one_line(key)} {one_line(module)}")
            self._warn_left_out(index, "modules.symbols.bin", "symbol", note)
            files["modules.symbols.bin"] = index.to_bytes(self.layout)
        return files


class OutputGroup(Record):
    """Output files rendered from the same inputs: rendered, cached and
    reused as a whole."""

    name: str
    text: str | None  # the text file (printed by -n too)
    binary: str | None  # the binary index (not made by -n)
    resolved: bool  # made from resolved dependencies and symbols (else facts alone)
    inputs: Callable[[Rendering], object]  # what its files and messages are made from
    render: Callable[[Rendering, Report], dict[str, FileData | None]]
    source: str | None = None  # the built-in list it is made from, if any

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(name for name in (self.text, self.binary) if name is not None)


# In kmod's order: files are written, and messages replayed, group by
# group in this order (devname's come last).
GROUPS: dict[str, OutputGroup] = {
    group.name: group
    for group in (
        OutputGroup(
            "dep", "modules.dep", "modules.dep.bin", True,
            Rendering._dep_inputs, Rendering._dep_files,
        ),
        OutputGroup(
            "alias", "modules.alias", "modules.alias.bin", False,
            Rendering._alias_inputs, Rendering._alias_files,
        ),
        OutputGroup(
            "softdep", "modules.softdep", None, False,
            lambda r: r._soft_inputs("softdep"), lambda r, _: r._soft_files("softdep", "Soft"),
        ),
        OutputGroup(
            "weakdep", "modules.weakdep", None, False,
            lambda r: r._soft_inputs("weakdep"), lambda r, _: r._soft_files("weakdep", "Weak"),
        ),
        OutputGroup(
            "symbols", "modules.symbols", "modules.symbols.bin", True,
            Rendering._symbols_inputs, Rendering._symbols_files,
        ),
        OutputGroup(
            "builtin", None, "modules.builtin.bin", False,
            lambda r: r._builtin_inputs("builtin"),
            lambda r, note: r._builtin_files("builtin", _builtin_index, note),
            source="modules.builtin",
        ),
        OutputGroup(
            "builtin.alias", None, "modules.builtin.alias.bin", False,
            lambda r: r._builtin_inputs("builtin.alias"),
            lambda r, note: r._builtin_files("builtin.alias", _builtin_alias_index, note),
            source="modules.builtin.modinfo",
        ),
        OutputGroup(
            "devname", "modules.devname", None, False,
            Rendering._devname_inputs, Rendering._devname_files,
        ),
    )
}  # fmt: skip
OUTPUT_FILES = tuple(name for group in GROUPS.values() for name in group.files)
TEXT_FILES = tuple(group.text for group in GROUPS.values() if group.text is not None)
RESOLVED_GROUPS = tuple(name for name, group in GROUPS.items() if group.resolved)
BUILTIN_INPUTS = {name: group.source for name, group in GROUPS.items() if group.source}


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


def _not_ascii(what: str, keys: list[str], file: str) -> str:
    """Why ``keys`` are not in index ``file``: kmod 34's check in words
    (depmod's index__checkstring, which makes it fatal there)."""
    byte = next(b for b in keys[0].encode("utf-8", "surrogateescape") if b >= 0x80)
    first = one_line(keys[0])
    which = f"{what} '{first}'" if len(keys) == 1 else f"{len(keys)} {what}s ('{first}', …)"
    return (
        f"{which}: byte 0x{byte:02x} is not 7-bit ASCII; left out of {file} "
        "(module indexes hold ASCII keys only)"
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
    for key, _, _ in index.left_out:
        report("WARNING", f"modules.builtin: {_not_ascii('name', [key], 'modules.builtin.bin')}")
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
            report("WARNING", f"Unmatched bracket in {one_line(value)}")
            continue
        index.insert(alias, module, 0)
    for key, _, _ in index.left_out:
        file = "modules.builtin.alias.bin"
        report("WARNING", f"modules.builtin.modinfo: {_not_ascii('alias', [key], file)}")
    return index.to_bytes(layout)
