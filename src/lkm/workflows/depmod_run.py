"""One depmod run, from settings to files, for the CLI and for library users.

:func:`run_depmod` does what kmod's depmod main() does after parsing its
options: the ``-A`` shortcut, kernel symbols for ``-e``, configuration,
discovery (whole tree or the given files), scanning (cached), resolving,
rendering and writing (or printing, for ``-n``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from lkm.errors import LkmError
from lkm.formats.kernel_symbols import parse_symvers, parse_system_map
from lkm.formats.kmod_index_writer import Layout
from lkm.formats.module_file import has_module_extension
from lkm.model.depmod_config import DepmodConfig, load_config
from lkm.workflows.depmod import (
    TEXT_FILES,
    DependencyCycle,
    KernelSymbols,
    Outputs,
    Resolved,
    render,
    resolve,
    write_outputs,
)
from lkm.workflows.depmod_discover import Discovery, module_array, read_modules_order

Report = Callable[[str, str], None]


class DepmodFatal(LkmError):
    """A FATAL condition: the message, then exit status 1."""


@dataclass
class DepmodSettings:
    """What a depmod run needs (kmod's options, as data)."""

    version: str
    basedir: str = ""
    moduledir: str = "/lib/modules"
    outdir: str | None = None
    all: bool = True
    quick: bool = False
    files: list[str] = field(default_factory=list)
    config: list[str] = field(default_factory=list)
    symvers: str | None = None
    system_map: str | None = None
    print_unknown: bool = False
    verbose: int = 0
    dry_run: bool = False
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
        if settings.print_unknown:
            report("WARNING", "-e needs -E or -F")
            settings.print_unknown = False
        return KernelSymbols()
    try:
        with open(source, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except OSError as exc:
        raise DepmodFatal(f"could not load {source}: {exc.strerror}") from None
    parser = parse_symvers if settings.symvers else parse_system_map
    crcs, messages = parser(text, source, settings.prefix)
    for level, message in messages:
        report(level, message)
    return KernelSymbols(crcs, check_crcs=settings.symvers is not None, loaded=True)


def _discover(settings: DepmodSettings, report: Report) -> Discovery:
    moddir = settings.input_dir
    if settings.all:
        config = load_config(settings.version, settings.config or None)
        for level, message in config.messages:
            report(level, message)
        discovery = Discovery(moddir, config, report)
        try:
            discovery.search_all()
        except OSError as exc:
            raise DepmodFatal(f"could not search modules: {exc.strerror}") from None
        return discovery
    discovery = Discovery(moddir, DepmodConfig(), report)
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


def _builtin_inputs(moddir: str) -> list[bytes | None]:
    inputs: list[bytes | None] = []
    for name in ("modules.builtin", "modules.builtin.modinfo"):
        try:
            with open(f"{moddir}/{name}", "rb") as f:
                inputs.append(f.read())
        except OSError:
            inputs.append(None)
    return inputs


def _render_or_reuse(
    settings: DepmodSettings, resolved: Resolved, moddir: str, report: Report
) -> Outputs:
    """Render, or take last run's files when every input is the same."""
    binary = not settings.dry_run
    if not settings.use_cache or not binary:
        return render(resolved, moddir, report, settings.layout, settings.warn_dups, binary)
    from lkm.workflows.depmod_cache import load_outputs, outputs_key, save_outputs

    key = outputs_key(
        (
            settings.layout.value,
            settings.warn_dups,
            settings.prefix,
            moddir,
            [(m.name, m.path, m.relpath) for m in resolved.modules],
            [None if f is None else (f.modinfo, f.exports, f.needed) for f in resolved.facts],
            _builtin_inputs(moddir),
        )
    )
    cached = load_outputs(settings.cache_dir, moddir, key)
    if cached is not None:
        files, replayed = cached
        for level, text in replayed:
            report(level, text)
        return Outputs(files)
    captured: list[tuple[str, str]] = []

    def capture(level: str, text: str) -> None:
        captured.append((level, text))
        report(level, text)

    outputs = render(resolved, moddir, capture, settings.layout, settings.warn_dups, binary)
    save_outputs(settings.cache_dir, moddir, key, outputs.files, captured, report)
    return outputs


def run_depmod(
    settings: DepmodSettings,
    report: Report,
    show: Callable[[str], None] | None = None,
    stdout: Callable[[bytes], None] | None = None,
) -> int:
    """One run; returns the exit status. Raises DepmodFatal (or another
    LkmError) for FATAL errors. ``settings`` is not changed."""
    settings = replace(settings)
    moddir = settings.input_dir
    if settings.quick:
        if settings.dry_run or up_to_date(moddir, report):
            return 0
        settings.all = True
    kernel = _kernel_symbols(settings, report)
    discovery = _discover(settings, report)
    modules = module_array(discovery.found, read_modules_order(moddir, report))
    from lkm.workflows.depmod_cache import scan_with_cache

    results = scan_with_cache(modules, settings.use_cache, settings.cache_dir, report, moddir)
    try:
        resolved = resolve(
            modules,
            results,
            kernel,
            report,
            show if settings.verbose else None,
            settings.print_unknown,
            settings.prefix,
        )
    except DependencyCycle as cycle:
        for line in cycle.lines:
            report("ERROR", line)
        return 1
    outputs = _render_or_reuse(settings, resolved, moddir, report)
    if settings.dry_run:
        if stdout is not None:
            stdout(b"".join(outputs.files[name] or b"" for name in TEXT_FILES))
        return 0
    try:
        write_outputs(outputs, settings.output_dir)
    except OSError as exc:
        raise DepmodFatal(
            f"could not write the indexes in {settings.output_dir}: {exc.strerror or exc}"
        ) from None
    return 0
