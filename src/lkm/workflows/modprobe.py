"""modprobe: resolve a name or alias, plan the loads or unloads, execute.

This is kmod's modprobe (libkmod-module.c and tools/modprobe.c, upstream
kmod 34) rebuilt in three parts:

* :class:`Resolver` turns a name, alias or ``symbol:`` key into modules,
  in kmod's order of sources: configuration aliases, ``modules.dep``,
  ``modules.symbols``, install/remove commands, ``modules.alias``
  patterns, ``modules.builtin``, ``modules.builtin.alias``. Like libkmod
  it keeps one :class:`Module` per name (per name and alias for a module
  found through an alias), so options given for an alias reach the module
  it names.
* :class:`Engine` walks kmod's algorithms against a kernel view
  (:class:`KernelView`) and a set of :class:`Actions`: the probe list
  (dependencies, then the module's pre softdeps, the module, its post
  softdeps; install commands in place of a load), and the removal order
  (post softdeps, holders, the module, the dependencies nobody uses any
  more, pre softdeps).
* Run against :class:`SimulatedKernel` with :class:`RecordingActions`,
  the same walk is the *plan*: :func:`plan_load` and :func:`plan_remove`
  return the steps as data; run against :class:`~lkm.system.kernel.KernelModules`
  with :class:`KernelActions` it is the real thing.

Messages go through a ``report(priority, text)`` callback with syslog
priorities, so the CLI can print them as kmod does (``modprobe: ERROR: …``)
and a library caller can collect them.
"""

from __future__ import annotations

import errno
import os
import time

from lkm.errors import AliasError
from lkm.errors import one_line as escape_line_breaks

# kmod matches modprobe.d's alias, softdep, weakdep, install and remove
# patterns with glibc's fnmatch(pattern, name, 0), not Python's rules.
from lkm.formats.fnmatch import fnmatch as glob_match
from lkm.model.moddir import ModuleDirectory, normalize_alias, normalize_modname
from lkm.model.modprobe_config import ModprobeConfig
from lkm.records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Protocol

    from lkm.system.kernel import KernelModules

    Report = Callable[[int, str], None]
    ShowStep = Callable[["Step"], None]
    Emit = Callable[[str], None]
else:
    Protocol = object  # the protocols below are for type checkers only

# syslog priorities, as kmod's log uses them.
LOG_CRIT = 2
LOG_ERR = 3
LOG_WARNING = 4
LOG_NOTICE = 5
LOG_INFO = 6
LOG_DEBUG = 7
# "The tool's own level": kmod's modprobe logs lookups and removal refusals
# at LOG_CRIT (fatal), or LOG_WARNING with -a.
LOG_TOOL = -1


# What kmod_module_probe_insert_module returns when the blacklist stops it.
BLACKLISTED_ALIAS = 0x10000  # KMOD_PROBE_APPLY_BLACKLIST_ALIAS_ONLY
BLACKLISTED = 0x20000  # KMOD_PROBE_APPLY_BLACKLIST


def _no_report(_priority: int, _text: str) -> None:
    pass


def one_line(text: str) -> str:
    """A message as one line (line breaks inside escaped); the final one stays."""
    body = text[:-1] if text.endswith("\n") else text
    return escape_line_breaks(body) + "\n"


# -- modules and their lookup ---------------------------------------------------


_UNSET = object()


class Module:
    """One module as libkmod knows it: a name, maybe the alias it was found
    by, and facts read lazily from the indexes."""

    __slots__ = ("_deps", "_path", "alias", "builtin", "install", "key", "name", "remove")

    def __init__(self, name: str, alias: str | None = None) -> None:
        self.name = name
        self.alias = alias
        self.key = name if alias is None else f"{name}\\{alias}"
        self._path: str | None = None
        self._deps: list[Module] | None = None  # None: modules.dep not read yet
        self.builtin: bool | None = None  # None: not known yet
        self.install: object = _UNSET  # install command, once looked up
        self.remove: object = _UNSET

    def __repr__(self) -> str:
        return f"Module({self.key!r})"


def _first_match(patterns: Iterable[str], name: str, seen: dict[str, int]) -> int:
    """The index of the first of ``patterns`` ``name`` matches (-1: none),
    remembered in ``seen`` by name (the patterns are read only then)."""
    at = seen.get(name)
    if at is None:
        at = next((i for i, pattern in enumerate(patterns) if glob_match(pattern, name)), -1)
        seen[name] = at
    return at


