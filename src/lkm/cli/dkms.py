"""``lkm dkms ACTION [options]``: DKMS's command line over DKMS's own state
tree and dkms.conf files (Debian's dkms 3.0.10 is the reference).

Actions: add (NAME/VERSION from SOURCE_TREE, or a source directory, or a
tarball), build, install, uninstall, unbuild, remove, status,
autoinstall (the newest added version of each AUTOINSTALL package, built
and installed for each kernel asked: ``-k`` (repeatable), ``--all`` (every
kernel in the install tree) or the running one; builds in parallel up to
``-j``; one line per failure, exit status 11 when any failed), mktarball
(``--archive``, ``--binaries-only``, ``--source-only``), ldtarball FILE;
and lkm's ``hooks`` (``[--remove]``): the kernel postinst/prerm and
kernel-install hooks that run autoinstall and unbuild per kernel.
Options as dkms takes them (``-x V``, ``-x=V`` and ``--long=V``):
``-m|--module NAME[/VERSION]``, ``-v VERSION``, ``NAME/VERSION``,
``-k|--kernelver KVER[/ARCH]`` (repeatable), ``-a|--arch ARCH``, ``--all``,
``--force``, ``-j N``,
``--dkmstree DIR``, ``--sourcetree DIR``, ``--installtree DIR``,
``--kernelsourcedir DIR``, ``--config FILE``, ``-c DKMS.CONF``,
``--no-depmod``, ``-q|--quiet`` (no progress lines), ``--verbose`` (make's
output as it comes, as well as in make.log; ``-v`` is VERSION, as in dkms),
``-h|--help``,
``--version``; lkm's ``status --json`` and ``--root DIR`` (an
image: its trees, its /etc, its kernels; autoinstall without ``-k`` does
every kernel in it). Every failure is one line naming the package, the
kernel, the cause and the log, with dkms's exit status (77:
BUILD_EXCLUSIVE not met: skipped). Run as ``dkms`` through a link, lkm
behaves as ``lkm dkms``.
"""

from __future__ import annotations

import os

# The dkms whose behaviour lkm dkms follows (Debian bookworm's).
DKMS_VERSION = "3.0.10"

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from typing import BinaryIO

    from lkm.workflows.dkms.status import StatusEntry
    from lkm.workflows.dkms.tree import Settings, Target, Tree

ACTIONS = (
    "add",
    "build",
    "install",
    "uninstall",
    "unbuild",
    "remove",
    "status",
    "autoinstall",
    "mktarball",
    "ldtarball",
    "hooks",
)
# Options taking a value: dkms's name -> the key it fills.
_VALUED = {
    "-m": "module",
    "--module": "module",
    "-v": "version",
    "-k": "kernel",
    "--kernelver": "kernel",
    "-a": "arch",
    "--arch": "arch",
    "-j": "jobs",
    "-c": "conf",
    "--dkmstree": "dkms_tree",
    "--sourcetree": "source_tree",
    "--installtree": "install_tree",
    "--kernelsourcedir": "kernel_source_dir",
    "--config": "kernel_config",
    "--archive": "archive",
    "--root": "root",
}
_FLAGS = {
    "--all": "all",
    "--force": "force",
    "--no-depmod": "no_depmod",
    "--json": "json",
    "-q": "quiet",
    "--quiet": "quiet",
    "--verbose": "verbose",
    "--binaries-only": "binaries_only",
    "--source-only": "source_only",
    "--remove": "remove",
}


class UsageError(Exception):
    pass


class Command:
    """The parsed command line."""

    def __init__(self) -> None:
        self.action = ""
        self.module = ""
        self.version = ""
        self.kernels: list[str] = []
        self.arches: list[str] = []
        self.values: dict[str, str] = {}
        self.flags: set[str] = set()
        self.help = False
        self.show_version = False


def parse(args: list[str]) -> Command:
    """dkms's argument rules: the action and NAME/VERSION anywhere,
    ``-x V`` or ``-x=V``; ``-k KVER/ARCH`` gives both."""
    command = Command()
    at = 0
    while at < len(args):
        arg = args[at]
        name, equals, inline = arg.partition("=")
        if arg in ("-h", "--help"):
            command.help = True
        elif arg == "--version":
            command.show_version = True
        elif name in _VALUED:
            if equals:
                value = inline
            else:
                at += 1
                if at >= len(args):
                    raise UsageError(f"option {arg} needs a value")
                value = args[at]
            _take(command, _VALUED[name], value)
        elif arg in _FLAGS:
            command.flags.add(_FLAGS[arg])
        elif arg.startswith("-"):
            raise UsageError(f"Unknown option: {arg}")
        elif arg in ACTIONS:
            if command.action:
                raise UsageError("Cannot specify more than one action.")
            command.action = arg
        elif _names_source(arg):
            command.values["source"] = arg.removesuffix("dkms.conf") or "."
        elif os.path.isfile(arg):
            command.values["archive"] = arg  # a file: a tarball, as dkms assumes
        elif not command.module:
            _take(command, "module", arg)
        else:
            raise UsageError(f"I do not know how to handle {arg}.")
        at += 1
    return command


