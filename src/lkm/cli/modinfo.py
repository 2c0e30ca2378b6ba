"""``modinfo``: kmod-compatible module information, plus ``--json``.

Output is kmod's byte for byte (tools/modinfo.c in kmod 30): keys padded to
16 columns, ``parm``/``parmtype`` merged and printed last (most recently
first-seen parameter first, because kmod keeps them on a push-front list),
signature fields after the ``.modinfo`` ones, ``-0`` printing
``key=value\\0``. Exit status 0 when every argument worked, 1 otherwise.

Deliberate differences: an unreadable module prints one error line naming
the file and the problem and nothing on stdout (kmod prints the filename
line, then a vaguer error); a malformed index is reported, where kmod
treats it as absent.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

from lkm.cli.options import UsageError, error_line, parse, version_text
from lkm.cli.workers import run_split
from lkm.errors import AliasError, LkmError
from lkm.formats.module_file import (
    ModuleFile,
    has_module_extension,
    module_name_from_path,
    open_module,
)
from lkm.model.moddir import ModuleDirectory, ModuleRef, make_absolute
from lkm.model.modinfo import Parameter, info_entries, info_parts, merge_parameters
from lkm.records import Record
from lkm.records import field as records_field

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)

if TYPE_CHECKING:
    from typing import Any, BinaryIO

    WarnFn = Callable[[str], None]

PROG = "modinfo"
# A module is read by position, its last 8 KiB at once: the section table,
# section names and signature lie there (at most 7.5 KiB in Debian's 6.1
# tree), so .modinfo costs one more read. A whole tree read this way takes
# about half the system time of mapping each file.
TAIL_READ = 8192
SHORTOPTS = "adlpn0mF:k:b:Vh"
LONGOPTS = (
    "author",
    "description",
    "license",
    "parameters",
    "filename",
    "null",
    "modname",
    "field=",
    "set-version=",
    "basedir=",
    "version",
    "help",
    "json",
)
_FIELD_OPTIONS = {
    "-a": "author",
    "--author": "author",
    "-d": "description",
    "--description": "description",
    "-l": "license",
    "--license": "license",
    "-p": "parm",
    "--parameters": "parm",
    "-n": "filename",
    "--filename": "filename",
}

HELP = """\
Usage:
\t{prog} [options] <modulename|filename> [args]
Options:
\t-a, --author                Print only 'author'
\t-d, --description           Print only 'description'
\t-l, --license               Print only 'license'
\t-p, --parameters            Print only 'parm'
\t-n, --filename              Print only 'filename'
\t-0, --null                  Use \\0 instead of \\n
\t-m, --modname               Handle argument as module name instead of alias or filename
\t-F, --field=FIELD           Print only provided FIELD
\t-k, --set-version=VERSION   Use VERSION instead of `uname -r`
\t-b, --basedir=DIR           Use DIR as filesystem root for /lib/modules
\t    --json                  Print JSON (an lkm extension)
\t-V, --version               Show version
\t-h, --help                  Show this help
"""


class Options(Record, frozen=False):
    """The command line, filled in option by option."""

    field: str | None = None
    separator: str = "\n"
    by_name: bool = False
    kernel: str | None = None
    basedir: str | None = None
    json: bool = False
    names: list[str] = records_field(default_factory=list)


class Failed(Exception):
    """One argument failed; the message is already the whole error line."""


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


_HEADS: dict[str, str] = {}


def _head(key: str) -> str:
    """``key:`` plus the spaces that start the value in column 17.

    kmod prints ``printf("%s:%-*s", key, 15 - strlen(key), "")``: a negative
    width means left-justified, so a key longer than 15 bytes gets
    (strlen - 15) spaces, not none.
    """
    head = _HEADS.get(key)
    if head is None:
        head = _HEADS[key] = f"{key}:" + " " * abs(15 - len(_encode(key)))
    return head


_FILENAME_HEAD = f"{'filename:':<16}"


class ChunkedWriter:
    """Collects output and writes it in large pieces.

    One write per module would be one system call per module when Python
    runs unbuffered (PYTHONUNBUFFERED), which dominates over a whole tree.
    """

    LIMIT = 1 << 20

    def __init__(self, out: BinaryIO) -> None:
        self.target = out
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> None:
        self.parts.append(data)
        self.size += len(data)
        if self.size >= self.LIMIT:
            self.flush()

    def flush(self) -> None:
        if self.parts:
            self.target.write(b"".join(self.parts))
            self.parts.clear()
            self.size = 0
        self.target.flush()


class Printer:
    """Writes one module's information in kmod's layout."""

    def __init__(self, out: ChunkedWriter, opts: Options) -> None:
        self.out = out
        self.field = opts.field
        self.sep = opts.separator

    def module(
        self,
        name: str,
        filename: str,
        builtin: bool,
        entries: list[tuple[str, str]] | None,
        warn: Callable[[str], None],
    ) -> None:
        sep, fld = self.sep, self.field
        parts: list[str] = []
        if builtin:
            if fld is None:
                parts.append(f"{'name:':<16}{name}{sep}")
            elif fld == "name":
                parts.append(f"{name}{sep}")
        if fld == "filename":
            parts.append(f"{filename}{sep}")
            self.out.write(_encode("".join(parts)))
            return
        if fld is None:
            parts.append(f"{_FILENAME_HEAD}{filename}{sep}")
        entries = entries or []
        if fld == "parm":
            params, warnings = merge_parameters(entries)
            for text in warnings:
                warn(text)
            parts.extend(_param_line(p, sep, prefix=False) for p in reversed(params))
        elif fld is not None:
            parts.extend(f"{value}{sep}" for key, value in entries if key == fld)
        else:
            parts.extend(self._entry_lines(entries, warn))
        self.out.write(_encode("".join(parts)))

    def listing(
        self, filename: str, text: str, signature: list[tuple[str, str]], warn: WarnFn
    ) -> None:
        """A module file's whole listing (no field chosen), its lines made
        straight from its ``.modinfo`` text (see :func:`info_parts`): no
        (key, value) pair per entry, for each of thousands of modules."""
        sep = self.sep
        # kmod keeps empty strings out; "key" alone is key with value "".
        split = [item.partition("=") for item in text.split("\0") if item]
        if sep == "\0":
            lines = [f"{k}={v}\0" for k, _, v in split if k != "parm" and k != "parmtype"]
        else:
            heads = _HEADS
            lines = [
                f"{heads.get(k) or _head(k)}{v}\n"
                for k, _, v in split
                if k != "parm" and k != "parmtype"
            ]
        lines += self._entry_lines(signature, warn)  # never parameters
        if len(lines) != len(split) + len(signature):  # parameters, printed last
            params = [(k, v) for k, _, v in split if k == "parm" or k == "parmtype"]
            lines += self._param_lines(params, warn)
        self.out.write(_encode(f"{_FILENAME_HEAD}{filename}{sep}{''.join(lines)}"))

    def _param_lines(self, entries: list[tuple[str, str]], warn: WarnFn) -> list[str]:
        params, warnings = merge_parameters(entries)
        for text in warnings:
            warn(text)
        return [_param_line(p, self.sep, prefix=True) for p in reversed(params)]

    def _entry_lines(
        self, entries: list[tuple[str, str]], warn: Callable[[str], None]
    ) -> list[str]:
        heads = _HEADS
        # One comprehension per layout: this runs for each of ~20 entries
        # of thousands of modules.
        if self.sep == "\0":
            lines = [f"{k}={v}\0" for k, v in entries if k != "parm" and k != "parmtype"]
        else:
            lines = [
                f"{heads.get(k) or _head(k)}{v}\n"
                for k, v in entries
                if k != "parm" and k != "parmtype"
            ]
        if len(lines) != len(entries):  # parameters, printed last
            lines += self._param_lines(entries, warn)
        return lines


_PARM_HEAD = f"{'parm:':<16}"


def _param_line(param: Parameter, sep: str, prefix: bool) -> str:
    head = _PARM_HEAD if prefix else ""
    if param.description is None:
        # kmod: "parm: NAME:TYPE" in the full listing, "NAME: (TYPE)" for -p.
        body = f"{param.name}:{param.type}" if prefix else f"{param.name}: ({param.type})"
    elif param.type is not None:
        body = f"{param.name}:{param.description} ({param.type})"
    else:
        body = f"{param.name}:{param.description}"
    return f"{head}{body}{sep}"


class Modinfo:
    """One modinfo run over its arguments."""

    def __init__(self, opts: Options, out: BinaryIO, err: BinaryIO) -> None:
        self.opts = opts
        self.out = ChunkedWriter(out)
        self.err = err
        self.printer = Printer(self.out, opts)
        self.moddir = ModuleDirectory(_module_dir(opts))
        self.json_items: list[dict[str, Any]] = []

    def error(self, message: str) -> None:
        # Keep stdout and stderr in order for a reader of both.
        self.out.flush()
        self.err.write(error_line(PROG, message))

    def run(self) -> int:
        status = 0
        try:
            for name in self.opts.names:
                try:
                    self.one(name)
                except (Failed, LkmError) as exc:
                    self.error(str(exc))
                    status = 1
        finally:
            self.moddir.close()
        if self.opts.json:
            from lkm.cli.json_output import write_array

            write_array(self.out, self.json_items)
        self.out.flush()
        return status

    def one(self, arg: str) -> None:
        if self.opts.by_name:
            ref = self.moddir.lookup_name(arg)
            if ref is None:
                raise Failed(f"Module name {arg} not found.")
            self.show(ref)
        elif _is_module_filename(arg):
            self.show_file(arg)
        else:
            try:
                refs = self.moddir.lookup(arg)
            except AliasError:
                raise Failed(f"Module alias {arg} not found.") from None
            if not refs:
                raise Failed(f"Module {arg} not found.")
            failure: Failed | LkmError | None = None
            for ref in refs:
                try:
                    self.show(ref)
                except (Failed, LkmError) as exc:
                    # Like kmod: report, go on with the other matches.
                    if failure is not None:
                        self.error(str(failure))
                    failure = exc
            if failure is not None:
                raise failure

    def show_file(self, path: str) -> None:
        absolute = make_absolute(path)
        if self.opts.field is None and not self.opts.json:
            self.show_listing(absolute, path)  # the listing has no use for the name
            return
        ref = ModuleRef(module_name_from_path(path), absolute, False)
        self.show(ref, source=path)

    def show(self, ref: ModuleRef, source: str | None = None) -> None:
        if ref.path is None:
            self.show_builtin(ref)
            return
        if self.opts.field == "filename" and not self.opts.json:
            # kmod answers -n without reading the module.
            self.printer.module(ref.name, ref.path, False, None, self.warn)
            return
        if self.opts.field is None and not self.opts.json:
            self.show_listing(ref.path, source)
            return
        with open_module(source or ref.path, mapped=False, tail=TAIL_READ) as module:
            entries = self._entries(module)
        self.emit(ref.name, ref.path, False, entries)

    def show_listing(self, path: str, source: str | None) -> None:
        """The plain listing of a module file: the common case, a whole
        tree's modules at once, made without a pair per entry."""
        with open_module(source or path, mapped=False, tail=TAIL_READ) as module:
            parts = info_parts(module)
            if parts is None:
                raise Failed(f"{module.path}: no .modinfo section")
        self.printer.listing(path, *parts, self.warn)

    def _entries(self, module: ModuleFile) -> list[tuple[str, str]]:
        entries = info_entries(module)
        if entries is None:
            raise Failed(f"{module.path}: no .modinfo section")
        return entries

    def show_builtin(self, ref: ModuleRef) -> None:
        if not ref.builtin and not self.moddir.is_builtin(ref.name):
            raise Failed(f"{ref.name}: listed in an index but not in modules.dep nor built in")
        try:
            entries = self.moddir.builtin_modinfo(ref.name)
        except FileNotFoundError:
            # An old kernel without modules.builtin.modinfo: kmod shows
            # just the name and filename.
            entries = []
        else:
            if entries is None:
                raise Failed(
                    f"{self.moddir.path}/modules.builtin.modinfo: "
                    f"no entry for built-in module {ref.name}"
                )
        self.emit(ref.name, "(builtin)", True, entries)

    def emit(self, name: str, filename: str, builtin: bool, entries: list[tuple[str, str]]) -> None:
        if self.opts.json:
            self.json_items.append(_json_item(name, filename, builtin, entries, self.opts.field))
        else:
            self.printer.module(name, filename, builtin, entries, self.warn)

    def warn(self, text: str) -> None:
        self.error(text)