class Resolver:
    """Lookups in one module directory under one configuration, as libkmod's
    context does them (``kmod_module_new_from_lookup`` and friends)."""

    def __init__(
        self, moddir: ModuleDirectory, config: ModprobeConfig, report: Report = _no_report
    ) -> None:
        self.moddir = moddir
        self.config = config
        self.report = report
        self._pool: dict[str, Module] = {}
        self._blacklist = frozenset(config.blacklists)
        # Which softdep/weakdep entry (by index; -1: none) a module name
        # meets first: asked for every module of every load list.
        self._softdep_at: dict[str, int] = {}
        self._weakdep_at: dict[str, int] = {}
        # Configured options by the name they were given for, in order.
        self._options_by_name: dict[str, list[tuple[int, str]]] | None = None

    # -- creating modules (the pool: one object per key) ----------------------

    def module(self, name: str) -> Module:
        """The module called ``name`` (normalised as a module name)."""
        name = normalize_modname(name)
        found = self._pool.get(name)
        if found is None:
            found = self._pool[name] = Module(name)
        return found

    def _from_alias(self, alias: str, name: str) -> Module:
        key = f"{name}\\{alias}"
        found = self._pool.get(key)
        if found is None:
            found = self._pool[key] = Module(name, alias)
        return found

    def from_path(self, path: str) -> Module:
        """A module named by its file (``modprobe ./x.ko``, kmod 34)."""
        module = self.module(os.path.basename(path))
        if module._path is None:
            module._path = path
        return module

    # -- lookup ------------------------------------------------------------

    def lookup(self, given: str) -> list[Module]:
        """Modules a name or alias resolves to; [] when nothing matches.

        Raises AliasError when ``given`` is not a valid alias.
        """
        alias = normalize_alias(given)
        for source in (
            self._from_config,
            self._from_moddep,
            self._from_symbols,
            self._from_commands,
            self._from_aliases,
            self._from_builtin,
            self._from_builtin_aliases,
        ):
            found = source(alias)
            if found:
                return found
        return []

    def _from_config(self, alias: str) -> list[Module]:
        return [
            self._from_alias(pattern, target)
            for pattern, target in self.config.aliases
            if glob_match(pattern, alias)
        ]

    def _from_moddep(self, name: str) -> list[Module]:
        if ":" in name:  # module names never have one
            return []
        line = self.moddir.dep_line(name)
        if line is None:
            return []
        module = self.module(name)
        self._parse_depline(module, line)
        return [module]

    def _from_symbols(self, alias: str) -> list[Module]:
        if not alias.startswith("symbol:"):
            return []
        return self._from_index("modules.symbols", alias)

    def _from_aliases(self, alias: str) -> list[Module]:
        return self._from_index("modules.alias", alias)

    def _from_index(self, basename: str, alias: str) -> list[Module]:
        index = self.moddir.index(basename)
        if index is None:
            return []
        return [self._from_alias(alias, value.value) for value in index.search_wild(alias)]

    def _from_commands(self, name: str) -> list[Module]:
        for commands, attribute in (
            (self.config.install_commands, "install"),
            (self.config.remove_commands, "remove"),
        ):
            for modname, command in commands:
                if modname == name:
                    module = self.module(modname)
                    setattr(module, attribute, command)
                    return [module]
        return []

    def _from_builtin(self, name: str) -> list[Module]:
        if self.moddir.is_builtin(name):
            module = self.module(name)
            module.builtin = True
            return [module]
        return []

    def _from_builtin_aliases(self, alias: str) -> list[Module]:
        found = self._from_index("modules.builtin.alias", alias)
        for module in found:
            module.builtin = True
        return found

    # -- facts ---------------------------------------------------------------

    def _parse_depline(self, module: Module, line: str) -> None:
        if module._deps is not None:
            return
        head, colon, tail = line.partition(":")
        if not colon:
            module._deps = []
            return
        if module._path is None:
            module._path = self.moddir.join(head)
        deps: list[Module] = []
        for relative in tail.split():
            dep = self.from_path(self.moddir.join(relative))
            deps.insert(0, dep)  # libkmod prepends: the last one loads first
        module._deps = deps

    def _load_deps(self, module: Module) -> None:
        if module._deps is None:
            line = self.moddir.dep_line(module.name)
            if line is None:
                module._deps = []
            else:
                self._parse_depline(module, line)

    def path(self, module: Module) -> str | None:
        if module._path is None and module._deps is None:
            self._load_deps(module)
        return module._path

    def dependencies(self, module: Module) -> list[Module]:
        """Hard dependencies, in the order libkmod keeps them (loading order)."""
        self._load_deps(module)
        assert module._deps is not None
        return module._deps

    def is_builtin(self, module: Module) -> bool:
        if module.builtin is None:
            module.builtin = self.moddir.is_builtin(module.name)
        return module.builtin

    def is_blacklisted(self, module: Module) -> bool:
        return module.name in self._blacklist

    def options(self, module: Module) -> str | None:
        """Configured options for the module (by name or by the alias it was
        found through), joined with spaces; None when there are none."""
        by_name = self._options_by_name
        if by_name is None:
            by_name = self._options_by_name = {}
            for at, (name, text) in enumerate(self.config.options):
                if text:
                    by_name.setdefault(name, []).append((at, text))
        found = by_name.get(module.name, [])
        if module.alias is not None and module.alias != module.name:
            found = sorted(found + by_name.get(module.alias, []))
        return " ".join(text for _, text in found) if found else None

    def install_command(self, module: Module) -> str | None:
        if module.install is _UNSET:
            module.install = _first_command(self.config.install_commands, module.name)
        return module.install  # type: ignore[return-value]

    def remove_command(self, module: Module) -> str | None:
        if module.remove is _UNSET:
            module.remove = _first_command(self.config.remove_commands, module.name)
        return module.remove  # type: ignore[return-value]

    def softdeps(self, module: Module) -> tuple[list[Module], list[Module]]:
        """(pre, post) modules of the first softdep entry matching the module."""
        softdeps = self.config.softdeps
        at = _first_match((entry[0] for entry in softdeps), module.name, self._softdep_at)
        if at < 0:
            return [], []
        _, pre, post = softdeps[at]
        return self._lookup_all(pre), self._lookup_all(post)

    def weakdeps(self, module: Module) -> list[Module]:
        weakdeps = self.config.weakdeps
        at = _first_match((entry[0] for entry in weakdeps), module.name, self._weakdep_at)
        return self._lookup_all(weakdeps[at][1]) if at >= 0 else []

    def _lookup_all(self, names: list[str]) -> list[Module]:
        found: list[Module] = []
        for name in names:
            try:
                found.extend(self.lookup(name))
            except AliasError:
                self.report(LOG_ERR, f"failed to lookup dependency '{name}', continuing anyway.\n")
        return found


