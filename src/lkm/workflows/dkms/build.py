"""``dkms add`` and ``dkms build``, as Debian's dkms 3.0.10 does them.

Build, for one package version and kernel: the key is made if missing
(dkms's prepare_signing runs first); the dkms.conf is read for the kernel;
a BUILD_EXCLUSIVE_* setting not met ends with status 77; the sources are
copied to ``build/``, patches applied, PRE_BUILD run; CLEAN runs (its
failure ignored); MAKE is ``eval``ed by bash in ``build/`` with its output
appended to ``build/make.log`` — with ``-jN KERNELRELEASE=KVER`` put after
a leading ``make``; every module the dkms.conf names must then exist
(status 7), and is stripped (``strip -g`` unless STRIP says no), signed
(lkm's sign-file) and compressed as the kernel's modules are, into
``KVER/ARCH/module/``; the log moves to ``KVER/ARCH/log/``; POST_BUILD and
CLEAN run and ``build/`` goes. A failure leaves ``build/`` and its
make.log, as dkms does, and is one line naming the first compiler error.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable

from lkm.errors import LkmError, one_line
from lkm.records import Record
from lkm.workflows.dkms.cache import cached_build, restore_build, store_build
from lkm.workflows.dkms.conf import DkmsConf
from lkm.workflows.dkms.tree import (
    DkmsError,
    Target,
    Tree,
    build_digest,
    clear_result,
    record_result,
)

Say = Callable[[str], None]
KEY_CN = "DKMS module signing key"  # the subject dkms's openssl req writes
KEY_DAYS = 36500
# What make and gcc print for an error (the first one is the cause).
_ERROR = re.compile(
    r"(: (fatal )?error: |^\S*make(\[\d+\])?: \*\*\* |: undefined reference|ERROR: modpost: )"
)
# Variables dkms unsets before it builds anything.
_UNSET = ("CC", "CXX", "CFLAGS", "CXXFLAGS", "LDFLAGS")

# Runs one command as dkms does: eval'ed by bash in DIR, dkms's variables set.
_EVAL = r"""
umask 022
kernelver=$1 arch=$2 kernel_source_dir=$3 dkms_tree=$4 source_tree=$5
module=$6 module_version=$7 __lkm_dir=$8 __lkm_log=$9 __lkm_command=${10}
shift 10
cd "$__lkm_dir" || exit 1
if [ -n "$__lkm_log" ] && [ -n "$LKM_DKMS_VERBOSE" ]; then
    set -o pipefail  # make's status, not tee's
    eval "{ $__lkm_command; } 2>&1 | tee -a \"\$__lkm_log\""
elif [ -n "$__lkm_log" ]; then
    eval "{ $__lkm_command; } >> \"\$__lkm_log\" 2>&1"
else
    eval "$__lkm_command"