def _names_source(arg: str) -> bool:
    """A dkms.conf, or a directory holding one: a source tree to add."""
    if arg.endswith("dkms.conf") and os.path.isfile(arg):
        return True
    return os.path.isdir(arg) and os.path.isfile(f"{arg}/dkms.conf")


def _take(command: Command, key: str, value: str) -> None:
    if key == "module":
        name, slash, version = value.partition("/")
        command.module = name
        if slash:
            command.version = version
    elif key == "version":
        command.version = value
    elif key == "kernel":
        kernel, slash, arch = value.partition("/")
        command.kernels.append(kernel)
        if slash:
            command.arches.append(arch)
    elif key == "arch":
        command.arches.append(value)
    else:
        command.values[key] = value


def run(args: list[str], out: BinaryIO, err: BinaryIO, argv0: str = "dkms") -> int:
    from lkm.errors import one_line

    prog = "dkms" if argv0.rsplit("/", 1)[-1] == "dkms" else "lkm dkms"

    def fail(message: str) -> None:
        out.flush()
        err.write(f"{prog}: {one_line(message)}\n".encode("utf-8", "surrogateescape"))
        err.flush()

    try:
        command = parse(args)
    except UsageError as exc:
        fail(str(exc))
        return 2
    if command.show_version and not command.help:
        from lkm import __version__

        # dkms prints dkms-3.0.10: scripts that cut at the dash still read
        # the DKMS version lkm follows
        out.write(f"dkms-{DKMS_VERSION} (lkm version {__version__})\n".encode())
        return 0
    if command.help or not command.action:
        (out if command.help else err).write((__doc__ or "").encode())
        return 0 if command.help else 2
    return _run(command, out, err, fail)


def _run(command: Command, out: BinaryIO, err: BinaryIO, fail: object) -> int:
    from lkm.workflows.dkms.conf import ConfError
    from lkm.workflows.dkms.tree import DkmsError, Tree, load_settings

    assert callable(fail)
    quiet = "quiet" in command.flags

    def say(line: str) -> None:
        if not quiet:
            out.write(f"{line}\n".encode("utf-8", "surrogateescape"))
            out.flush()

    try:
        settings = _settings(command, load_settings)
        tree = Tree(settings)
        if command.action == "status":
            return _status(tree, command, out, err)
        if command.action == "hooks":
            return _hooks(tree, command, say)
        if command.action == "autoinstall":
            return _autoinstall(tree, command, say, err, fail)
        if command.action == "ldtarball" or (
            command.action == "add" and not command.module and _names_a_package(command)
        ):
            return _load(tree, command, say)
        if command.action == "mktarball":
            return _mktarball(tree, command, say)
        return _act(tree, command, say, err, fail)
    except (DkmsError, ConfError) as exc:
        fail(str(exc))
        return exc.status if isinstance(exc, DkmsError) else 8


def _settings(command: Command, load: object) -> Settings:
    assert callable(load)
    values = command.values
    jobs = values.get("jobs")
    return load(  # type: ignore[no-any-return]
        dkms_tree=values.get("dkms_tree"),
        source_tree=values.get("source_tree"),
        install_tree=values.get("install_tree"),
        kernel_source_dir=values.get("kernel_source_dir"),
        kernel_config=values.get("kernel_config"),
        conf=values.get("conf"),
        jobs=jobs,
        force="force" in command.flags,
        no_depmod="no_depmod" in command.flags,
        verbose="verbose" in command.flags,
        root=values.get("root", ""),
    )