def _first_command(commands: list[tuple[str, str]], name: str) -> str | None:
    for pattern, command in commands:
        if glob_match(pattern, name):
            return command
    return None


# -- the kernel and what is done to it -----------------------------------------


class KernelView(Protocol):
    """What modprobe reads of the kernel (KernelModules has all of it)."""

    def initstate(self, name: str) -> str | None: ...
    def refcnt(self, name: str) -> int | None: ...
    def holders(self, name: str) -> list[str] | None: ...


class Actions(Protocol):
    """What modprobe does; each returns 0 or a negative errno, as libkmod."""

    def insert(self, module: Module, path: str, options: str, flags: LoadFlags) -> int: ...
    def remove(self, name: str, force: bool) -> int: ...
    def run_command(self, module: Module, command: str) -> int:
        """Run a shell command for the module; returns its exit status
        (-1 when it could not run)."""
        ...


class LoadFlags(Record):
    """kmod's KMOD_PROBE_* flags, as modprobe's options set them."""

    ignore_loaded: bool = False  # -D: plan as if nothing were loaded
    ignore_commands: bool = False  # -i
    use_blacklist: bool = False  # -b: a blacklisted module is not loaded at all
    first_time: bool = False  # --first-time
    dry_run: bool = False  # -n
    force_modversion: bool = False
    force_vermagic: bool = False


class RemoveFlags(Record):
    """What modprobe -r's options say."""

    ignore_commands: bool = False  # -i
    ignore_loaded: bool = False  # -D
    first_time: bool = False
    dry_run: bool = False
    force: bool = False
    remove_holders: bool = False
    wait_msec: int = 0
    quiet_inuse: bool = False


class Step(Record):
    """One thing modprobe does: ``insmod`` a file, run an ``install`` or
    ``remove`` command, note a ``builtin`` module, or ``rmmod`` a module."""

    action: str
    module: str
    path: str | None = None
    options: str = ""
    command: str | None = None

    def as_json(self) -> dict[str, object]:
        """lkm modprobe --json's record (lkm/schemas/modprobe.schema.json)."""
        return {
            "action": self.action,
            "module": self.module,
            "path": self.path,
            "options": self.options,
            "command": self.command,
        }

    def show(self) -> str:
        """The line kmod's ``--show-depends`` / ``-v`` prints for it."""
        if self.action == "insmod":
            return f"insmod {self.path} {self.options}\n"
        if self.action == "install":
            return f"install {self.command} {self.options}\n"
        if self.action == "builtin":
            return f"builtin {self.module}\n"
        if self.action == "remove":
            return f"remove {self.command}\n"
        return f"rmmod {self.module}\n"


class ProbeList(Record, frozen=False):
    """The modules one load walks through, in order; ``required`` holds the
    keys of the module and its hard dependencies (a failure of any other
    one, a softdep, is ignored); ``ignorecmd`` says which of them skip
    their install command (kmod: those with softdeps, and the requested
    module under -i)."""

    order: list[Module]
    required: set[str]
    ignorecmd: dict[str, bool]


