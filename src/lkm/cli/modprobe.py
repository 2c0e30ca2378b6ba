"""``modprobe``: load or unload modules by name or alias, with dependencies.

kmod's options, messages and exit codes (tools/modprobe.c, kmod 34 where
it differs from Debian's kmod 30: ``modprobe ./x.ko`` loads a file, ``-c``
shows ``weakdep``). The work is :mod:`lkm.workflows.modprobe`; this module
parses the command line and prints the way kmod prints:

* ``FATAL`` messages end the run at once with status 1 (``-a`` turns the
  lookup and removal messages into non-fatal ``WARNING``\\ s, ``-q``
  silences them);
* lines of ``-v``/``-n``/``--show-depends`` go to stdout, buffered like
  kmod's ``printf`` (the ``rmmod``/``remove`` lines are flushed, as kmod's
  ``SHOW`` does);
* ``MODPROBE_OPTIONS`` is read before the command line and extended with
  ``-C``, ``-q``, ``-v``, ``-s`` for the install commands that call
  modprobe again.

Deliberate differences, each for a reason: ``-c`` keeps the space kmod
loses between a softdep's pre and post lists; configuration warnings say
``modprobe: ERROR: …`` (kmod prints libkmod's source file and line, which
a Python tool does not have), and so do libkmod's messages (Debian's kmod
30 adds ``../libkmod/FILE.c:LINE function()`` to them); ``-vv`` does not
print libkmod's pointer addresses ("ctx 0x… created"); a softdep cycle
ends instead of overflowing the stack; ``-w`` running out of time fails
with "Resource temporarily unavailable" as upstream kmod does since it was
fixed after kmod 34 (kmod 30 spins or exits 0); ``-f`` of a ``.ko.xz`` the
kernel decompresses goes to the kernel with the force flags, as kmod 34
(kmod 30 edits the decompressed image and breaks its signature).
"""

from __future__ import annotations

import errno
import os

from lkm.cli.options import UsageError, parse, syslog_text, version_text
from lkm.errors import LkmError
from lkm.workflows.modprobe import Request, one_line, parse_wait, split_env_options

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from typing import BinaryIO

    from lkm.workflows.modprobe import Modprobe, Step

PROG = "modprobe"
SHORTOPTS = "arw:RibfDcnC:d:S:sqvVh"
LONGOPTS = (
    "all", "remove", "remove-dependencies", "remove-holders", "wait=", "resolve-alias",
    "first-time", "ignore-install", "ignore-remove", "use-blacklist", "force",
    "force-modversion", "force-vermagic", "show-depends", "showconfig", "show-config",
    "show-modversions", "dump-modversions", "show-exports", "dry-run", "show", "config=",
    "dirname=", "set-version=", "syslog", "quiet", "verbose", "version", "help", "json",
)  # fmt: skip

# One name per option, as kmod's getopt table maps them.
_CANONICAL = {
    "--all": "-a", "--remove": "-r", "--remove-dependencies": "--remove-holders",
    "--wait": "-w", "--resolve-alias": "-R", "--ignore-install": "-i",
    "--ignore-remove": "-i", "--use-blacklist": "-b", "--force": "-f",
    "--show-depends": "-D", "--showconfig": "-c", "--show-config": "-c",
    "--show-modversions": "--dump-modversions", "--dry-run": "-n", "--show": "-n",
    "--config": "-C", "--dirname": "-d", "--set-version": "-S", "--syslog": "-s",
    "--quiet": "-q", "--verbose": "-v", "--version": "-V", "--help": "-h",
}  # fmt: skip

HELP = """\
Usage:
\t{p} [options] [-i] [-b] modulename
\t{p} [options] -a [-i] [-b] modulename [modulename...]
\t{p} [options] -r [-i] modulename
\t{p} [options] -r -a [-i] modulename [modulename...]
\t{p} [options] -c
\t{p} [options] --dump-modversions filename
Management Options:
\t-a, --all                   Consider every non-argument to
\t                            be a module name to be inserted
\t                            or removed (-r)
\t-r, --remove                Remove modules instead of inserting
\t    --remove-dependencies   Deprecated: use --remove-holders
\t    --remove-holders        Also remove module holders (use together with -r)
\t-w, --wait=<MSEC>           When removing a module, wait up to MSEC for
\t                            module's refcount to become 0 so it can be
\t                            removed (use together with -r)
\t    --first-time            Fail if module already inserted or removed
\t-i, --ignore-install        Ignore install commands
\t-i, --ignore-remove         Ignore remove commands
\t-b, --use-blacklist         Apply blacklist to resolved alias.
\t-f, --force                 Force module insertion or removal.
\t                            implies --force-modversions and
\t                            --force-vermagic
\t    --force-modversion      Ignore module's version
\t    --force-vermagic        Ignore module's version magic

Query Options:
\t-R, --resolve-alias         Only lookup and print alias and exit
\t-D, --show-depends          Only print module dependencies and exit
\t-c, --showconfig            Print out known configuration and exit
\t-c, --show-config           Same as --showconfig
\t    --show-modversions      Dump module symbol version and exit
\t    --dump-modversions      Same as --show-modversions
\t    --show-exports          Only print module exported symbol versions and exit

General Options:
\t-n, --dry-run               Do not execute operations, just print out
\t-n, --show                  Same as --dry-run
\t-C, --config=FILE           Use FILE instead of default search paths
\t-d, --dirname=DIR           Use DIR as filesystem root for /lib/modules
\t-S, --set-version=VERSION   Use VERSION instead of `uname -r`
\t-s, --syslog                print to syslog, not stderr
\t-q, --quiet                 disable messages
\t-v, --verbose               enables more messages
\t-V, --version               show version
\t-h, --help                  show this help
\t    --json                  With -D or -n: the plan as JSON (an lkm extension)
"""