def _json_item(
    name: str, filename: str, builtin: bool, entries: list[tuple[str, str]], only: str | None
) -> dict[str, Any]:
    params, _ = merge_parameters(entries)
    signature = {k: v for k, v in entries if k.startswith("sig") or k == "signer"}
    return {
        "module": name,
        "path": None if builtin else filename,
        "builtin": builtin,
        "fields": [{"key": k, "value": v} for k, v in entries if only is None or k == only],
        "parameters": [
            {"name": p.name, "description": p.description, "type": p.type} for p in params
        ],
        "signature": {
            "id_type": signature.get("sig_id"),
            "signer": signature.get("signer"),
            "key": signature.get("sig_key", "").replace("\n\t\t", ""),
            "hash_algorithm": signature.get("sig_hashalgo"),
            "signature": signature.get("signature", "").replace("\n\t\t", ""),
        }
        if signature
        else None,
    }


def _module_dir(opts: Options) -> str:
    if opts.basedir is None and opts.kernel is None:
        return f"/lib/modules/{os.uname().release}"
    return make_absolute(f"{opts.basedir or ''}/lib/modules/{opts.kernel or os.uname().release}")


def _is_module_filename(name: str) -> bool:
    """kmod treats an argument as a file when it is a regular file with a
    module extension; anything else is looked up as a name or alias."""
    try:
        st = os.stat(name)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and has_module_extension(name)