class Engine:
    """kmod's load and removal algorithms over a resolver, a kernel and actions."""

    def __init__(
        self,
        resolver: Resolver,
        kernel: KernelView,
        actions: Actions,
        report: Report = _no_report,
        show: ShowStep | None = None,
    ) -> None:
        self.resolver = resolver
        self.kernel = kernel
        self.actions = actions
        self.report = report
        self.show = show
        self._removing: set[str] = set()

    # -- loading --------------------------------------------------------------

    def is_in_kernel(self, module: Module) -> bool:
        return self.resolver.is_builtin(module) or self.kernel.initstate(module.name) == "live"

    def probe_list(self, module: Module, ignore_commands: bool) -> ProbeList:
        """kmod's probe list: every module to load, in order, with which of
        them are required (the module and its hard dependencies: a failure
        of any other one, a softdep, is ignored) and which ignore their
        install command (modules with softdeps, as in kmod)."""
        order: list[Module] = []
        visited: set[str] = set()
        ignorecmd: dict[str, bool] = {}
        required = {module.key} | {dep.key for dep in self.resolver.dependencies(module)}

        def with_softdeps(current: Module) -> None:
            pre, post = self.resolver.softdeps(current)
            for dep in pre:
                visit(dep, False)
            order.append(current)
            ignorecmd[current.key] = bool(pre or post)
            for dep in post:
                visit(dep, False)

        def visit(current: Module, top_ignorecmd: bool) -> None:
            if current.key in visited:
                return
            visited.add(current.key)
            for dep in self.resolver.dependencies(current):
                with_softdeps(dep)
            if top_ignorecmd:
                order.append(current)
                ignorecmd[current.key] = True
            else:
                with_softdeps(current)

        visit(module, ignore_commands)
        return ProbeList(order, required, ignorecmd)

    def probe(self, module: Module, flags: LoadFlags, extra_options: str | None = None) -> int:
        """kmod_module_probe_insert_module: 0, a negative errno, or
        BLACKLISTED/BLACKLISTED_ALIAS when the blacklist stopped it."""
        if not flags.ignore_loaded and self.is_in_kernel(module):
            return -errno.EEXIST if flags.first_time else 0
        if self.resolver.is_blacklisted(module):
            if module.alias is not None:
                return BLACKLISTED_ALIAS
            if flags.use_blacklist:
                return BLACKLISTED
        probe = self.probe_list(module, flags.ignore_commands)
        required, ignorecmd = probe.required, probe.ignorecmd
        err = 0
        for current in probe.order:
            if not flags.ignore_loaded and self.is_in_kernel(current):
                err = -errno.EEXIST
            else:
                err = self._load_one(current, current is module, extra_options, ignorecmd, flags)
            if err == -errno.EEXIST and current is module and flags.first_time:
                break
            if err == -errno.EEXIST or current.key not in required:
                err = 0
            elif err < 0:
                break
        return err

    def _load_one(
        self,
        module: Module,
        is_top: bool,
        extra_options: str | None,
        ignorecmd: dict[str, bool],
        flags: LoadFlags,
    ) -> int:
        options = _concat_options(self.resolver.options(module), extra_options if is_top else None)
        command = self.resolver.install_command(module)
        if command is not None and not ignorecmd.get(module.key, False):
            if self.show is not None:
                self.show(Step("install", module.name, options=options, command=command))
            if flags.dry_run:
                return 0
            return self._install(module, command, options)
        path = self.resolver.path(module)
        if self.show is not None:
            if path is not None:
                self.show(Step("insmod", module.name, path=path, options=options))
            elif self.resolver.is_builtin(module):
                self.show(Step("builtin", module.name))
        if flags.dry_run:
            return 0
        if path is None:
            self.report(LOG_ERR, f"could not find module by name='{module.name}'\n")
            return -errno.ENOENT
        err = self.actions.insert(module, path, options, flags)
        if err < 0:
            self.report(LOG_INFO, f"Failed to insert module '{path}': {os.strerror(-err)}\n")
        return err

    def _install(self, module: Module, command: str, options: str) -> int:
        command = command.replace("$CMDLINE_OPTS", options)
        status = self.actions.run_command(module, command)
        if status == -1:
            self.report(
                LOG_ERR,
                f"Could not run install command '{command}' for module {module.name}: "
                f"{os.strerror(errno.ECHILD)}\n",
            )
            return -errno.EINVAL
        if status:
            self.report(
                LOG_ERR,
                f"Error running install command '{command}' for module {module.name}: "
                f"retcode {status}\n",
            )
            return -errno.EINVAL
        return 0

    # -- removal ---------------------------------------------------------------

    def remove(
        self, module: Module, flags: RemoveFlags, holders: bool, ignore_builtin: bool = False
    ) -> int:
        """tools/modprobe.c's rmmod_do_module.

        A softdep cycle (a post: b, b post: a) would recurse for ever in
        kmod; here a module already being removed further up is skipped.
        """
        if module.key in self._removing:
            return 0
        self._removing.add(module.key)
        try:
            return self._remove(module, flags, holders, ignore_builtin)
        finally:
            self._removing.discard(module.key)

    def _remove(
        self, module: Module, flags: RemoveFlags, holders: bool, ignore_builtin: bool
    ) -> int:
        pre: list[Module] = []
        post: list[Module] = []
        command = None
        if not flags.ignore_commands:
            pre, post = self.resolver.softdeps(module)
            command = self.resolver.remove_command(module)
        if command is None and not flags.ignore_loaded:
            if self.resolver.is_builtin(module):
                if ignore_builtin:
                    return 0
                self.report(LOG_TOOL, f"Module {module.name} is builtin.\n")
                return -errno.ENOENT
            if self.kernel.initstate(module.name) is None:
                if flags.first_time:
                    self.report(LOG_TOOL, f"Module {module.name} is not in kernel.\n")
                    return -errno.ENOENT
                return 0
        self._remove_list(post, flags, stop_on_errors=False)
        if holders:
            names = self.kernel.holders(module.name)
            if names is None:
                self.report(
                    LOG_ERR,
                    f"could not open '/sys/module/{module.name}/holders': "
                    f"{os.strerror(errno.ENOENT)}\n",
                )
                names = []
            err = self._remove_list(
                [self.resolver.module(n) for n in names], flags, stop_on_errors=True
            )
            if err < 0:
                return err
        if command is None and not flags.ignore_loaded and not flags.wait_msec:
            usage = self.kernel.refcnt(module.name)
            if usage is not None and usage > 0:
                if not flags.quiet_inuse:
                    self.report(LOG_TOOL, f"Module {module.name} is in use.\n")
                return -errno.EBUSY
        if command is None:
            err = self._rmmod(module, flags)
        else:
            err = self._remove_command(module, command, flags)
        if err < 0:
            return err
        if command is None:
            # Dependencies nobody uses any more; their errors do not count.
            for dep in self.resolver.dependencies(module):
                if self.kernel.refcnt(dep.name) == 0:
                    self._rmmod(dep, flags)
        self._remove_list(pre, flags, stop_on_errors=False)
        return err

    def _remove_list(self, modules: list[Module], flags: RemoveFlags, stop_on_errors: bool) -> int:
        for module in reversed(modules):
            err = self.remove(module, flags, holders=False, ignore_builtin=True)
            if err < 0 and stop_on_errors:
                return err
        return 0

    def _rmmod(self, module: Module, flags: RemoveFlags) -> int:
        """rmmod_do_remove_module: unload, waiting with backoff under -w."""
        if self.show is not None:
            self.show(Step("rmmod", module.name))
        if flags.dry_run:
            return 0
        deadline = time.monotonic() + flags.wait_msec / 1000 if flags.wait_msec else 0.0
        interval = 0.0
        while True:
            err = self.actions.remove(module.name, flags.force)
            if err == -errno.EEXIST:
                if flags.first_time:
                    self.report(LOG_TOOL, f"Module {module.name} is not in kernel.\n")
                else:
                    err = 0
                break
            if err == -errno.EAGAIN and flags.wait_msec:
                interval = _backoff(interval, deadline)
                if interval <= 0:
                    break
                time.sleep(interval)
                continue
            break
        if err < 0 and err != -errno.EEXIST:
            # libkmod says it, or modprobe after waiting: the same words.
            self.report(LOG_ERR, f"could not remove '{module.name}': {os.strerror(-err)}\n")
        return err

    def _remove_command(self, module: Module, command: str, flags: RemoveFlags) -> int:
        command = command.replace("$CMDLINE_OPTS", "")
        if self.show is not None:
            self.show(Step("remove", module.name, command=command))
        if flags.dry_run:
            return 0
        status = self.actions.run_command(module, command)
        if status:
            self.report(LOG_TOOL, f"Error running remove command for {module.name}\n")
            return -status if status > 0 else status
        return 0