LOG_CRIT, LOG_ERR, LOG_WARNING = 2, 3, 4
_PRIORITY_NAMES = {2: "FATAL", 3: "ERROR", 4: "WARNING", 5: "NOTICE", 6: "INFO", 7: "DEBUG"}


class _Fatal(Exception):
    """A FATAL message was printed: kmod exits with status 1 right there."""


class Settings:
    """Everything the command line says, as kmod's globals."""

    def __init__(self) -> None:
        self.verbose = LOG_WARNING
        self.tool_priority = LOG_CRIT
        self.request = Request()  # what to do: the library's part of the options
        self.show_config = self.dump_modversions = self.show_exports = self.syslog = False
        self.json = False  # --json: the steps as one JSON array, not lines
        self.configs: list[str] = []
        # kmod appends -C/-q/-v/-s to MODPROBE_OPTIONS for the modprobe an
        # install command may run; lkm passes it to those commands only,
        # so an in-process caller's environment stays as it was.
        self.env_options = os.environ.get("MODPROBE_OPTIONS")
        self.root: str | None = None
        self.version: str | None = None

    def ask(self, **changes: object) -> None:
        """Set fields of the request (see :class:`~lkm.workflows.modprobe.Request`)."""
        self.request = self.request.replace(**changes)

    def pass_on(self, option: str) -> None:
        """Pass an option on to modprobe run again by an install command."""
        old = self.env_options
        self.env_options = option if old is None else f"{old} {option}"

    @property
    def showing(self) -> bool:
        return self.request.show_depends or self.verbose > LOG_WARNING


class Log:
    """kmod's log_printf: ``modprobe: PRIORITY: text`` on stderr (or syslog),
    filtered by the verbosity; a FATAL one ends the run."""

    def __init__(self, err: BinaryIO, settings: Settings) -> None:
        self.err = err
        self.settings = settings

    def __call__(self, priority: int, text: str) -> None:
        if priority < 0:  # LOG_TOOL: modprobe's own level
            priority = self.settings.tool_priority
        if priority > self.settings.verbose:
            return
        text = one_line(text)  # kmod would print a line break in a name as it is
        name = _PRIORITY_NAMES.get(priority, f"LOG-{priority:03d}")
        if self.settings.syslog:
            import syslog

            syslog.openlog(PROG, syslog.LOG_CONS, syslog.LOG_DAEMON)
            syslog.syslog(priority, syslog_text(f"{name}: {text}"))
        else:
            self.err.write(f"{PROG}: {name}: {text}".encode("utf-8", "surrogateescape"))
            self.err.flush()
        if priority <= LOG_CRIT:
            raise _Fatal


def run(args: list[str], out: BinaryIO, err: BinaryIO, argv0: str = PROG) -> int:
    settings = Settings()
    log = Log(err, settings)
    try:
        argv = [*split_env_options(os.environ.get("MODPROBE_OPTIONS")), *args]
        opts, operands = parse(argv0, argv, SHORTOPTS, LONGOPTS)
    except UsageError as exc:
        err.write(f"{exc}\n".encode("utf-8", "surrogateescape"))
        return 1
    try:
        early = _apply_options(opts, settings, out, err)
        if early is not None:
            return early
        if not settings.show_config and not operands:
            log(LOG_ERR, "missing parameters. See -h.\n")
            return 1
        if settings.json and not settings.request.dry_run:
            log(LOG_ERR, "--json needs --show-depends or --dry-run.\n")
            return 1
        status = _run(settings, operands, out, log)
    except _Fatal:
        status = -1
    except LkmError as exc:  # a broken index or module file: one line, as for any error
        log(LOG_ERR, f"{exc}\n")
        status = -1
    out.flush()
    return 0 if status >= 0 else 1