def _status(tree: Tree, command: Command, out: BinaryIO, err: BinaryIO) -> int:
    from lkm.workflows.dkms.status import status, with_trust

    kernels: list[str | None] = list(command.kernels) or [None]
    arches = _arches_for(command, len(kernels), default=None)
    entries = []
    for kernel, arch in zip(kernels, arches, strict=True):
        entries.extend(
            status(tree, command.module, command.version, kernel, arch, "json" in command.flags)
        )
    entries = with_trust(tree, entries)
    if "json" in command.flags:
        from lkm.cli.json_output import write_array
        from lkm.workflows.dkms.status import with_load_verdicts

        # lkm check's verdicts: only here, where a kernel's facts (~0.1 s
        # each) are asked for; dkms's text stays as fast as dkms's
        entries = with_load_verdicts(tree, entries)
        write_array(out, (e.as_json() for e in entries))
        return 0
    for entry in entries:
        out.write(f"{entry.line()}\n".encode("utf-8", "surrogateescape"))
    out.flush()
    _warn_rejected(entries, err)
    return 0


def _warn_rejected(entries: list[StatusEntry], err: BinaryIO) -> None:
    """One line per kernel that will refuse DKMS's modules (stderr: the
    status lines stay dkms's)."""
    from lkm.workflows.dkms.trust import enrol_hint

    warned = set()
    for entry in entries:
        trust = entry.signing
        if trust is None or not trust.rejected or entry.kernel in warned:
            continue
        warned.add(entry.kernel)
        line = (
            f"dkms: warning: kernel {entry.kernel} enforces module signatures and will reject "
            f"modules signed with {trust.cert} ({trust.detail}): {enrol_hint(trust.cert)}\n"
        )
        err.write(line.encode("utf-8", "surrogateescape"))


def _arches_for(command: Command, count: int, default: str | None) -> list[str | None]:
    arches: list[str | None] = list(command.arches) or [default]
    if len(arches) == 1 and count > 1:
        arches = arches * count
    if len(arches) != count:
        raise _usage("give one arch per kernel (-k KVER/ARCH), or one for all")
    return arches


def _usage(message: str) -> Exception:
    from lkm.workflows.dkms.tree import DkmsError

    return DkmsError(message, 1)


def _targets(tree: Tree, command: Command) -> list[Target]:
    """The kernels to act on, as dkms's setup_kernels_arches picks them."""
    import os

    from lkm.workflows.dkms.tree import Target

    if "all" in command.flags:
        if command.kernels or command.arches:
            raise _usage("You cannot specify a kernel version or arch and also --all")
        return tree.builds(command.module, command.version)
    if not command.kernels and tree.settings.root:
        raise _usage(f"name the image's kernel with -k (--root {tree.settings.root})")
    kernels = list(command.kernels) or [os.uname().release]
    arches = _arches_for(command, len(kernels), os.uname().machine)
    return [
        Target(command.module, command.version, k, a or os.uname().machine)
        for k, a in zip(kernels, arches, strict=True)
    ]


def _hooks(tree: Tree, command: Command, say: object) -> int:
    """Write (or ``--remove``) lkm's kernel hooks, under ``--root``."""
    from lkm.workflows.dkms.hooks import remove_hooks, write_hooks

    assert callable(say)
    if "remove" in command.flags:
        remove_hooks(tree.settings.root, say)
    else:
        write_hooks(tree.settings.root, say)
    return 0


def _names_a_package(command: Command) -> bool:
    return "archive" in command.values or "source" in command.values


def _load(tree: Tree, command: Command, say: object) -> int:
    """ldtarball, or add of a tarball or a source directory: the sources
    copied to SOURCE_TREE/NAME-VERSION (and a tarball's builds loaded),
    then the package added as ``add`` does."""
    from lkm.workflows.dkms import tarball
    from lkm.workflows.dkms.build import add

    assert callable(say)
    kernel = (command.kernels or [os.uname().release])[0]
    arch = (command.arches or [os.uname().machine])[0]
    source = command.values.get("source")
    archive = command.values.get("archive", "")
    if source is not None and command.action == "add" and "archive" not in command.values:
        module, version = tarball.read_package(tree, f"{source}/dkms.conf", kernel, arch, 10)
        if tree.is_added(module, version):
            raise _usage_status(f"{module}/{version}: already added to {tree.root}", 3)
        tarball.copy_source_tree(tree, source, module, version, say)
    else:
        if not archive:
            raise _usage_status("ldtarball needs a DKMS tarball: dkms ldtarball FILE", 2)
        module, version = tarball.load_tarball(tree, archive, kernel, arch, say)
        if not os.path.isdir(f"{tree.settings.source_tree}/{module}-{version}"):
            return 0  # binaries only: the state tree holds its dkms.conf; nothing to add
    add(tree, module, version, kernel, arch, say)
    return 0