def _backoff(interval: float, deadline: float) -> float:
    """kmod's exponential retry backoff: 1 ms, doubling, never past the deadline."""
    now = time.monotonic()
    interval = interval * 2 if interval else 0.001
    while interval > 0.0005 and now + interval > deadline:
        interval /= 2
    if interval <= 0.0005:
        interval = deadline - now
    return interval


def _concat_options(configured: str | None, extra: str | None) -> str:
    """libkmod's module_options_concat: a configured string keeps the space
    after it even with nothing following (kmod prints ``insmod PATH opt ``)."""
    if configured is None:
        return extra or ""
    return f"{configured} {extra or ''}"


# -- planning: the same walk against a simulated kernel -------------------------


class SimulatedKernel:
    """A snapshot of the loaded modules that plans mutate instead of the kernel."""

    def __init__(self) -> None:
        self.live: dict[str, int] = {}  # name -> refcnt
        self.holders_of: dict[str, list[str]] = {}

    @classmethod
    def snapshot(cls, kernel: KernelModules) -> SimulatedKernel:
        state = cls()
        try:
            loaded = kernel.proc_modules()
        except OSError:
            return state
        for module in loaded:
            state.live[module.name] = module.refcount or 0
            state.holders_of[module.name] = list(module.used_by)
        return state

    def initstate(self, name: str) -> str | None:
        return "live" if name in self.live else None

    def refcnt(self, name: str) -> int | None:
        return self.live.get(name)

    def holders(self, name: str) -> list[str] | None:
        return list(self.holders_of.get(name, [])) if name in self.live else None


class RecordingActions:
    """Actions that only change the simulated kernel."""

    def __init__(self, kernel: SimulatedKernel, resolver: Resolver) -> None:
        self.kernel = kernel
        self.resolver = resolver

    def insert(self, module: Module, path: str, options: str, flags: LoadFlags) -> int:
        if module.name in self.kernel.live:
            return -errno.EEXIST
        self.kernel.live[module.name] = 0
        self.kernel.holders_of[module.name] = []
        for dep in self.resolver.dependencies(module):
            if dep.name in self.kernel.live:
                self.kernel.live[dep.name] += 1
                self.kernel.holders_of[dep.name].append(module.name)
        return 0

    def remove(self, name: str, force: bool) -> int:
        if name not in self.kernel.live:
            return -errno.ENOENT
        if self.kernel.live[name] and not force:
            return -errno.EAGAIN
        del self.kernel.live[name]
        self.kernel.holders_of.pop(name, None)
        for other, holders in self.kernel.holders_of.items():
            if name in holders:
                holders.remove(name)
                self.kernel.live[other] = max(0, self.kernel.live[other] - 1)
        return 0

    def run_command(self, module: Module, command: str) -> int:
        return 0


class KernelActions:
    """Actions on the running kernel: system calls and /bin/sh."""

    def __init__(self, kernel: KernelModules, env: dict[str, str] | None = None) -> None:
        self.kernel = kernel
        self.env = env or {}

    def insert(self, module: Module, path: str, options: str, flags: LoadFlags) -> int:
        from lkm.errors import FileFormatError
        from lkm.system.kernel import KernelCallError

        try:
            self.kernel.insert(
                path,
                options,
                force_modversion=flags.force_modversion,
                force_vermagic=flags.force_vermagic,
            )
        except KernelCallError as exc:
            return -exc.code
        except FileFormatError:
            return -errno.ENOEXEC
        except OSError as exc:
            return -(exc.errno or errno.EIO)
        return 0

    def remove(self, name: str, force: bool) -> int:
        from lkm.system.kernel import KernelCallError

        try:
            self.kernel.remove(name, force=force)
        except KernelCallError as exc:
            return -exc.code
        return 0

    def run_command(self, module: Module, command: str) -> int:
        """system(3): ``/bin/sh -c COMMAND`` with MODPROBE_MODULE set, its
        output and input lkm's own; the shell's status (128 + N for signal N)."""
        from lkm.system.run import INHERIT, CommandError, run, shell_status

        env = dict(os.environ, **self.env, MODPROBE_MODULE=module.name)
        argv = ["/bin/sh", "-c", command]
        try:
            done = run(argv, check=False, stdin=INHERIT, stdout=INHERIT, stderr=INHERIT, env=env)
        except CommandError:
            return -1
        return shell_status(done.status)