def _apply_options(
    opts: list[tuple[str, str]], s: Settings, out: BinaryIO, err: BinaryIO
) -> int | None:
    """Set ``s`` from the options in order; an exit status for -V/-h/bad -w."""
    for raw, value in opts:
        opt = _CANONICAL.get(raw, raw)
        if opt == "-a":
            s.tool_priority = LOG_WARNING
            s.ask(use_all=True)
        elif opt == "-r":
            s.ask(remove=True)
        elif opt == "--remove-holders":
            s.ask(remove_holders=True)
        elif opt == "-w":
            msec = parse_wait(value)
            if msec is None:
                Log(err, s)(LOG_ERR, f"unexpected wait value '{value}'.\n")
                return 1
            s.ask(wait_msec=msec)
        elif opt == "--first-time":
            s.ask(first_time=True)
        elif opt == "-i":
            s.ask(ignore_commands=True)
        elif opt == "-b":
            s.ask(use_blacklist=True)
        elif opt == "-f":
            s.ask(force=True)
        elif opt == "--force-modversion":
            s.ask(force_modversion=True)
        elif opt == "--force-vermagic":
            s.ask(force_vermagic=True)
        elif opt == "-D":
            s.ask(show_depends=True, dry_run=True)
        elif opt == "-R":
            s.ask(lookup_only=True)
        elif opt == "-c":
            s.show_config = True
        elif opt == "--dump-modversions":
            s.dump_modversions = True
        elif opt == "--show-exports":
            s.show_exports = True
        elif opt == "-n":
            s.ask(dry_run=True)
        elif opt == "--json":
            s.json = True
        elif opt == "-C":
            s.configs.append(value)
            s.pass_on("-C")
            s.pass_on(value)
        elif opt == "-d":
            s.root = value
        elif opt == "-S":
            s.version = value
        elif opt == "-s":
            s.pass_on("-s")
            s.syslog = True
        elif opt == "-q":
            s.pass_on("-q")
            s.verbose = 0  # LOG_EMERG
        elif opt == "-v":
            s.pass_on("-v")
            s.verbose += 1
            s.ask(explain_refusals=True)
        elif opt == "-V":
            out.write(version_text().encode("utf-8", "surrogateescape"))
            return 0
        elif opt == "-h":
            out.write(HELP.format(p=PROG).encode("utf-8", "surrogateescape"))
            return 0
    return None


def _run(settings: Settings, operands: list[str], out: BinaryIO, log: Log) -> int:
    from lkm.workflows.modprobe import Modprobe

    plan: list[dict[str, object]] = []

    def show(step: Step) -> None:
        if settings.json:
            plan.append(step.as_json())
            return
        out.write(step.show().encode("utf-8", "surrogateescape"))
        # kmod flushes its own SHOW lines (rmmod, remove); libkmod's
        # print_action lines stay in stdio's buffer.
        if step.action in ("rmmod", "remove"):
            out.flush()

    def emit(text: str) -> None:
        out.write(text.encode("utf-8", "surrogateescape"))

    env = {} if settings.env_options is None else {"MODPROBE_OPTIONS": settings.env_options}
    with Modprobe.for_system(
        settings.root, settings.version, settings.configs, report=log,
        show=show if settings.showing or settings.json else None, env=env,
    ) as modprobe:  # fmt: skip
        if settings.show_config:
            return _show_config(modprobe, out)
        if settings.dump_modversions or settings.show_exports:
            return _show_symbols(settings, operands[0], out, log)
        status = modprobe.run(settings.request, operands, emit)
    if settings.json:
        from lkm.cli.json_output import write_array

        write_array(out, plan)
    return status


def _show_config(modprobe: Modprobe, out: BinaryIO) -> int:
    from lkm.workflows.modprobe import index_dump

    out.write(modprobe.config.show().encode("utf-8", "surrogateescape"))
    out.write(b"\n# End of configuration files. Dumping indexes now:\n\n")
    out.flush()
    out.write(index_dump(modprobe.directory).encode("utf-8", "surrogateescape"))
    return 0


def _show_symbols(settings: Settings, filename: str, out: BinaryIO, log: Log) -> int:
    """--dump-modversions (symbol versions a module needs) or --show-exports
    (what it exports): ``0x%08x\\tSYMBOL`` lines."""
    from lkm.workflows.modprobe import SymbolsUnreadable, symbol_crcs

    try:
        os.stat(filename)
    except OSError:
        log(-1, f"Module {filename} not found.\n")
        return -errno.ENOENT
    what = "modversions" if settings.dump_modversions else "symbols"
    try:
        pairs = symbol_crcs(filename, exports=settings.show_exports)
    except SymbolsUnreadable as exc:
        log(-1, f"could not get {what} of {filename}: {exc}\n")
        return -exc.code
    out.write(
        "".join(f"0x{crc:08x}\t{name}\n" for crc, name in pairs).encode("utf-8", "surrogateescape")
    )
    return 0
