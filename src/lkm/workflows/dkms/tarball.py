"""``dkms mktarball`` and ``dkms ldtarball``: a package version's sources
and built modules in one archive, in Debian's dkms 3.0.10 layout, so a
tarball either tool makes loads with the other::

    ./dkms_main_tree/KVER/ARCH/{module,log}/…   (built modules, per kernel)
    ./dkms_source_tree/…                         (the sources, dkms.conf first among them)
    ./dkms_binaries_only/{PACKAGE_NAME,PACKAGE_VERSION,dkms.conf}   (--binaries-only)

The default name is ``NAME-VERSION-kernelKVER-ARCH[-kernel…].dkms.tar.gz``
(``source-only`` with --source-only, ``manykernels`` when the list passes
200 characters) in ``DKMS_TREE/NAME/VERSION/tarball/``; ``--archive``
names another. Loading unpacks into a temporary directory (members that
would land outside it, links pointing out, devices: refused, nothing
loaded), reads PACKAGE_NAME and PACKAGE_VERSION from the archive's
dkms.conf, copies the sources to ``SOURCE_TREE/NAME-VERSION`` and the
builds to the state tree, then adds the package.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable

from lkm.workflows.dkms.conf import ConfError, Context, read_conf
from lkm.workflows.dkms.tree import DkmsError, Target, Tree

Say = Callable[[str], None]
MAIN_TREE = "dkms_main_tree"
SOURCE_TREE = "dkms_source_tree"
BINARIES_ONLY = "dkms_binaries_only"
# dkms's limit on the kernel list in a tarball's name (``wc -m`` counts the newline).
_NAME_LIMIT = 200


def tarball_name(module: str, version: str, targets: list[Target], source_only: bool) -> str:
    if source_only:
        kernels = "source-only"
    else:
        kernels = "-".join(f"kernel{t.kernel}-{t.arch}" for t in targets)
        if len(kernels) + 1 > _NAME_LIMIT:
            kernels = "manykernels"
    return f"{module}-{version}-{kernels}.dkms.tar.gz"


def make_tarball(
    tree: Tree,
    module: str,
    version: str,
    targets: list[Target],
    *,
    archive: str | None = None,
    source_only: bool = False,
    binaries_only: bool = False,
    say: Say,
) -> str:
    """Write the archive; returns its path. Raises DkmsError (6: a kernel
    not built, 9: the destination not writable)."""
    if source_only and binaries_only:
        raise DkmsError("--binaries-only and --source-only cannot both be given", 8)
    if not source_only:
        for t in targets:
            if not os.path.isdir(tree.base_dir(t)):
                raise DkmsError(
                    f"{t.label}: no modules built (mktarball archives built modules: "
                    f"dkms build {module}/{version} -k {t.kernel} first)",
                    6,
                )
    destination, name = _destination(tree, module, version, targets, archive, source_only)
    path = f"{destination}/{name}"
    try:
        os.makedirs(destination, exist_ok=True)
        fd, partial = tempfile.mkstemp(prefix=f".{name}.", dir=destination)
    except OSError as exc:
        raise DkmsError(
            f"{module}/{version}: cannot write to {destination}: {exc.strerror}", 9
        ) from None
    try:
        os.chmod(partial, 0o644)
        with os.fdopen(fd, "wb") as file, tarfile.open(fileobj=file, mode="w:gz") as tar:
            tar.addfile(_root_entry())
            _add_builds(tar, tree, targets if not source_only else [], say)
            _add_sources(tar, tree, module, version, binaries_only, say)
        os.replace(partial, path)
    except (OSError, tarfile.TarError) as exc:
        os.unlink(partial)
        raise DkmsError(f"{module}/{version}: failed to make {path}: {exc}", 6) from None
    say(f"Tarball location: {path}")
    return path


def _destination(
    tree: Tree,
    module: str,
    version: str,
    targets: list[Target],
    archive: str | None,
    source_only: bool,
) -> tuple[str, str]:
    """dkms's rules: ``--archive NAME`` is a name in the default place,
    ``--archive DIR/NAME`` a path."""
    default_dir = f"{tree.version_dir(module, version)}/tarball"
    if not archive:
        return default_dir, tarball_name(module, version, targets, source_only)
    if "/" not in archive:
        return default_dir, archive
    directory, _, name = archive.rpartition("/")
    return directory or "/", name


def _root_entry() -> tarfile.TarInfo:
    """The archive's ``./`` (as ``tar -C DIR -caf … .`` writes it)."""
    import time

    info = tarfile.TarInfo(".")
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = int(time.time())
    info.uname = info.gname = "root"
    return info


