"""``dkms install``, ``uninstall`` and ``remove``, as Debian's dkms 3.0.10.

Install copies each built module (already signed and compressed in
``module/``) to ``INSTALL_TREE/KVER/updates/dkms/`` — where Debian's dkms
puts every module whatever DEST_MODULE_LOCATION says — after dkms's
version sanity check (a module of the same name already in the kernel's
tree with the same or a newer version is left alone, as dkms leaves it);
then ``kernel-KVER-ARCH`` points at the build and the tree is indexed by
lkm's depmod. The files land through :class:`lkm.workflows.install.TreeChange`:
temporary names, renames, and every change undone when a step fails
(dkms uninstalls again when depmod fails; lkm puts back the same inodes).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from lkm.errors import LkmError
from lkm.workflows.dkms.build import _script, build
from lkm.workflows.dkms.initramfs import reason_to_refresh, refresh_initramfs
from lkm.workflows.dkms.status import installed_location
from lkm.workflows.dkms.tree import (
    NOT_BUILDS,
    DkmsError,
    Target,
    Tree,
    clear_result,
    module_file,
)
from lkm.workflows.dkms.versions import compare, version_info

Say = Callable[[str], None]
Report = Callable[[str, str], None]


def install(tree: Tree, t: Target, say: Say, report: Report, *, reindex: bool = True) -> list[str]:
    """Install ``t`` (building it first when needed); the files placed.
    ``reindex=False``: the caller runs :func:`reindex` once for several."""
    from lkm.workflows.install import TreeChange

    if not tree.is_built(t):
        build(tree, t, say)
    kernel_dir = f"{tree.settings.install_tree}/{t.kernel}"
    if not os.path.exists(kernel_dir):
        raise DkmsError(f"{t.label}: no module tree {kernel_dir}: the kernel is not installed", 6)
    conf = tree.conf(t)
    if tree.is_installed(t):
        raise DkmsError(f"{t.label}: already installed", 5)
    suffix = tree.module_suffix(t.kernel)
    base = tree.base_dir(t)
    change = TreeChange()
    placed: list[str] = []
    sane = [_version_sane(tree, t, mod.dest_name, conf.obsolete_by, say) for mod in conf.modules]
    if any(sane):
        _script(tree, t, "pre_install", conf.pre_install, say)

    def steps() -> None:
        for mod, ok in zip(conf.modules, sane, strict=True):
            if not ok:
                continue
            source = module_file(f"{base}/module", mod.dest_name, suffix)
            if source is None:
                raise DkmsError(
                    f"{t.label}: built module {mod.dest_name} is missing from {base}/module", 6
                )
            target_dir = f"{kernel_dir}{mod.dest_location}"
            change.make_dirs(target_dir)
            with open(source, "rb") as file:
                data = file.read()
            target = f"{target_dir}/{os.path.basename(source)}"
            say(f"Installing {target}")
            change.write(target, data)
            placed.append(target)
        if reindex:
            _reindex(tree, t, change, report)

    _apply(change, steps, kernel_dir, t)
    link = tree.kernel_link(t.module, t.kernel, t.arch)
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(f"{t.version}/{t.kernel}/{t.arch}", link)
    _script(tree, t, "post_install", conf.post_install, say)
    if reindex:  # else the caller indexes the tree, then refreshes the initramfs
        reason = reason_to_refresh(tree, t, conf.remake_initrd, placed)
        if reason is not None:
            refresh_initramfs(tree, t, reason, say)
    return placed


def _version_sane(tree: Tree, t: Target, name: str, obsolete_by: str, say: Say) -> bool:
    """dkms's check_version_sanity: False (and a message) when the kernel's
    tree already has the module at this or a newer version."""
    from lkm.workflows.dkms.versions import padded

    force = tree.settings.force
    if obsolete_by and not force and _obsoleted(t.kernel, obsolete_by, padded):
        say(f"{name}: obsoleted by kernel {obsolete_by}; not installed (--force overrides)")
        return False
    kernel_dir = f"{tree.settings.install_tree}/{t.kernel}"
    found = _find_module(kernel_dir, name, tree.module_suffix(t.kernel))
    if len(found) != 1:
        if found:
            say(f"Warning: cannot check the version: several {name} modules in kernel {t.kernel}")
        return True
    built = module_file(f"{tree.base_dir(t)}/module", name, tree.module_suffix(t.kernel))
    result = compare(found[0], built)
    if force or result not in (">", "=", "=="):
        return True
    theirs, ours = version_info(found[0])[0], version_info(built)[0]
    if result == ">":
        say(
            f"Error! Module version {ours} for {name} is not newer than what is already "
            f"found in kernel {t.kernel} ({theirs}); not installed (--force overrides)"
        )
    else:
        say(
            f"Module version {ours} for {name} exactly matches what is already found in "
            f"kernel {t.kernel}; not installed (--force overrides)"
        )
    return False


def _obsoleted(kernel: str, obsolete_by: str, padded: Callable[[str], str]) -> bool:
    obs, mine = obsolete_by.split("-"), kernel.split("-")
    if padded(obs[0]) == padded(mine[0]):
        return len(obs) < 2 or padded(mine[1] if len(mine) > 1 else "") >= padded(obs[1])
    return padded(mine[0]) > padded(obs[0])


def _find_module(directory: str, name: str, suffix: str) -> list[str]:
    """``find DIR -name NAME.ko -o -name NAME.ko.SUFFIX``, links not followed."""
    names = {f"{name}.ko", f"{name}.ko{suffix}"}
    found: list[str] = []
    for path, _, files in os.walk(directory):
        found.extend(f"{path}/{f}" for f in files if f in names)
    return sorted(found)


def _reindex(tree: Tree, t: Target, change: object, report: Report) -> None:
    """lkm's depmod over the kernel's tree (dkms: ``depmod -a KVER``)."""
    from lkm.workflows.depmod import OUTPUT_FILES
    from lkm.workflows.install import TreeChange

    if tree.settings.no_depmod:
        return
    install_tree = tree.settings.install_tree.rstrip("/") or "/"
    assert isinstance(change, TreeChange)
    change.keep_indexes(f"{install_tree}/{t.kernel}", OUTPUT_FILES)
    reindex(tree, t.kernel, t.label, report)


def reindex(tree: Tree, kernel: str, label: str, report: Report) -> None:
    """lkm's depmod over one kernel's tree; DkmsError (``label`` first)
    when it cannot index it."""
    from lkm.workflows.depmod import DepmodSettings, run_depmod

    install_tree = tree.settings.install_tree.rstrip("/") or "/"
    basedir, moduledir = depmod_tree(tree)
    settings = DepmodSettings(version=kernel, basedir=basedir, moduledir=moduledir)
    try:
        result = run_depmod(settings, report)
    except (LkmError, OSError) as exc:
        raise DkmsError(f"{label}: depmod failed: {exc}", 6) from None
    if result.status != 0:
        raise DkmsError(f"{label}: depmod could not index {install_tree}/{kernel}", 6)


def depmod_tree(tree: Tree) -> tuple[str, str]:
    """(basedir, moduledir) for depmod of the install tree."""
    return _split_install_tree(tree.settings.install_tree.rstrip("/") or "/")


def _split_install_tree(install_tree: str) -> tuple[str, str]:
    """(basedir, moduledir) for depmod: ``ROOT/lib/modules`` is ROOT and
    /lib/modules; any other tree is its parent and its name."""
    if install_tree.endswith("/lib/modules"):
        return install_tree[: -len("/lib/modules")], "/lib/modules"
    parent, name = os.path.split(install_tree)
    return parent, f"/{name}"


def _apply(change: object, steps: Callable[[], None], kernel_dir: str, t: Target) -> None:
    from lkm.workflows.install import TreeChange

    assert isinstance(change, TreeChange)
    try:
        steps()
    except BaseException as exc:
        problems = change.rollback()
        undone = f"; could not undo: {'; '.join(problems)}" if problems else "; nothing was changed"
        if isinstance(exc, DkmsError):
            raise DkmsError(f"{exc}{undone}", exc.status, exc.log) from None
        if isinstance(exc, OSError):
            raise DkmsError(
                f"{t.label}: {exc.filename or kernel_dir}: {exc.strerror}{undone}", 6
            ) from None
        raise
    change.commit(kernel_dir)


def uninstall(tree: Tree, t: Target, say: Say, report: Report) -> bool:
    """Remove ``t``'s modules from the kernel's tree when it is the active
    version there; False when it was not installed."""
    from lkm.workflows.install import TreeChange

    if not tree.is_installed(t):
        say(
            f"Module {t.module} {t.version} is not installed for kernel {t.kernel} "
            f"({t.arch}). Skipping..."
        )
        return False
    conf = tree.conf(t)
    kernel_dir = f"{tree.settings.install_tree}/{t.kernel}"
    change = TreeChange()
    doomed = _installed_files(tree, t, say)
    reason = reason_to_refresh(tree, t, conf.remake_initrd, doomed)

    def steps() -> None:
        for path in doomed:
            say(f"Deleting {path}")
            change.remove(path)
        _reindex(tree, t, change, report)

    _apply(change, steps, kernel_dir, t)
    os.unlink(tree.kernel_link(t.module, t.kernel, t.arch))
    _script(tree, t, "post_remove", conf.post_remove, say)
    if reason is not None:
        refresh_initramfs(tree, t, reason, say)
    return True


def _installed_files(tree: Tree, t: Target, say: Say) -> list[str]:
    """The files of ``t``'s modules in the kernel's tree."""
    kernel_dir = f"{tree.settings.install_tree}/{t.kernel}"
    found = []
    for index, mod in enumerate(tree.conf(t).modules):
        location = installed_location(tree, t, index)
        if location is None:
            say(f"{mod.dest_name}: not found within {kernel_dir}/")
            continue
        directory = f"{kernel_dir}{location}"
        for name in sorted(os.listdir(directory)):
            if name.startswith(f"{mod.dest_name}.ko"):
                found.append(f"{directory}/{name}")
    return found


def unbuild(tree: Tree, t: Target, say: Say) -> bool:
    """Delete ``KVER/ARCH`` (and ``KVER`` when empty); False when not built."""
    import shutil

    clear_result(tree, t)
    if not tree.is_built(t):
        say(
            f"Module {t.module} {t.version} is not built for kernel {t.kernel} "
            f"({t.arch}). Skipping..."
        )
        return False
    shutil.rmtree(tree.base_dir(t))
    kernel_dir = os.path.dirname(tree.base_dir(t))
    if not any(os.path.isdir(f"{kernel_dir}/{e}") for e in os.listdir(kernel_dir)):
        shutil.rmtree(kernel_dir)
    return True


def remove(
    tree: Tree, module: str, version: str, targets: list[Target], say: Say, report: Report
) -> None:
    """Uninstall and unbuild for each target, then forget the version when
    no build is left (and the package when no version is)."""
    import shutil

    for t in targets:
        uninstall(tree, t, say, report)
        unbuild(tree, t, say)
    vdir = tree.version_dir(module, version)
    left = [
        e
        for e in os.listdir(vdir)
        if os.path.isdir(f"{vdir}/{e}") and e not in NOT_BUILDS and not e.startswith(".")
    ]
    if not left:
        say(f"Deleting module {module}-{version} completely from the DKMS tree.")
        shutil.rmtree(vdir)
    mdir = f"{tree.root}/{module}"
    if os.path.isdir(mdir) and not os.listdir(mdir):
        os.rmdir(mdir)


__all__ = ["depmod_tree", "install", "reindex", "remove", "unbuild", "uninstall"]
