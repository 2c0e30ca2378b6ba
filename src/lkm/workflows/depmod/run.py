"""One depmod run, from settings to files, for the CLI and for library users.

:func:`run_depmod` does what kmod's depmod main() does after parsing its
options: the ``-A`` shortcut, kernel symbols for ``-e``, configuration,
discovery (whole tree or the given files), scanning (cached), resolving,
rendering and writing (or printing, for ``-n``).
"""

from __future__ import annotations

import marshal
import os
from collections.abc import Callable

from lkm.errors import LkmError
from lkm.formats.kmod_index_layout import Layout
from lkm.formats.module_names import has_module_extension
from lkm.model.depmod_config import DepmodConfig, load_config
from lkm.records import Record
from lkm.system.files import KERNEL_SYMBOLS, read_file
from lkm.workflows.depmod.discover import Discovery, module_array, read_modules_order
from lkm.workflows.depmod.resolve import (
    DependencyCycle,
    KernelSymbols,
    Resolved,
    SymbolChecks,
    readable_facts,
    resolve,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from lkm.system.fork import Worker
    from lkm.workflows.depmod.cache import DepmodCache, Identity
    from lkm.workflows.depmod.discover import FoundModule
    from lkm.workflows.depmod.facts import ModuleFacts, ScanFailure

    # Imported where used: a run that finds its files current (see
    # lkm.workflows.depmod.state) loads neither the renderers nor the writer.
    from lkm.workflows.depmod.render import Outputs, RenderedGroup, Rendering
    from lkm.workflows.depmod.state import TreeState

Report = Callable[[str, str], None]


class DepmodFatal(LkmError):
    """A FATAL condition: the message, then exit status 1."""


class DepmodResult(Record, frozen=False):
    """How a run ended (``status``, kmod's exit status) and what it made
    on the way: the modules in kmod's order, each one's facts (None:
    unreadable), the rendering (resolved dependencies and symbols, when
    they were needed) and the files (None when last run's were reused as
    they were or the run ended early)."""

    status: int
    modules: list[FoundModule] | None = None
    facts: list[ModuleFacts | None] | None = None
    rendering: Rendering | None = None
    outputs: Outputs | None = None
    groups: dict[str, RenderedGroup] | None = None  # rendered without the cache


class DepmodSettings(Record):
    """What a depmod run needs (kmod's options, as data); change a copy
    with ``replace``."""

    version: str
    basedir: str = ""
    moduledir: str = "/lib/modules"
    outdir: str | None = None
    all: bool = True
    quick: bool = False
    files: tuple[str, ...] = ()
    config: tuple[str, ...] = ()
    symvers: str | None = None
    system_map: str | None = None
    print_unknown: bool = False
    verbose: int = 0
    dry_run: bool = False
    json: bool = False  # lkm depmod --json: the CLI prints the records (implies dry_run)
    prefix: str | None = None
    warn_dups: bool = False
    use_cache: bool = True
    cache_dir: str | None = None
    layout: Layout = Layout.PRE_ORDER

    @property
    def input_dir(self) -> str:
        return f"{self.basedir}/{self.moduledir.lstrip('/')}/{self.version}"

    @property
    def output_dir(self) -> str:
        root = self.outdir if self.outdir is not None else self.basedir
        return f"{root}/{self.moduledir.lstrip('/')}/{self.version}"


def up_to_date(moddir: str, report: Report) -> bool:
    """-A: no module file is newer than modules.dep (whole seconds)."""
    try:
        reference = int(os.stat(f"{moddir}/modules.dep").st_mtime)
    except OSError as exc:
        report("ERROR", f"could not fstatat({moddir}, modules.dep): {exc.strerror}")
        return False
    stack = [moddir]
    while stack:
        directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as exc:
            report("ERROR", f"could not open directory {directory}: {exc.strerror}")
            return False
        for entry in entries:
            if entry.name in (".", "..", "build", "source"):
                continue
            try:
                if entry.is_dir():
                    stack.append(entry.path)
                elif has_module_extension(entry.name) and int(entry.stat().st_mtime) > reference:
                    return False
            except OSError:
                continue
    return True


def _kernel_symbols(settings: DepmodSettings, report: Report) -> KernelSymbols:
    source = settings.symvers or settings.system_map
    if source is None:
        return KernelSymbols()
    try:
        # kmod reads with fopen and fgets: a directory is an empty file
        # there (the first fgets fails), anything else is read to its end.
        data = read_file(source, KERNEL_SYMBOLS)
    except OSError as exc:
        raise DepmodFatal(f"could not load {source}: {exc.strerror}") from None
    from lkm.formats.kernel_symbols import parse_symvers, parse_system_map

    parser = parse_symvers if settings.symvers else parse_system_map
    crcs, messages = parser(data, source, settings.prefix)
    for level, message in messages:
        report(level, message)
    return KernelSymbols(crcs, check_crcs=settings.symvers is not None, loaded=True)


def _config(settings: DepmodSettings, report: Report) -> DepmodConfig:
    """depmod.d's directives (none in file mode), their messages reported."""
    if not settings.all:
        return DepmodConfig()
    config = load_config(settings.version, list(settings.config) or None)
    for level, message in config.messages:
        report(level, message)
    return config


def _discover(
    settings: DepmodSettings, config: DepmodConfig, report: Report, track: bool = False
) -> Discovery:
    moddir = settings.input_dir
    discovery = Discovery(moddir, config, report, track)
    if settings.all:
        try:
            discovery.search_all()
        except OSError as exc:
            raise DepmodFatal(f"could not search modules: {exc.strerror}") from None
        return discovery
    for path in settings.files:
        if not path.startswith("/"):
            raise DepmodFatal(f"{path}: not absolute path.")
        try:
            os.stat(path)
        except OSError as exc:
            raise DepmodFatal(f"could not create module {path}: {exc.strerror}") from None
        try:
            discovery.add_file(path)
        except FileExistsError:
            raise DepmodFatal(f"could not add module {path}: File exists") from None
    return discovery


def _options(settings: DepmodSettings) -> tuple[object, ...]:
    """The options that change rendered outputs (for the cache's basis)."""
    return (settings.layout.value, settings.warn_dups, settings.prefix)


def _needs_resolving(settings: DepmodSettings) -> bool:
    """Whether resolving must run even when no module changed: for its
    messages (-e, -v) or to print the files (-n)."""
    return settings.dry_run or settings.print_unknown or settings.verbose > 0


def _symbol_checks(
    settings: DepmodSettings, show: Callable[[str], None] | None = None
) -> SymbolChecks | None:
    """What resolving checks beyond dependencies (-e, -v, -P); None when
    nothing, so that an uncached scan can leave CRCs and weak flags out
    (:func:`~lkm.workflows.depmod.scan.read_facts`): scan and resolve
    both follow this one answer."""
    if not (settings.print_unknown or settings.verbose or settings.prefix):
        return None
    return SymbolChecks(show if settings.verbose else None, settings.print_unknown, settings.prefix)


def _write(outputs: Outputs, settings: DepmodSettings) -> int:
    from lkm.workflows.depmod.write import write_outputs

    try:
        write_outputs(outputs, settings.output_dir)
    except OSError as exc:
        where = exc.filename or settings.output_dir
        raise DepmodFatal(f"could not write {where}: {exc.strerror or exc}") from None
    return 0


def run_depmod(
    settings: DepmodSettings,
    report: Report,
    show: Callable[[str], None] | None = None,
    stdout: Callable[[bytes], None] | None = None,
) -> DepmodResult:
    """One run: its exit status and what it made. Raises DepmodFatal (or
    another LkmError) for FATAL errors."""
    moddir = settings.input_dir
    if settings.quick:
        if settings.dry_run or up_to_date(moddir, report):
            return DepmodResult(0)
        settings = settings.replace(all=True)
    if settings.print_unknown and not (settings.symvers or settings.system_map):
        report("WARNING", "-e needs -E or -F")
        settings = settings.replace(print_unknown=False)
    kernel = _kernel_symbols(settings, report)
    config = _config(settings, report)
    cache_dir = _cache_dir(settings)
    watch: _StateWatch | None = None
    if cache_dir is not None and _state_applies(settings):
        from lkm.workflows.depmod.state import TreeState

        key = _state_key(settings, config)
        if _files_current(cache_dir, moddir, key, report):
            return DepmodResult(0)
        watch = _StateWatch(report, TreeState(key, settings.output_dir, _list_files(moddir)))
        report = watch
    discovery = _discover(settings, config, report, track=watch is not None)
    modules = module_array(discovery.found, read_modules_order(moddir, report))
    if watch is not None:
        watch.discovery, watch.modules = discovery, modules
    binary = not settings.dry_run
    helper: Worker | None = None
    cache, first_run = _open_cache(settings, cache_dir, modules, report)
    first_identities = _identities(modules) if first_run is not None else []
    if cache is not None:
        scanned = cache.scan(modules)
        if scanned.unchanged and not _needs_resolving(settings):
            # No module's facts changed: last run's outputs still hold
            # if nothing else they depend on did.
            cache.save_index(scanned)
            reused = cache.reuse_outputs(cache.basis(modules, _options(settings)))
            if reused is not None:
                status = _write_reused(reused, settings, report, cache, watch)
                return DepmodResult(status, modules)
        results = scanned.results()
        cache.save_index(scanned)
    else:
        results, helper = _scan_uncached(modules, settings, binary)
    result = DepmodResult(1, modules, readable_facts(modules, results, report))
    try:
        result.status = _resolve_and_render(
            settings, result, kernel, cache, helper, report, show, stdout
        )
        if first_run is not None and result.status == 0 and result.groups is not None:
            _cache_first_run(first_run, settings, result, results, first_identities)
        used = cache or first_run
        if watch is not None and used is not None and result.status == 0 and result.outputs:
            watch.save(used, result.outputs)
    finally:
        if helper is not None:
            helper.close()
        for used in (cache, first_run):
            if used is not None:
                used.finish()
    return result


def _open_cache(
    settings: DepmodSettings, cache_dir: str | None, modules: list[FoundModule], report: Report
) -> tuple[DepmodCache | None, DepmodCache | None]:
    """The cache to scan with, or (None, the cache) for a first run: one
    with nothing stored of use runs as --no-cache does (both cores, lean
    facts) and caches what it made afterwards."""
    if cache_dir is None:
        return None, None
    from lkm.workflows.depmod.cache import DepmodCache

    full = _symbol_checks(settings) is not None
    cache = DepmodCache(cache_dir, settings.input_dir, report, full_facts=full)
    if settings.dry_run or full or cache.knows_any(modules):
        return cache, None
    report("DEBUG", f"lkm cache: first run, read {len(modules)} of {len(modules)} modules")
    return None, cache


def _write_reused(
    reused: dict[str, RenderedGroup],
    settings: DepmodSettings,
    report: Report,
    cache: DepmodCache,
    watch: _StateWatch | None,
) -> int:
    """Write last run's files again (no module's facts changed); the status."""
    from lkm.workflows.depmod.render import merge_groups

    outputs = merge_groups(reused, report)
    status = _write(outputs, settings)
    if watch is not None and status == 0:
        watch.save(cache, outputs)
    cache.finish()
    return status


def _state_applies(settings: DepmodSettings) -> bool:
    """Whether a run may end early when its files are current (see
    :mod:`~lkm.workflows.depmod.state`): a whole tree's files written,
    none of the checks or listings that are made afresh every time."""
    plain = not (settings.symvers or settings.system_map or _symbol_checks(settings))
    return plain and settings.all and not settings.dry_run and not _needs_resolving(settings)


def _state_key(settings: DepmodSettings, config: DepmodConfig) -> tuple[object, ...]:
    """What, besides the files, a run's outputs are made from."""
    from lkm.workflows.depmod.cache import canonical

    directives = (
        tuple((search.kind, search.path) for search in config.searches),
        tuple(config.overrides),
        tuple(config.externals),
        tuple(config.excludes),
    )
    where = (canonical(settings.input_dir), canonical(settings.output_dir))
    return (where, _options(settings), directives)


def _list_files(moddir: str) -> list[str]:
    """The lists a run reads beside the modules."""
    from lkm.workflows.depmod.render import BUILTIN_INPUTS

    return [f"{moddir}/modules.order", *(f"{moddir}/{name}" for name in BUILTIN_INPUTS.values())]


def _files_current(cache_dir: str, moddir: str, key: tuple[object, ...], report: Report) -> bool:
    """Whether the state stored after the last run that wrote the files
    still holds (then there is nothing to do; the tree marked used)."""
    from lkm.workflows.depmod.cache import canonical, mark_used
    from lkm.workflows.depmod.state import current_modules, state_path

    tree = canonical(moddir)
    count = current_modules(state_path(cache_dir, tree), tree, key)
    if count is None:
        return False
    report("DEBUG", f"lkm cache: read 0 of {count} modules")
    report("DEBUG", "lkm cache: every input and output as the last run left them, nothing written")
    mark_used(cache_dir, tree)
    return True


class _StateWatch:
    """Passes a run's messages on and collects its tree's state, saved
    after a run that wrote every file and said nothing beyond debug notes
    (so that a run with something to say always says it afresh)."""

    def __init__(self, report: Report, state: TreeState) -> None:
        self.report = report
        self.state = state
        self.said = False
        self.discovery: Discovery | None = None  # the search, once made
        self.modules: list[FoundModule] = []

    def __call__(self, level: str, message: str) -> None:
        self.said = self.said or level != "DEBUG"
        self.report(level, message)

    def save(self, cache: DepmodCache, outputs: Outputs) -> None:
        from lkm.workflows.depmod.cache import canonical

        state, discovery, modules = self.state, self.discovery, self.modules
        if discovery is None:
            return
        entries = cache.entries
        identities = [entries.get(canonical(m.path)) for m in modules]
        written = [name for name, data in outputs.files.items() if data is not None]
        if (
            self.said
            or not state.add_search(discovery.walked, discovery.links, discovery.top_names)
            or not state.add_modules(
                [m.path for m in modules], [None if i is None else i[:5] for i in identities]
            )
            or not state.add_written(state.outdir, written)
        ):
            return
        cache.save_state(state)


def _identities(modules: list[FoundModule]) -> list[Identity | None]:
    """What a first run caches each module's facts under: its identity
    before the scan reads it (taken after, a module replaced meanwhile
    would be stored with the facts of the file it replaced)."""
    from lkm.workflows.depmod.cache import identity

    return [identity(m.path) for m in modules]


def _cache_first_run(
    cache: DepmodCache,
    settings: DepmodSettings,
    result: DepmodResult,
    results: list[ModuleFacts | ScanFailure],
    identities: list[Identity | None],
) -> None:
    """Store what a first run made, after its files are written: the
    groups rendered here keyed by their inputs' digest, the helper's with
    none (rendered again when a change next needs it)."""
    from lkm.workflows.depmod.cache import input_digest
    from lkm.workflows.depmod.render import RESOLVED_GROUPS

    rendering, groups = result.rendering, result.groups
    assert rendering is not None and result.modules is not None and groups is not None
    keyed = {
        name: (input_digest(rendering, name) if name in RESOLVED_GROUPS else b"", group)
        for name, group in groups.items()
    }
    cache.save_first_run(result.modules, results, identities, keyed, _options(settings))


def _cache_dir(settings: DepmodSettings) -> str | None:
    """Where this run caches (None: it does not; see
    :func:`~lkm.workflows.depmod.cache.default_cache_dir`)."""
    if not settings.use_cache:
        return None
    if settings.cache_dir is not None:
        return settings.cache_dir
    from lkm.workflows.depmod.cache import default_cache_dir

    return default_cache_dir(settings.basedir)


def _scan_uncached(
    modules: list[FoundModule], settings: DepmodSettings, binary: bool
) -> tuple[list[ModuleFacts | ScanFailure], Worker | None]:
    """Every module's facts, and the helper process rendering the groups
    that need no resolving (None: render them here)."""
    from lkm.workflows.depmod.render import read_builtin_inputs, render_unresolved_groups
    from lkm.workflows.depmod.scan import scan, scan_sharing

    paths = [m.path for m in modules]
    lean = _symbol_checks(settings) is None
    if binary:
        builtins = read_builtin_inputs(settings.input_dir)
        layout, warn_dups = settings.layout, settings.warn_dups

        def render_others(modinfos: list[str | None]) -> bytes:
            groups = render_unresolved_groups(modules, modinfos, builtins, layout, warn_dups)
            return marshal.dumps(groups)

        shared = scan_sharing(paths, lean, render_others)
        if shared is not None:
            return shared
    return scan(paths, lean), None


def _resolve_and_render(
    settings: DepmodSettings,
    result: DepmodResult,
    kernel: KernelSymbols,
    cache: DepmodCache | None,
    helper: Worker | None,
    report: Report,
    show: Callable[[str], None] | None,
    stdout: Callable[[bytes], None] | None,
) -> int:
    """Resolve, render and write (or print) into ``result``; the status."""
    from lkm.workflows.depmod.render import (
        GROUPS,
        RESOLVED_GROUPS,
        TEXT_FILES,
        Rendering,
        merge_groups,
        read_builtin_inputs,
        render_groups,
    )

    moddir = settings.input_dir
    modules, facts = result.modules, result.facts
    assert modules is not None and facts is not None

    def resolver() -> Resolved:
        return resolve(modules, facts, kernel, report, _symbol_checks(settings, show))

    binary = not settings.dry_run
    basis = cache.basis(modules, _options(settings)) if cache and binary else None
    # The built-in lists are read after the basis took their identities;
    # with a helper, it renders the groups made from them.
    builtins = read_builtin_inputs(moddir) if binary and helper is None else {}
    result.rendering = rendering = Rendering(
        modules, facts, resolver, builtins, settings.layout, settings.warn_dups, binary
    )
    try:
        if cache is not None and basis is not None:
            outputs = merge_groups(cache.render(rendering, basis), report)
        elif helper is not None:
            mine = {group: rendering.render(group) for group in RESOLVED_GROUPS}
            theirs: dict[str, RenderedGroup] = marshal.loads(helper.receive())
            result.groups = {**mine, **theirs}
            outputs = merge_groups(result.groups, report)
        else:
            result.groups = render_groups(rendering, tuple(GROUPS))
            outputs = merge_groups(result.groups, report)
    except DependencyCycle as cycle:
        for line in cycle.lines:
            report("ERROR", line)
        return 1
    result.outputs = outputs
    if settings.dry_run:
        if stdout is not None:
            stdout(b"".join(outputs.files[name] or b"" for name in TEXT_FILES))
        return 0
    status = _write(outputs, settings)
    if helper is not None:
        # Reaped only now: its exit (unmapping all it had) ran meanwhile.
        helper.finish()
    return status