def _add_builds(tar: tarfile.TarFile, tree: Tree, targets: list[Target], say: Say) -> None:
    for t in targets:
        say(f"Marking modules for {t.kernel} ({t.arch}) for archiving...")
        tar.add(tree.base_dir(t), arcname=f"./{MAIN_TREE}/{t.kernel}/{t.arch}")


def _add_sources(
    tar: tarfile.TarFile, tree: Tree, module: str, version: str, binaries_only: bool, say: Say
) -> None:
    source = os.path.realpath(tree.source_dir(module, version))
    if binaries_only:
        say("Creating tarball structure to specifically accomodate binaries.")
        conf = tree.settings.conf or f"{source}/dkms.conf"
        _add_text(tar, f"./{BINARIES_ONLY}/PACKAGE_NAME", f"{module}\n")
        _add_text(tar, f"./{BINARIES_ONLY}/PACKAGE_VERSION", f"{version}\n")
        if os.path.isfile(conf):
            tar.add(conf, arcname=f"./{BINARIES_ONLY}/dkms.conf")
        return
    say(f"Marking {tree.source_link(module, version)} for archiving...")
    tar.add(source, arcname=f"./{SOURCE_TREE}", recursive=False)
    for name in sorted(os.listdir(source)):
        if not name.startswith("."):  # dkms copies source/* (no dot files)
            tar.add(f"{source}/{name}", arcname=f"./{SOURCE_TREE}/{name}")


def _add_text(tar: tarfile.TarFile, name: str, text: str) -> None:
    import io
    import time

    data = text.encode()
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def load_tarball(tree: Tree, archive: str, kernel: str, arch: str, say: Say) -> tuple[str, str]:
    """Unpack ``archive`` into the trees; returns (module, version) for the
    caller to add. Nothing is written when the archive is bad."""
    if not os.path.isfile(archive):
        raise DkmsError(f"{archive}: no such file (ldtarball needs a DKMS tarball)", 2)
    with tempfile.TemporaryDirectory(prefix="dkms.", dir=tree.settings.tmp_location) as temp:
        _unpack(archive, temp)
        where, module, version = _package_of(tree, archive, temp, kernel, arch)
        say(f"Loading tarball for {module}-{version}")
        if where == SOURCE_TREE:
            copy_source_tree(tree, f"{temp}/{SOURCE_TREE}", module, version, say)
        elif not os.path.isdir(f"{tree.settings.source_tree}/{module}-{version}"):
            stub = tree.source_link(module, version)
            say(f"Creating {stub}")
            os.makedirs(stub, exist_ok=True)
            shutil.copyfile(f"{temp}/{BINARIES_ONLY}/dkms.conf", f"{stub}/dkms.conf")
        _load_builds(tree, f"{temp}/{MAIN_TREE}", module, version, say)
    return module, version


def _unpack(archive: str, into: str) -> None:
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            members = tar.getmembers()
            _check_members(archive, members)
            for member in members:
                _as_data(member)
            tar.extractall(into, members=members)
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise DkmsError(f"{archive}: not a readable DKMS tarball: {exc}", 7) from None


def _check_members(archive: str, members: list[tarfile.TarInfo]) -> None:
    """Refuse what could write outside the unpacking directory: absolute or
    ``..`` names, devices and hard links, a name given twice (a file over
    a link), members reached through a link, and links whose target leaves
    the directory or passes through another link."""
    names: set[str] = set()
    links = {os.path.normpath(m.name) for m in members if m.issym()}
    for member in members:
        name = os.path.normpath(member.name)
        outside = name.startswith(("/", "..")) or name == ".."
        if outside or not (member.isfile() or member.isdir() or member.issym()):
            raise DkmsError(f"{archive}: refusing member {member.name!r} (not a plain file)", 7)
        if name in names and name != ".":
            raise DkmsError(f"{archive}: refusing member {member.name!r} (named twice)", 7)
        names.add(name)
        if _through_link(name.split("/")[:-1], links):
            raise DkmsError(f"{archive}: refusing member {member.name!r} (through a link)", 7)
        if member.issym() and not _inside(name, member.linkname, links):
            raise DkmsError(
                f"{archive}: refusing link {member.name!r} -> {member.linkname!r} (points out)", 7
            )


def _through_link(parts: list[str], links: set[str]) -> bool:
    return any("/".join(parts[: n + 1]) in links for n in range(len(parts)))