def _mktarball(tree: Tree, command: Command, say: object) -> int:
    from lkm.workflows.dkms.tarball import make_tarball

    assert callable(say)
    _need_package(command)
    if not tree.is_added(command.module, command.version):
        raise _usage_status(
            f"{command.module}/{command.version}: not in the DKMS tree {tree.root}", 3
        )
    targets = [] if "source_only" in command.flags else _targets(tree, command)
    make_tarball(
        tree,
        command.module,
        command.version,
        targets,
        archive=command.values.get("archive"),
        source_only="source_only" in command.flags,
        binaries_only="binaries_only" in command.flags,
        say=say,
    )
    return 0


def _need_package(command: Command) -> None:
    if not command.module or not command.version:
        raise _usage(
            "Arguments <module> and <module-version> are not specified: "
            f"dkms {command.action} NAME/VERSION (or -m NAME -v VERSION)"
        )


def _usage_status(message: str, status: int) -> Exception:
    from lkm.workflows.dkms.tree import DkmsError

    return DkmsError(message, status)


def _autoinstall(tree: Tree, command: Command, say: object, err: BinaryIO, fail: object) -> int:
    """Every package for every kernel asked; 11 (dkms's status for a failed
    autoinstall) when any failed, skipped ones (77) not counted."""
    import os

    from lkm.cli.install import depmod_reporter
    from lkm.workflows.dkms.autoinstall import Outcome, autoinstall, installed_kernels

    assert callable(say) and callable(fail)
    if command.module or command.version:
        raise _usage("autoinstall takes no NAME/VERSION: it acts on every added package")
    if "all" in command.flags or (tree.settings.root and not command.kernels):
        if command.kernels or command.arches:
            raise _usage("You cannot specify a kernel version or arch and also --all")
        kernels = installed_kernels(tree)  # an image's: every kernel in it
    else:
        kernels = list(command.kernels) or [os.uname().release]
    arches = _arches_for(command, len(kernels) or 1, os.uname().machine)
    pairs = [(k, a or os.uname().machine) for k, a in zip(kernels, arches, strict=False)]

    def heard(outcome: Outcome) -> None:
        if outcome.failed:
            fail(outcome.message)
        elif outcome.state == "skipped":
            say(outcome.message)

    outcomes = autoinstall(tree, pairs, tree.settings.jobs, say, depmod_reporter(err), heard)
    return 11 if any(o.failed for o in outcomes) else 0


def _act(tree: Tree, command: Command, say: object, err: BinaryIO, fail: object) -> int:
    from lkm.cli.install import depmod_reporter
    from lkm.workflows.dkms import build as building
    from lkm.workflows.dkms import install as installing
    from lkm.workflows.dkms.tree import DkmsError

    assert callable(say) and callable(fail)
    _need_package(command)
    action = command.action
    if action in ("add", "build", "install") and "all" in command.flags:
        raise DkmsError(f"The action {action} does not support the --all parameter.", 5)
    if action in ("remove", "uninstall", "unbuild") and not tree.is_added(
        command.module, command.version
    ):
        raise DkmsError(f"{command.module}/{command.version}: not in the DKMS tree {tree.root}", 3)
    targets = _targets(tree, command)
    report = depmod_reporter(err)
    if action == "add":
        t = targets[0]
        building.add(tree, t.module, t.version, t.kernel, t.arch, say)
        return 0
    if action == "remove":
        installing.remove(tree, command.module, command.version, targets, say, report)
        return 0
    first_failure = 0
    for t in targets:
        try:
            _one(tree, t, action, say, report)
        except DkmsError as exc:
            fail(str(exc))
            first_failure = first_failure or exc.status
    return first_failure


def _one(tree: Tree, t: Target, action: str, say: object, report: object) -> None:
    from lkm.workflows.dkms import build as building
    from lkm.workflows.dkms import install as installing

    assert callable(say) and callable(report)
    force = tree.settings.force
    if action == "build":
        if tree.is_added(t.module, t.version) and tree.is_built(t):
            if not force:
                say(
                    f"Module {t.module}/{t.version} already built for kernel {t.kernel} "
                    f"({t.arch}), skip."
                )
                return
            installing.uninstall(tree, t, say, report)
            installing.unbuild(tree, t, say)
        building.build(tree, t, say)
    elif action == "install":
        if tree.is_added(t.module, t.version) and tree.is_installed(t):
            if not force:
                say(
                    f"Module {t.module}/{t.version} already installed on kernel {t.kernel} "
                    f"({t.arch}), skip."
                )
                return
            installing.uninstall(tree, t, say, report)
        installing.install(tree, t, say, report)
    elif action == "uninstall":
        installing.uninstall(tree, t, say, report)
    elif action == "unbuild":
        installing.uninstall(tree, t, say, report)
        installing.unbuild(tree, t, say)