DEFAULT_LOAD = LoadFlags()
DEFAULT_REMOVE = RemoveFlags()


# -- the library's front door ---------------------------------------------------


class Plan(Record):
    """What a modprobe run would do: its steps, and how it would end
    (0, a negative errno, or BLACKLISTED/BLACKLISTED_ALIAS); ``messages``
    are (syslog priority, text) pairs."""

    request: str
    steps: tuple[Step, ...]
    status: int
    messages: tuple[tuple[int, str], ...] = ()


class Request(Record):
    """What a ``modprobe`` command line asks for, apart from where to look
    (root, version, configuration) and how loudly to say it."""

    remove: bool = False  # -r
    use_all: bool = False  # -a: every operand is a module (loads; -r always takes all)
    lookup_only: bool = False  # -R: print what the names resolve to
    show_depends: bool = False  # -D: plan as if nothing were loaded, print it
    dry_run: bool = False  # -n (and -D)
    ignore_commands: bool = False  # -i
    use_blacklist: bool = False  # -b
    first_time: bool = False  # --first-time
    force: bool = False  # -f: both force flags (and -r's O_TRUNC)
    force_modversion: bool = False
    force_vermagic: bool = False
    remove_holders: bool = False  # --remove-holders
    wait_msec: int = 0  # -w
    # lkm: after the kernel refuses a module, find out why (lkm check):
    # asked by -v, as it reads the kernel's facts (~0.1 s)
    explain_refusals: bool = False

    def load_flags(self) -> LoadFlags:
        return LoadFlags(
            ignore_loaded=self.show_depends,
            ignore_commands=self.ignore_commands,
            use_blacklist=self.use_blacklist,
            first_time=self.first_time,
            dry_run=self.dry_run,
            force_modversion=self.force_modversion or self.force,
            force_vermagic=self.force_vermagic or self.force,
        )

    def remove_flags(self) -> RemoveFlags:
        return RemoveFlags(
            ignore_commands=self.ignore_commands,
            ignore_loaded=self.show_depends,
            first_time=self.first_time,
            dry_run=self.dry_run,
            force=self.force,
            remove_holders=self.remove_holders,
            wait_msec=self.wait_msec,
        )


def is_path_operand(name: str) -> bool:
    """``modprobe ./x.ko`` or ``/abs/x.ko`` names a file (kmod 34), not a module."""
    return name.startswith("/") or name.startswith("./")


def options_from_words(words: list[str]) -> str | None:
    """Command-line parameters joined as kmod does: a value holding a space
    is quoted unless it already starts with a quote."""
    if not words:
        return None
    parts = []
    for word in words:
        key, eq, value = word.partition("=")
        if eq and value[:1] not in ('"', "'") and " " in value:
            word = f'{key}="{value}"'
        parts.append(word)
    return " ".join(parts)


def split_env_options(env: str | None) -> list[str]:
    """MODPROBE_OPTIONS into words exactly as kmod splits it: at each space
    (two spaces make an empty word), a word that starts with a quote ends
    at the closing one, quotes inside a word are dropped."""
    if env is None:
        return []
    chars = list(env)
    words: list[str] = []
    start = 0
    quote: int | None = None
    i = 0
    while i < len(chars):
        char = chars[i]
        if quote is None:
            if char == " ":
                words.append("".join(chars[start:i]))
                start = i + 1
            elif char in "\"'":
                quote = i
        elif char == chars[quote]:
            if quote == start:
                words.append("".join(chars[start + 1 : i]))
                start = i + 1
            else:
                del chars[i]
                del chars[quote]
                i -= 2
            quote = None
        i += 1
    if start < i:
        words.append("".join(chars[start:i]))
    return words


def parse_wait(text: str) -> int | None:
    """``-w``'s value as strtoul(text, &end, 0) with all of it used
    (decimal, 0x hex, 0 octal); None when it is not a number."""
    body = text.strip().lstrip("+")
    try:
        if body.lower().startswith("0x"):
            return int(body[2:], 16)
        if body.startswith("0") and len(body) > 1:
            return int(body[1:], 8)
        return int(body, 10)
    except ValueError:
        return None


class SymbolsUnreadable(Exception):
    """``--dump-modversions``/``--show-exports`` found nothing to read;
    ``code`` is kmod's errno for it."""

    def __init__(self, code: int) -> None:
        super().__init__(os.strerror(code))
        self.code = code