def _inside(name: str, target: str, links: set[str]) -> bool:
    """Whether a link at ``name`` to ``target`` stays inside, walked one
    component at a time without passing through another link."""
    if target.startswith("/"):
        return False
    path = name.split("/")[:-1]
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not path:
                return False
            path.pop()
            continue
        path.append(part)
        if "/".join(path) in links:
            return False
    return True


def _as_data(member: tarfile.TarInfo) -> None:
    """Owned by whoever unpacks (root here), no set-id or world-write bits."""
    member.uid = member.gid = 0
    member.uname = member.gname = "root"
    if not member.issym():
        member.mode = member.mode & 0o755 | 0o600


def _package_of(
    tree: Tree, archive: str, temp: str, kernel: str, arch: str
) -> tuple[str, str, str]:
    """Which layout the archive has and the package it holds."""
    for where in (SOURCE_TREE, BINARIES_ONLY):
        conf_path = f"{temp}/{where}/dkms.conf"
        if not os.path.isfile(conf_path):
            continue
        try:
            module, version = read_package(tree, conf_path, kernel, arch, 7)
        except DkmsError as exc:
            # Named inside the archive: the temporary directory is gone by now.
            message = str(exc).replace(f"{temp}/", f"{archive}: ")
            raise DkmsError(message, exc.status) from None
        if tree.is_added(module, version) and not tree.settings.force:
            raise DkmsError(
                f"{module}/{version}: already added to {tree.root} "
                "(--force loads the tarball over it)",
                8,
            )
        return where, module, version
    raise DkmsError(
        f"{archive}: not a DKMS tarball: no dkms.conf in {SOURCE_TREE}/ or {BINARIES_ONLY}/", 7
    )


def read_package(
    tree: Tree, conf_path: str, kernel: str, arch: str, status: int
) -> tuple[str, str]:
    """PACKAGE_NAME and PACKAGE_VERSION of a dkms.conf not yet in the trees."""
    context = Context(
        kernelver=kernel,
        arch=arch,
        kernel_source_dir=tree.kernel_source_dir(kernel),
        kernel_config=tree.kernel_config(kernel),
        dkms_tree=tree.root,
        source_tree=tree.settings.source_tree,
        install_tree=tree.settings.install_tree,
        module="",
        module_version="",
    )
    try:
        conf = read_conf(conf_path, context, etc_dir=tree.settings.etc_dir)
    except ConfError as exc:
        raise DkmsError(str(exc), status) from None
    if not conf.package_name or not conf.package_version:
        raise DkmsError(f"{conf_path}: names no PACKAGE_NAME and PACKAGE_VERSION", status)
    return conf.package_name, conf.package_version


def copy_source_tree(tree: Tree, source: str, module: str, version: str, say: Say) -> None:
    """``SOURCE_TREE/NAME-VERSION`` from ``source`` (dkms's add_source_tree):
    left alone when it is that directory already, replaced with --force."""
    target = f"{tree.settings.source_tree}/{module}-{version}"
    if os.path.realpath(source) == os.path.realpath(target):
        return
    if tree.settings.force and os.path.isdir(target):
        say(f"Forcing install of {module}-{version}")
        shutil.rmtree(target)
    os.makedirs(target, exist_ok=True)
    for name in sorted(os.listdir(source)):
        if name.startswith("."):
            continue
        path = f"{source}/{name}"
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.copytree(path, f"{target}/{name}", symlinks=True, dirs_exist_ok=True)
        else:
            if os.path.lexists(f"{target}/{name}"):
                os.unlink(f"{target}/{name}")
            shutil.copy2(path, f"{target}/{name}", follow_symlinks=False)


def _load_builds(tree: Tree, main_tree: str, module: str, version: str, say: Say) -> None:
    if not os.path.isdir(main_tree):
        return
    for kernel in sorted(os.listdir(main_tree)):
        if not os.path.isdir(f"{main_tree}/{kernel}"):
            continue
        for arch in sorted(os.listdir(f"{main_tree}/{kernel}")):
            built = f"{main_tree}/{kernel}/{arch}"
            if not os.path.isdir(built):
                continue
            target = tree.base_dir(Target(module, version, kernel, arch))
            if os.path.isdir(target) and not tree.settings.force:
                say(f"Warning: {target} already exists. Skipping...")
                continue
            say(f"Loading {target}...")
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(built, target, symlinks=True)


__all__ = ["copy_source_tree", "load_tarball", "make_tarball", "read_package", "tarball_name"]
