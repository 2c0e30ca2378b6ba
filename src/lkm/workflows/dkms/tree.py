"""DKMS's state tree, read and written as Debian's dkms 3.0.10 does.

::

    DKMS_TREE/NAME/VERSION/source -> SOURCE_TREE/NAME-VERSION   (added)
    DKMS_TREE/NAME/VERSION/build/                               (while building)
    DKMS_TREE/NAME/VERSION/KVER/ARCH/log/{make.log,.config}
    DKMS_TREE/NAME/VERSION/KVER/ARCH/module/DEST_NAME.ko[.xz]   (built)
    DKMS_TREE/NAME/kernel-KVER-ARCH -> VERSION/KVER/ARCH        (installed)

A package is *added* when its version directory has a ``source``; *built*
for a kernel when ``module/`` holds every module its dkms.conf names for
that kernel (so reading the state evaluates the dkms.conf, as dkms does);
*installed* when the ``kernel-KVER-ARCH`` link resolves to that build.
Both tools read and write the same tree, so either can carry on what the
other started.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator

from lkm.errors import LkmError
from lkm.records import Record, field
from lkm.workflows.dkms.conf import Context, DkmsConf, read_conf, read_framework

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from lkm.system.jobserver import Jobserver

DEFAULT_DKMS_TREE = "/var/lib/dkms"
DEFAULT_SOURCE_TREE = "/usr/src"
DEFAULT_INSTALL_TREE = "/lib/modules"
# dkms 3.0.10 keeps its signing key here whatever the tree (prepare_signing).
DEFAULT_KEY = "/var/lib/dkms/mok.key"
DEFAULT_CERT = "/var/lib/dkms/mok.pub"
# Kernel directories in a version directory: dkms's glob +([0-9]).*
_KERNEL_DIR = re.compile(r"[0-9]+\..*", re.S)
# Directories of a version that are not builds (dkms's remove_module).
NOT_BUILDS = ("build", "tarball", "driver_disk", "rpm", "deb", "source")


class DkmsError(LkmError):
    """A dkms action that failed; ``status`` is dkms's exit status for it
    (77: BUILD_EXCLUSIVE not met) and the message one line naming the
    package, the kernel, the cause and the log."""

    def __init__(self, message: str, status: int = 1, log: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.log = log


class Settings(Record):
    """Where dkms's trees are, and the options that apply to every action."""

    dkms_tree: str = DEFAULT_DKMS_TREE
    source_tree: str = DEFAULT_SOURCE_TREE
    install_tree: str = DEFAULT_INSTALL_TREE
    etc_dir: str = "/etc"
    tmp_location: str = "/tmp"
    kernel_source_dir: str | None = None  # --kernelsourcedir
    kernel_config: str | None = None  # --config
    jobs: str | None = None  # -j (None: nproc; "0": make -j)
    force: bool = False
    no_depmod: bool = False
    distribution: str = "debian"
    addon_modules_dir: str = ""
    key: str = DEFAULT_KEY
    cert: str = DEFAULT_CERT
    conf: str | None = None  # -c: another dkms.conf
    env: dict[str, str] | None = field(default=None)
    root: str = ""  # --root: an image's root directory ("" for the machine's own)
    jobserver: Jobserver | None = None  # makes share its slots (autoinstall)
    verbose: bool = False  # --verbose: make's output shown as well as logged


def load_settings(
    *,
    dkms_tree: str | None = None,
    source_tree: str | None = None,
    install_tree: str | None = None,
    etc_dir: str = "/etc",
    root: str = "",
    **options: object,
) -> Settings:
    """dkms's defaults, then /etc/dkms/framework.conf(.d), then the
    command line, as dkms orders them. With ``root`` (an image being
    built), the defaults and framework.conf's paths are the image's:
    ROOT/var/lib/dkms, ROOT/usr/src, ROOT/lib/modules, ROOT/etc."""
    from lkm.workflows.dkms.conf import distribution
    from lkm.workflows.install import root_directory

    root = root_directory(root)
    etc_dir = f"{root}{etc_dir}"
    defaults = {
        "dkms_tree": DEFAULT_DKMS_TREE,
        "source_tree": DEFAULT_SOURCE_TREE,
        "install_tree": DEFAULT_INSTALL_TREE,
        "tmp_location": os.environ.get("TMPDIR") or "/tmp",
    }
    framework = read_framework(etc_dir, defaults)
    for name in ("dkms_tree", "source_tree", "install_tree"):
        framework[name] = _in_image(root, framework[name])
    addon = os.environ.get("ADDON_MODULES_DIR", "")
    return Settings(
        dkms_tree=dkms_tree or framework["dkms_tree"],
        source_tree=source_tree or framework["source_tree"],
        install_tree=install_tree or framework["install_tree"],
        etc_dir=etc_dir,
        tmp_location=framework["tmp_location"],
        distribution="" if addon else distribution(etc_dir),
        addon_modules_dir=addon,
        key=_in_image(root, framework.get("mok_signing_key") or DEFAULT_KEY),
        cert=_in_image(root, framework.get("mok_certificate") or DEFAULT_CERT),
        root=root,
        **options,  # type: ignore[arg-type]
    )