def symbol_crcs(filename: str, exports: bool) -> list[tuple[int, str]]:
    """(CRC, symbol) pairs: the symbol versions a module needs
    (``--dump-modversions``) or, with ``exports``, what it exports
    (``--show-exports``).

    Raises :class:`SymbolsUnreadable` with kmod's errno: ENOENT for an
    unreadable file or no symbol table, ENOEXEC for a file that is not ELF
    at all, EINVAL for a damaged one.
    """
    from lkm.errors import LkmError, NotElfModuleError
    from lkm.formats.module_file import open_module

    try:
        with open_module(filename) as module:
            if not exports:
                return [(v.crc, v.name) for v in module.versions()]
            pairs = [(s.crc or 0, s.name) for s in module.exports()]
    except NotElfModuleError:
        raise SymbolsUnreadable(errno.ENOEXEC) from None
    except FileNotFoundError:
        raise SymbolsUnreadable(errno.ENOENT) from None
    except OSError as exc:
        raise SymbolsUnreadable(exc.errno or errno.EIO) from None
    except LkmError:
        raise SymbolsUnreadable(errno.EINVAL) from None
    if not pairs:  # kmod finds no symbol table to read
        raise SymbolsUnreadable(errno.ENOENT)
    return pairs


def index_dump(directory: ModuleDirectory) -> str:
    """kmod's index_dump of modules.alias.bin and modules.symbols.bin, as
    ``modprobe -c`` ends with it."""
    lines: list[str] = []
    for basename in ("modules.alias", "modules.symbols"):
        index = directory.index(basename)
        if index is None:
            continue
        for key, values in index.items():
            lines.extend(f"alias {key} {v.value}\n" for v in values)
    return "".join(lines)