def parse_args(args: list[str], argv0: str = PROG) -> Options:
    opts = Options()
    parsed, names = parse(argv0, args, SHORTOPTS, LONGOPTS)
    for opt, value in parsed:
        if opt in _FIELD_OPTIONS:
            opts.field = _FIELD_OPTIONS[opt]
        elif opt in ("-0", "--null"):
            opts.separator = "\0"
        elif opt in ("-m", "--modname"):
            opts.by_name = True
        elif opt in ("-F", "--field"):
            opts.field = value
        elif opt in ("-k", "--set-version"):
            opts.kernel = value
        elif opt in ("-b", "--basedir"):
            opts.basedir = value
        elif opt == "--json":
            opts.json = True
        elif opt in ("-h", "--help"):
            raise _Exit(HELP.format(prog=PROG), 0)
        elif opt in ("-V", "--version"):
            raise _Exit(version_text(), 0)
    opts.names = names
    return opts


class _Exit(Exception):
    def __init__(self, text: str, status: int) -> None:
        super().__init__(text)
        self.text = text
        self.status = status


def run(args: list[str], out: BinaryIO, err: BinaryIO, argv0: str = PROG) -> int:
    try:
        opts = parse_args(args, argv0)
    except UsageError as exc:
        err.write(_encode(f"{exc}\n"))
        return 1
    except _Exit as done:
        out.write(_encode(done.text))
        return done.status
    if not opts.names:
        err.write(_encode(f"{PROG}: ERROR: missing module or filename.\n"))
        return 1
    if opts.json:
        return Modinfo(opts, out, err).run()

    def run_some(names: list[str], out: BinaryIO, err: BinaryIO) -> int:
        return Modinfo(opts.replace(names=names), out, err).run()

    return run_split(opts.names, run_some, out, err)