def _in_image(root: str, path: str) -> str:
    return f"{root}{path}" if root and path.startswith("/") else path


class Target(Record):
    """One package version and one kernel/architecture."""

    module: str
    version: str
    kernel: str
    arch: str

    @property
    def label(self) -> str:
        return f"{self.module}/{self.version} for kernel {self.kernel} ({self.arch})"


class Tree:
    """The state tree of ``settings``: paths and the states read from them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.dkms_tree

    # -- paths -------------------------------------------------------------

    def version_dir(self, module: str, version: str) -> str:
        return f"{self.root}/{module}/{version}"

    def source_link(self, module: str, version: str) -> str:
        """The state tree's ``source`` entry (a link to the sources, or a
        binaries-only package's directory)."""
        return f"{self.version_dir(module, version)}/source"

    def source_dir(self, module: str, version: str) -> str:
        """Where the sources are: through the ``source`` link, read as
        the image means it under ``--root``."""
        from lkm.workflows.install import link_in_root

        return link_in_root(self.settings.root, self.source_link(module, version))

    def build_dir(self, module: str, version: str) -> str:
        return f"{self.version_dir(module, version)}/build"

    def base_dir(self, t: Target) -> str:
        return f"{self.version_dir(t.module, t.version)}/{t.kernel}/{t.arch}"

    def kernel_link(self, module: str, kernel: str, arch: str) -> str:
        return f"{self.root}/{module}/kernel-{kernel}-{arch}"

    def results_dir(self, module: str, version: str) -> str:
        """lkm's record of builds that failed or were skipped, one file per
        kernel: a dot directory, which dkms's globs and ``ls`` pass over
        (dkms refuses to build where ``KVER/ARCH`` exists, so it cannot go
        there), removed with the version."""
        return f"{self.version_dir(module, version)}/.lkm-results"

    def builds_cache(self, module: str, version: str) -> str:
        """Copies of lkm's last builds of the version, by build digest."""
        return f"{self.version_dir(module, version)}/.lkm-builds"

    def make_log(self, t: Target) -> str:
        return f"{self.base_dir(t)}/log/make.log"

    def kernel_source_dir(self, kernel: str) -> str:
        from lkm.workflows.install import link_in_root

        if self.settings.kernel_source_dir:
            return self.settings.kernel_source_dir
        root = self.settings.root
        return link_in_root(root, f"{root}/lib/modules/{kernel}/build")

    def kernel_config(self, kernel: str) -> str:
        return self.settings.kernel_config or f"{self.kernel_source_dir(kernel)}/.config"

    def context(self, t: Target) -> Context:
        return Context(
            kernelver=t.kernel,
            arch=t.arch,
            kernel_source_dir=self.kernel_source_dir(t.kernel),
            kernel_config=self.kernel_config(t.kernel),
            dkms_tree=self.root,
            source_tree=self.settings.source_tree,
            install_tree=self.settings.install_tree,
            module=t.module,
            module_version=t.version,
            distribution=self.settings.distribution,
            tmp_location=self.settings.tmp_location,
        )

    # -- the conf ----------------------------------------------------------

    def conf_path(self, module: str, version: str) -> str:
        return self.settings.conf or f"{self.source_dir(module, version)}/dkms.conf"

    @functools.lru_cache(maxsize=64)  # noqa: B019 - one Tree per command
    def conf(self, t: Target, path: str | None = None) -> DkmsConf:
        """The package's dkms.conf evaluated for ``t``'s kernel."""
        return read_conf(
            path or self.conf_path(t.module, t.version),
            self.context(t),
            etc_dir=self.settings.etc_dir,
            addon_modules_dir=self.settings.addon_modules_dir,
        )

    # -- states --------------------------------------------------------------

    def module_suffix(self, kernel: str) -> str:
        """The compression suffix of the kernel's modules, as dkms reads it
        from modules.dep (``.xz`` on Debian's 6.12, "" on 6.1)."""
        try:
            with open(f"{self.settings.install_tree}/{kernel}/modules.dep", "rb") as file:
                text = file.read()
        except OSError:
            return ""
        suffix = ""
        for candidate in (".gz", ".xz", ".zst"):
            if f"{candidate}:".encode() in text:
                suffix = candidate
        return suffix

    def is_added(self, module: str, version: str) -> bool:
        if not module or not version or not os.path.isdir(self.version_dir(module, version)):
            return False
        source = self.source_link(module, version)
        return os.path.islink(source) or os.path.isdir(source)

    def built_file(self, t: Target, name: str) -> str | None:
        return module_file(f"{self.base_dir(t)}/module", name, self.module_suffix(t.kernel))

    def is_built(self, t: Target) -> bool:
        if not os.path.isdir(f"{self.base_dir(t)}/module"):
            return False
        conf = self.conf(t)
        if conf.problems:
            raise DkmsError(
                f"{t.module}/{t.version}: bad conf file {conf.path}: {'; '.join(conf.problems)}",
                8,
            )
        return all(self.built_file(t, m.dest_name) for m in conf.modules)

    def link_is_to(self, t: Target) -> bool:
        """Whether ``kernel-KVER-ARCH`` resolves to this build (dkms
        compares ``readlink -f`` of the link with the build's path)."""
        link = self.kernel_link(t.module, t.kernel, t.arch)
        return os.path.islink(link) and os.path.realpath(link) == self.base_dir(t)

    def is_installed(self, t: Target) -> bool:
        return self.is_built(t) and self.link_is_to(t)

    # -- listing -------------------------------------------------------------

    def packages(
        self, module: str | None = None, version: str | None = None
    ) -> list[tuple[str, str]]:
        """(module, version) of every added package, in dkms's order."""
        found = []
        for m in _matching(self.root, module):
            for v in _matching(f"{self.root}/{m}", version):
                if self.is_added(m, v):
                    found.append((m, v))
        return sorted(found, key=lambda mv: collation_key(f"{mv[0]}/{mv[1]}"))

    def builds(
        self, module: str, version: str, kernel: str | None = None, arch: str | None = None
    ) -> list[Target]:
        """Every kernel/arch the package is built for, in dkms's order."""
        found = []
        vdir = self.version_dir(module, version)
        for k in _matching(vdir, kernel):
            if kernel is None and not _KERNEL_DIR.fullmatch(k):
                continue
            if not os.path.isdir(f"{vdir}/{k}"):
                continue
            for a in _matching(f"{vdir}/{k}", arch):
                t = Target(module, version, k, a)
                if self.is_built(t):
                    found.append(t)
        return sorted(found, key=lambda t: collation_key(f"{t.kernel}/{t.arch}"))