fi
"""
# A PRE_/POST_ script: its first word must be executable; split as dkms's
# unquoted ``exec $run`` splits it.
_SCRIPT = r"""
cd "$1" || exit 1
run=$2
exec $run
"""


class Signing(Record):
    key: str
    cert: str
    hash_name: str
    created: bool = False


def add(tree: Tree, module: str, version: str, kernel: str, arch: str, say: Say) -> None:
    """Register SOURCE_TREE/NAME-VERSION: ``NAME/VERSION/source`` and an
    empty ``build/`` (dkms's add_module)."""
    if tree.is_added(module, version):
        raise DkmsError(
            f"{module}/{version}: already added to {tree.root} (a package version is added once)",
            3,
        )
    source = f"{tree.settings.source_tree}/{module}-{version}"
    if not os.path.isdir(source):
        raise DkmsError(f"{module}/{version}: no source directory {source}", 2)
    t = Target(module, version, kernel, arch)
    conf = tree.conf(t, tree.settings.conf or f"{source}/dkms.conf")
    _check_conf(t, conf)
    link = tree.source_link(module, version)
    root = tree.settings.root
    # In an image, the link names the sources as the image will see them.
    target = source[len(root) :] if root and source.startswith(f"{root}/") else source
    say(f"Creating symlink {link} -> {target}")
    os.makedirs(tree.build_dir(module, version), exist_ok=True)
    os.symlink(target, link)
    _script(tree, t, "post_add", conf.post_add, say)


def build(tree: Tree, t: Target, say: Say) -> str:
    """Build ``t``; returns the ``module/`` directory. Raises DkmsError."""
    if not tree.is_added(t.module, t.version):
        add(tree, t.module, t.version, t.kernel, t.arch, say)
    signing = prepare_signing(tree, t, say)
    base = tree.base_dir(t)
    if os.path.isdir(base):
        raise DkmsError(f"{t.label}: already built ({base} exists; dkms remove it first)", 3)
    digest = build_digest(tree, t)
    cached = None if tree.settings.force else cached_build(tree, t, digest)
    if cached is not None:
        say(f"Reusing the build of {t.label} from {cached} (same sources, dkms.conf and headers)")
        clear_result(tree, t)
        return restore_build(tree, t, cached)
    try:
        module_dir = _build(tree, t, signing, say)
    except DkmsError as exc:
        raise record_result(tree, t, str(exc), exc.status, exc.log, digest) from None
    clear_result(tree, t)
    store_build(tree, t, digest)
    return module_dir


def _build(tree: Tree, t: Target, signing: Signing | None, say: Say) -> str:
    conf = tree.conf(t)
    _check_conf(t, conf)
    if conf.excluded:
        raise DkmsError(
            f"{t.label}: skipped: {', '.join(conf.excluded)} is not met "
            f"({conf.path} says not to build for this kernel)",
            77,
        )
    source = tree.source_dir(t.module, t.version)
    try:
        entries = os.listdir(source)
    except OSError:
        entries = []
    if len(entries) < 2:
        raise DkmsError(f"{t.label}: {source} holds no module source", 8)
    headers = tree.kernel_source_dir(t.kernel)
    if not os.path.exists(f"{headers}/include"):
        raise DkmsError(
            f"{t.label}: no kernel headers at {headers}: install them "
            f"(apt-get install linux-headers-{t.kernel}) or name them with --kernelsourcedir",
            1,
        )
    build_dir = _fresh_build_dir(tree, t)
    _apply_patches(tree, t, conf, build_dir, say)
    env = _environment(_pre_build_cc(tree, t))
    _script(tree, t, "pre_build", conf.pre_build, say, env)
    _make(tree, t, conf, build_dir, say)
    module_dir = _keep_modules(tree, t, conf, build_dir, signing, say)
    _script(tree, t, "post_build", conf.post_build, say)
    _eval(tree, t, conf.clean, build_dir, None, _environment(None))
    shutil.rmtree(build_dir, ignore_errors=True)
    return module_dir


def _check_conf(t: Target, conf: DkmsConf) -> None:
    if conf.problems:
        raise DkmsError(f"{t.label}: bad conf file {conf.path}: {'; '.join(conf.problems)}", 8)


def prepare_signing(tree: Tree, t: Target, say: Say) -> Signing | None:
    """dkms's key (``/var/lib/dkms/mok.key`` and ``mok.pub``, a PEM key and
    a DER certificate), made on first use, and the kernel's signing hash."""
    key, cert = tree.settings.key, tree.settings.cert
    created = False
    if not (os.path.isfile(key) and os.path.isfile(cert)):
        from lkm.workflows.keygen import KeygenError, write_key_pair

        try:
            write_key_pair(key, cert, KEY_CN, KEY_DAYS, der=True, force=True)
        except KeygenError as exc:
            say(f"Warning: cannot make the signing key ({exc}); modules won't be signed")
            return None
        created = True
        say(f"Created the module signing key {key} and certificate {cert}.")
        say(
            "The kernel accepts modules signed with it once the certificate is enrolled: "
            f"mokutil --import {cert} (then confirm it in the MOK manager at the next boot)"
        )
    return Signing(key, cert, _sign_hash(tree.kernel_config(t.kernel)), created)


def _sign_hash(config: str) -> str:
    try:
        with open(config, encoding="utf-8", errors="replace") as file:
            for line in file:
                if line.startswith("CONFIG_MODULE_SIG_HASH="):
                    return line.split("=", 1)[1].strip().replace('"', "") or "sha512"
    except OSError:
        pass
    return "sha512"


def _fresh_build_dir(tree: Tree, t: Target) -> str:
    """``cp -a source/ build``: the sources (followed through the link)."""
    build_dir = tree.build_dir(t.module, t.version)
    shutil.rmtree(build_dir, ignore_errors=True)
    source = os.path.realpath(tree.source_dir(t.module, t.version))
    try:
        shutil.copytree(source, build_dir, symlinks=True)
    except (OSError, shutil.Error) as exc:
        raise DkmsError(f"{t.label}: cannot copy {source} to {build_dir}: {exc}", 1) from None
    return build_dir


def _apply_patches(tree: Tree, t: Target, conf: DkmsConf, build_dir: str, say: Say) -> None:
    from lkm.system.run import run

    for patch in conf.patches:
        path = f"{build_dir}/patches/{patch}"
        if not os.path.exists(path):
            raise DkmsError(
                f"{t.label}: patch {patch} named in dkms.conf is not in {build_dir}/patches", 5
            )
        say(f"applying patch {patch}")
        with open(path, "rb") as file:
            done = run(["patch", "-p1"], check=False, input=file.read(), cwd=build_dir)
        if done.status != 0:
            raise DkmsError(f"{t.label}: patch {patch} does not apply (see {build_dir})", 6)


def _environment(cc: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _UNSET}
    env["PATH"] = f"{env.get('PATH', '')}:/usr/lib/dkms"
    if cc is not None:
        env["CC"] = cc
    return env


def _pre_build_cc(tree: Tree, t: Target) -> str | None:
    """The compiler the kernel was built with, when installed (CC for
    PRE_BUILD): the first word of CONFIG_CC_VERSION_TEXT."""
    config = f"{tree.kernel_source_dir(t.kernel)}/.config"
    try:
        with open(config, encoding="utf-8", errors="replace") as file:
            for line in file:
                match = re.match(r'CONFIG_CC_VERSION_TEXT="([^ ]*) .*"', line)
                if match:
                    return match.group(1) if shutil.which(match.group(1)) else None
    except OSError:
        pass
    return None


def _make_cc(tree: Tree, t: Target) -> str | None:
    """CC for MAKE: what Debian's headers' ``.kernelvariables`` says (make
    evaluates it), else unset — as dkms's actual_build decides."""
    from lkm.system.run import run

    variables = f"{tree.kernel_source_dir(t.kernel)}/.kernelvariables"
    if not os.path.isfile(variables):
        return None
    makefile = f"show-%:\n\t@echo $($*)\ninclude {variables}\n"
    done = run(
        ["make", "-f", "-", "show-CC"], check=False, input=makefile.encode(), env=_environment(None)
    )
    return done.stdout.decode("utf-8", "replace").strip()


def jobs_argument(jobs: str | None) -> str:
    """``-j``'s value: the processors lkm may use, ``""`` for ``-j 0``."""
    if jobs is None:
        return str(len(os.sched_getaffinity(0)))
    return "" if jobs == "0" else jobs


def make_command(conf: DkmsConf, jobs: str | None, shared: bool = False) -> str:
    """MAKE with ``-jN KERNELRELEASE=KVER`` after a leading ``make``
    (dkms's ``${make_command/#make/…}``: any command starting so);
    ``shared``: no ``-jN``, the jobs come from lkm's jobserver."""
    if conf.make_command.startswith("make"):
        jobs_option = "" if shared else f"-j{jobs_argument(jobs)} "
        return f"make {jobs_option}KERNELRELEASE={conf.kernelver}" + conf.make_command[4:]
    return conf.make_command


def _eval(
    tree: Tree, t: Target, command: str, directory: str, log: str | None, env: dict[str, str]
) -> int:
    from lkm.system.run import NULL, run

    jobserver = tree.settings.jobserver
    if jobserver is not None:
        env = dict(env, MAKEFLAGS=jobserver.makeflags())
    if tree.settings.verbose:  # --verbose: make's output on stdout too, as it comes
        env = dict(env, LKM_DKMS_VERBOSE="1")

    argv = [
        "bash",
        "-c",
        _EVAL,
        "lkm-dkms",
        t.kernel,
        t.arch,
        tree.kernel_source_dir(t.kernel),
        tree.root,
        tree.settings.source_tree,
        t.module,
        t.version,
        directory,
        log or "",
        command,
    ]
    output = NULL if log is None else "inherit"
    fds = () if jobserver is None else jobserver.fds
    return run(argv, check=False, stdout=output, stderr=output, env=env, pass_fds=fds).status


def _make(tree: Tree, t: Target, conf: DkmsConf, build_dir: str, say: Say) -> None:
    import time

    env = _environment(_make_cc(tree, t))
    say("Cleaning build area...")
    _eval(tree, t, conf.clean, build_dir, None, env)
    log = f"{build_dir}/make.log"
    with open(log, "a", encoding="utf-8") as file:
        file.write(f"DKMS make.log for {t.module}-{t.version} for kernel {t.kernel} ({t.arch})\n")
        file.write(time.strftime("%a %b %e %H:%M:%S %Z %Y\n"))
    command = make_command(conf, tree.settings.jobs, tree.settings.jobserver is not None)
    say(f"Building {t.label}: {command}")
    status = _eval(tree, t, command, build_dir, log, env)
    if status != 0:
        raise DkmsError(
            f"{t.label}: make failed (exit status {status}): {first_error(log)}; full log: {log}",
            10,
            log,
        )
    for mod in conf.modules:
        built = f"{build_dir}/{mod.built_location}{mod.built_name}.ko"
        if not os.path.exists(built):
            cause = first_error(log, default="")
            why = f": {cause}" if cause else " (make succeeded)"
            raise DkmsError(
                f"{t.label}: module {mod.built_location}{mod.built_name}.ko was not built{why}; "
                f"full log: {log}",
                7,
                log,
            )


def first_error(log: str, default: str = "no error line in the log") -> str:
    """The first error make or the compiler reported in ``log``."""
    try:
        with open(log, encoding="utf-8", errors="replace") as file:
            for line in file:
                if _ERROR.search(line):
                    return one_line(line.strip())
    except OSError:
        pass
    return default


def _keep_modules(
    tree: Tree, t: Target, conf: DkmsConf, build_dir: str, signing: Signing | None, say: Say
) -> str:
    """Move the log, and strip, sign and compress each module into ``module/``."""
    from lkm.formats.compression import Compression
    from lkm.system.run import run
    from lkm.workflows.install import compress_like_kbuild

    base = tree.base_dir(t)
    os.makedirs(f"{base}/log", exist_ok=True)
    config = tree.kernel_config(t.kernel)
    if os.path.isfile(config):
        shutil.copyfile(config, f"{base}/log/{os.path.basename(config)}")
    os.replace(f"{build_dir}/make.log", f"{base}/log/make.log")
    module_dir = f"{base}/module"
    os.makedirs(module_dir, exist_ok=True)
    suffix = tree.module_suffix(t.kernel)
    kind = next(k for k in Compression if k.extension == suffix)
    signer = None
    if signing is not None:
        from lkm.workflows.sign import load_signer

        signer = load_signer(signing.key, signing.cert)
    for mod in conf.modules:
        built = f"{build_dir}/{mod.built_location}{mod.built_name}.ko"
        if mod.strip:
            run(["strip", "-g", built], check=False)
        with open(built, "rb") as file:
            image = file.read()
        try:
            if signer is not None and signing is not None:
                from lkm.workflows.sign import sign_module

                say(f"Signing module {built}")
                image = sign_module(image, signer, signing.hash_name)
            data = compress_like_kbuild(image, kind)
        except LkmError as exc:
            raise DkmsError(f"{t.label}: {built}: {exc}", 1) from None
        target = f"{module_dir}/{mod.dest_name}.ko{suffix}"
        with open(target, "wb") as file:
            file.write(data)
    return module_dir


def _script(
    tree: Tree, t: Target, kind: str, script: str, say: Say, env: dict[str, str] | None = None
) -> int:
    """A PRE_/POST_ script: run in ``build/`` (build scripts) or ``source/``;
    dkms only warns when it is not executable, and ignores its status
    except PRE_INSTALL's."""
    from lkm.system.run import run

    if not script:
        return 0
    where = "build" if kind in ("pre_build", "post_build") else "source"
    directory = f"{tree.version_dir(t.module, t.version)}/{where}"
    path = f"{directory}/{script}"
    if not os.access(path.split(" ", 1)[0], os.X_OK):
        say(f"Warning: The {kind} script is not executable.")
        return 0
    say(f"Running the {kind} script:")
    argv = ["bash", "-c", _SCRIPT, "lkm-dkms", directory, path]
    return run(
        argv, check=False, stdout="inherit", stderr="inherit", env=env or _environment(None)
    ).status


__all__ = [
    "KEY_CN",
    "Signing",
    "add",
    "build",
    "first_error",
    "jobs_argument",
    "make_command",
    "prepare_signing",
]