class Modprobe:
    """modprobe as a library: what ``lkm modprobe`` does, for any caller.

    ``run`` takes a :class:`Request` and the command's operands and does
    all of it (the per-name walk, paths, ``-R``, ``-a``, ``-r``);
    ``plan_load``/``plan_remove`` compute what would happen against a
    snapshot of the kernel (nothing is changed) and ``load``/``remove`` do
    it, each returning a :class:`Plan`. ``report`` receives messages as
    (syslog priority, text), ``show`` the steps as they are taken, ``env``
    what install and remove commands get added to their environment.
    """

    def __init__(
        self,
        moddir: str,
        config: ModprobeConfig | None = None,
        kernel: KernelModules | None = None,
        *,
        report: Report = _no_report,
        show: ShowStep | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        from lkm.system.kernel import KernelModules

        self.directory = ModuleDirectory(moddir)
        self.config = config if config is not None else ModprobeConfig()
        self.kernel = kernel if kernel is not None else KernelModules()
        self.report = report
        self.show = show
        self.env = env or {}

    @classmethod
    def for_system(
        cls,
        root: str | None = None,
        version: str | None = None,
        config_paths: list[str] | None = None,
        kernel: KernelModules | None = None,
        *,
        report: Report = _no_report,
        show: ShowStep | None = None,
        env: dict[str, str] | None = None,
    ) -> Modprobe:
        """The module directory of ``root`` and ``version`` (the running
        kernel's by default) with its modprobe.d configuration (and the
        kernel command line's ``modprobe.*`` options), as ``modprobe`` reads them;
        configuration errors go to ``report``."""
        from lkm.model.moddir import module_dir_path
        from lkm.model.modprobe_config import DEFAULT_PATHS, read_config
        from lkm.system.kernel import KernelModules

        kernel = kernel if kernel is not None else KernelModules()
        moddir = module_dir_path(root, version)
        config = read_config(
            moddir, config_paths or list(DEFAULT_PATHS), kernel.cmdline(),
            lambda message: report(LOG_ERR, f"{message}\n"),
        )  # fmt: skip
        return cls(moddir, config, kernel, report=report, show=show, env=env)

    def close(self) -> None:
        self.directory.close()

    def __enter__(self) -> Modprobe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the command ------------------------------------------------------------

    def run(self, request: Request, operands: list[str], emit: Emit) -> int:
        """``modprobe``'s work after its options: 0 or a negative errno.
        ``emit`` gets ``-R``'s lines."""
        resolver = Resolver(self.directory, self.config, self.report)
        engine = Engine(
            resolver, self.kernel, KernelActions(self.kernel, self.env), self.report, self.show
        )
        if request.remove:
            return self._remove_all(engine, request.remove_flags(), operands)
        if not request.use_all:
            extra = options_from_words(operands[1:])
            return self._insert(engine, request, operands[0], extra, emit)
        status = 0
        for name in operands:
            result = self._insert(engine, request, name, None, emit)
            if result < 0:
                status = result
        return status

    def _insert(
        self, engine: Engine, request: Request, name: str, extra: str | None, emit: Emit
    ) -> int:
        modules = self._modules_to_load(engine, name)
        if isinstance(modules, int):
            return modules
        if request.lookup_only:  # -R: nothing to load (a bulk caller's hot path)
            for module in modules:
                emit(f"{module.name}\n")
            return 0
        flags = request.load_flags()
        status = 0
        for module in modules:
            status = engine.probe(module, flags, extra)
            if status >= 0:
                status = 0  # a blacklisted module is not an error
            else:
                from lkm.system.kernel import insert_error_text

                reason = insert_error_text(-status, "modprobe")
                self.report(LOG_ERR, f"could not insert '{module.name}': {reason}\n")
                if request.explain_refusals:
                    self._explain(engine, module, -status, extra)
        return status

    def _explain(self, engine: Engine, module: Module, error: int, extra: str | None) -> None:
        """lkm: after the kernel refused a module, its reason as ``lkm check
        --running`` finds it, as notices (shown with ``-v``, which asks)."""
        from lkm.workflows.check import LOADER_ERRORS, explain

        path = engine.resolver.path(module) if error in LOADER_ERRORS else None
        if path is None:
            return

        options = _concat_options(engine.resolver.options(module), extra)
        for line in explain(path, options):
            self.report(LOG_NOTICE, f"{line}\n")

    def _modules_to_load(self, engine: Engine, name: str) -> list[Module] | int:
        """What ``name`` (a module, an alias or a file's path) loads; a
        negative errno, reported, when nothing."""
        if is_path_operand(name):
            try:
                os.stat(name)
            except OSError as exc:
                reason = os.strerror(exc.errno or 0)
                engine.report(LOG_TOOL, f"Failed to get module from path {name}: {reason}\n")
                return -errno.ENOENT
            return [engine.resolver.from_path(name)]
        try:
            modules = engine.resolver.lookup(name)
        except AliasError:
            modules = []
        if not modules:
            where = self.directory.path
            engine.report(LOG_TOOL, f"Module {name} not found in directory {where}\n")
            return -errno.ENOENT
        return modules

    def _remove_all(self, engine: Engine, flags: RemoveFlags, names: list[str]) -> int:
        status = 0
        for name in names:
            result = self._remove_one(engine, flags, name)
            if result < 0:
                status = result
        return status

    def _remove_one(self, engine: Engine, flags: RemoveFlags, name: str) -> int:
        try:
            modules = engine.resolver.lookup(name)
        except AliasError:
            return -errno.EINVAL
        if not modules:
            engine.report(LOG_TOOL, f"Module {name} not found.\n")
            return -errno.ENOENT
        for module in modules:
            result = engine.remove(module, flags, flags.remove_holders)
            if result < 0:
                return result  # kmod stops removing at the first failure
        return 0

    # -- one name, as data -------------------------------------------------------

    def resolve(self, name: str) -> list[str]:
        """Module names ``name`` resolves to (``modprobe -R``)."""
        return [m.name for m in Resolver(self.directory, self.config).lookup(name)]

    def plan_load(
        self, name: str, options: str | None = None, flags: LoadFlags = DEFAULT_LOAD
    ) -> Plan:
        """What ``modprobe NAME OPTIONS`` would do now (nothing is loaded);
        ``name`` may be a module file's path."""
        return self._execute(name, False, True, lambda e, m: e.probe(m, flags, options))

    def plan_remove(self, name: str, flags: RemoveFlags = DEFAULT_REMOVE) -> Plan:
        """What ``modprobe -r NAME`` would do now (nothing is unloaded)."""
        return self._execute(
            name, True, True, lambda e, m: e.remove(m, flags, flags.remove_holders)
        )

    def load(self, name: str, options: str | None = None, flags: LoadFlags = DEFAULT_LOAD) -> Plan:
        """Load ``name`` as ``modprobe`` does; the steps taken and the status."""
        return self._execute(name, False, False, lambda e, m: e.probe(m, flags, options))

    def remove(self, name: str, flags: RemoveFlags = DEFAULT_REMOVE) -> Plan:
        """Unload ``name`` as ``modprobe -r`` does."""
        return self._execute(
            name, True, False, lambda e, m: e.remove(m, flags, flags.remove_holders)
        )

    def _execute(
        self, name: str, removing: bool, simulate: bool, walk: Callable[[Engine, Module], int]
    ) -> Plan:
        steps: list[Step] = []
        messages: list[tuple[int, str]] = []

        def report(priority: int, text: str) -> None:
            messages.append((priority, one_line(text)))

        resolver = Resolver(self.directory, self.config, report)
        kernel: KernelView
        actions: Actions
        if simulate:
            kernel = state = SimulatedKernel.snapshot(self.kernel)
            actions = RecordingActions(state, resolver)
        else:
            kernel, actions = self.kernel, KernelActions(self.kernel, self.env)
        engine = Engine(resolver, kernel, actions, report, steps.append)
        status = self._walk(name, engine, walk, removing)
        return Plan(name, tuple(steps), status, tuple(messages))

    def _walk(
        self, name: str, engine: Engine, walk: Callable[[Engine, Module], int], removing: bool
    ) -> int:
        if removing:
            try:
                modules = engine.resolver.lookup(name)
            except AliasError:
                modules = []
            if not modules:
                engine.report(LOG_TOOL, f"Module {name} not found.\n")
                return -errno.ENOENT
        else:
            found = self._modules_to_load(engine, name)
            if isinstance(found, int):
                return found
            modules = found
        status = 0
        for module in modules:
            status = walk(engine, module)
            if status < 0 and removing:
                break  # kmod stops removing at the first failure, but tries every load
        return status


__all__ = [
    "BLACKLISTED",
    "BLACKLISTED_ALIAS",
    "Engine",
    "KernelActions",
    "LoadFlags",
    "Modprobe",
    "Module",
    "Plan",
    "RecordingActions",
    "RemoveFlags",
    "Request",
    "Resolver",
    "SimulatedKernel",
    "Step",
    "SymbolsUnreadable",
    "index_dump",
    "options_from_words",
    "parse_wait",
    "split_env_options",
    "symbol_crcs",
]