class BuildResult(Record):
    """A build that did not end built: ``failed`` or ``skipped`` (77)."""

    target: Target
    state: str
    reason: str
    status: int
    log: str | None = None
    digest: str = ""  # build_digest() when it was tried


def record_result(
    tree: Tree, t: Target, reason: str, status: int, log: str | None, digest: str
) -> DkmsError:
    """Remember why ``t`` is not built (its make.log kept beside it: the
    next build of another kernel reuses build/); the error to raise, naming
    the kept log."""
    import json
    import shutil

    directory = tree.results_dir(t.module, t.version)
    os.makedirs(directory, exist_ok=True)
    name = f"{directory}/{t.kernel}-{t.arch}"
    kept = None
    if log and os.path.isfile(log):
        kept = f"{name}.make.log"
        shutil.copyfile(log, kept)
        # build/make.log is the next build's: name the kept copy
        reason = reason.replace(log, kept)
    state = "skipped" if status == 77 else "failed"
    record = {
        "state": state,
        "reason": reason,
        "status": status,
        "log": kept,
        "digest": digest,
    }
    with open(f"{name}.json.new", "w", encoding="utf-8") as file:
        json.dump(record, file)
    os.replace(f"{name}.json.new", f"{name}.json")
    return DkmsError(reason, status, kept)


def clear_result(tree: Tree, t: Target) -> None:
    base = f"{tree.results_dir(t.module, t.version)}/{t.kernel}-{t.arch}"
    for path in (f"{base}.json", f"{base}.make.log"):
        if os.path.exists(path):
            os.unlink(path)


def read_result(tree: Tree, t: Target) -> BuildResult | None:
    import json

    path = f"{tree.results_dir(t.module, t.version)}/{t.kernel}-{t.arch}.json"
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
        return BuildResult(
            t,
            str(data["state"]),
            str(data["reason"]),
            int(data["status"]),
            data["log"],
            str(data.get("digest", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None  # none, or not lkm's: no record


# The headers' files that say what a module is built against: a changed
# kernel config, symbol versions or toolchain changes what a build gives.
_HEADER_FILES = (
    ".config",
    "Module.symvers",
    "Makefile",
    "include/generated/utsrelease.h",
    "include/generated/autoconf.h",
    "include/config/kernel.release",
)


def build_digest(tree: Tree, t: Target) -> str:
    """What a build of ``t`` depends on, hashed: every file of the
    package's sources (dkms.conf among them) by path and content, the
    dkms.conf overrides in /etc/dkms, and the kernel headers' identifying
    files. The same digest builds the same way (or fails the same way)."""
    import hashlib

    digest = hashlib.blake2b(digest_size=16)
    source = os.path.realpath(tree.source_dir(t.module, t.version))
    files = [(f"source/{rel}", path) for rel, path in _tree_files(source)]
    files += [(f"etc/{os.path.basename(p)}", p) for p in _overrides(tree, t)]
    headers = tree.kernel_source_dir(t.kernel)
    files += [(f"headers/{name}", f"{headers}/{name}") for name in _HEADER_FILES]
    files.append(("signing/cert", tree.settings.cert))  # what the modules get signed with
    if tree.settings.conf:
        files.append(("conf", tree.settings.conf))  # -c: another dkms.conf
    toolchain = _toolchain(tree.kernel_config(t.kernel))
    digest.update(f"{t.kernel}\0{t.arch}\0{toolchain}\0".encode())
    for name, path in files:
        digest.update(name.encode("utf-8", "surrogateescape") + b"\0")
        try:
            with open(path, "rb") as file:
                digest.update(hashlib.blake2b(file.read(), digest_size=16).digest())
        except OSError:
            digest.update(b"-")
    return digest.hexdigest()


def _toolchain(config: str) -> str:
    """Which compilers and make are installed (path, size, time), the
    kernel's own compiler (its .config's CONFIG_CC_VERSION_TEXT) among
    them: a build that failed for want of one is tried again once it is
    there."""
    import re
    import shutil

    tools = ["gcc", "cc", "make", "ld"]
    try:
        with open(config, encoding="utf-8", errors="replace") as file:
            match = re.search(r'^CONFIG_CC_VERSION_TEXT="(\S+)', file.read(), re.M)
        if match:
            tools.append(match.group(1))
    except OSError:
        pass
    found = []
    for tool in tools:
        path = shutil.which(tool)
        if path is not None:
            st = os.stat(path)
            found.append(f"{tool}={os.path.realpath(path)}:{st.st_size}:{st.st_mtime_ns}")
    return " ".join(found)


def _tree_files(top: str) -> list[tuple[str, str]]:
    found = []
    for directory, dirs, files in os.walk(top):
        dirs.sort()
        for name in sorted(files):
            path = f"{directory}/{name}"
            found.append((os.path.relpath(path, top), path))
    return found


def _overrides(tree: Tree, t: Target) -> list[str]:
    from lkm.workflows.dkms.conf import override_files

    files = override_files(tree.settings.etc_dir, t.module, t.version, t.kernel, t.arch)
    return [path for path in files if os.path.exists(path)]


def recorded_results(tree: Tree, module: str, version: str) -> list[BuildResult]:
    """Every kernel ``module/version`` failed or was skipped for."""
    found = []
    for name in sorted(_matching(tree.results_dir(module, version), "*.json")):
        kernel, _, arch = name.removesuffix(".json").rpartition("-")
        result = read_result(tree, Target(module, version, kernel, arch))
        if result is not None:
            found.append(result)
    return found


def module_file(directory: str, name: str, suffix: str) -> str | None:
    """``NAME.ko``, else ``NAME.ko`` + the tree's compression suffix, in
    ``directory`` (dkms's compressed_or_uncompressed)."""
    for candidate in (f"{directory}/{name}.ko", f"{directory}/{name}.ko{suffix}"):
        if os.path.lexists(candidate):
            return candidate
    return None


def _matching(directory: str, pattern: str | None) -> Iterator[str]:
    """Entries of ``directory`` matching a shell pattern (None: ``*``),
    without dot files, as bash globs them."""
    from lkm.formats.fnmatch import fnmatch

    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if name.startswith(".") and not (pattern or "").startswith("."):
            continue
        if pattern is None or fnmatch(pattern, name):
            yield name


def collation_key(text: str) -> bytes | str:
    """Sort key of bash's pathname expansion: the locale's collation
    (``LC_COLLATE``/``LC_ALL``), byte order in the C locale."""
    import locale

    try:
        locale.setlocale(locale.LC_COLLATE, "")
    except locale.Error:
        return text.encode("utf-8", "surrogateescape")
    current = locale.setlocale(locale.LC_COLLATE)
    if current in ("C", "POSIX"):
        return text.encode("utf-8", "surrogateescape")
    return locale.strxfrm(text)


__all__ = [
    "DEFAULT_CERT",
    "DEFAULT_DKMS_TREE",
    "DEFAULT_INSTALL_TREE",
    "DEFAULT_KEY",
    "DEFAULT_SOURCE_TREE",
    "BuildResult",
    "DkmsError",
    "Settings",
    "Target",
    "Tree",
    "build_digest",
    "clear_result",
    "collation_key",
    "load_settings",
    "module_file",
    "read_result",
    "record_result",
    "recorded_results",
]
