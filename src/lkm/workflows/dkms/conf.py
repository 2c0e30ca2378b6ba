"""``dkms.conf``, evaluated as DKMS evaluates it: by bash, per kernel.

A ``dkms.conf`` is a bash fragment, not a list of assignments: packages
test ``$kernelver``, source the kernel's ``.config``, run ``sed`` and
``sort -V`` and build arrays in loops. So lkm hands it to bash, as dkms
3.0.10's ``read_conf``/``safe_source`` do: in a subshell with dkms's
variables set (``kernelver``, ``arch``, ``kernel_source_dir``,
``kernel_config``, ``dkms_tree``, ``source_tree``, ``install_tree``,
``module``, ``module_version``…), ``extglob`` on, its output discarded.
What the subshell leaves in the variables dkms knows is printed as
``NAME[I]="VALUE"`` lines and sourced once more by the outer shell —
dkms's own round trip, whose second expansion of ``$`` and backquotes a
package may rely on. Then ``/etc/dkms/MODULE.conf`` and its more specific
siblings, if present, are sourced the same way. Unknown variables are
ignored; a plain assignment is index 0 of an array.

The outer shell then decides, in bash, what needs bash's own regular
expressions (``MAKE_MATCH``, ``PATCH_MATCH``, ``BUILD_EXCLUSIVE_KERNEL``
and ``_ARCH`` are ``[[ =~ ]]`` patterns; ``BUILD_EXCLUSIVE_CONFIG`` is
``grep -E`` against the kernel's ``.config``), and prints every result
back to Python NUL-framed (``NAME NUL COUNT NUL (INDEX NUL VALUE NUL)…``),
which no value can break. The rest of ``read_conf``'s rules (defaults,
``STRIP``, locations, the checks) are plain Python below.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from lkm.errors import LkmError, one_line
from lkm.records import Record

# The variables dkms 3.0.10 takes from a dkms.conf (its dkms_conf_variables).
CONF_VARIABLES = (
    "CLEAN",
    "PACKAGE_NAME",
    "PACKAGE_VERSION",
    "POST_ADD",
    "POST_BUILD",
    "POST_INSTALL",
    "POST_REMOVE",
    "PRE_BUILD",
    "PRE_INSTALL",
    "BUILD_DEPENDS",
    "BUILD_EXCLUSIVE_KERNEL",
    "BUILD_EXCLUSIVE_ARCH",
    "BUILD_EXCLUSIVE_CONFIG",
    "build_exclude",
    "OBSOLETE_BY",
    "MAKE",
    "MAKE_MATCH",
    "PATCH",
    "PATCH_MATCH",
    "patch_array",
    "BUILT_MODULE_NAME",
    "built_module_name",
    "BUILT_MODULE_LOCATION",
    "built_module_location",
    "DEST_MODULE_NAME",
    "dest_module_name",
    "DEST_MODULE_LOCATION",
    "dest_module_location",
    "STRIP",
    "strip",
    "AUTOINSTALL",
    "NO_WEAK_MODULES",
    "SIGN_FILE",
    "MOK_SIGNING_KEY",
    "MOK_CERTIFICATE",
    "REMAKE_INITRD",
    "MODULES_CONF",
    "MODULES_CONF_OBSOLETES",
    "MODULES_CONF_ALIAS_TYPE",
    "MODULES_CONF_OBSOLETE_ONLY",
)
# What framework.conf may set (dkms's two framework variable lists).
FRAMEWORK_VARIABLES = (
    "source_tree",
    "dkms_tree",
    "install_tree",
    "tmp_location",
    "verbose",
    "symlink_modules",
    "autoinstall_all_kernels",
    "modprobe_on_install",
    "sign_file",
    "mok_signing_key",
    "mok_certificate",
)
# Where DEST_MODULE_LOCATION may point (dkms refuses anything else).
DEST_PREFIXES = ("/kernel", "/updates", "/extra")
_VARIABLES_TIMEOUT = 120.0

# Arguments: the dkms variables below, then "--", then the files to source.
# Everything dkms.conf may read is a shell variable of dkms's name.
_DRIVER = r"""
shopt -s extglob
umask 022
PATH="$PATH:/usr/lib/dkms"
kernelver=$1 arch=$2 kernel_source_dir=$3 kernel_config=$4 dkms_tree=$5
source_tree=$6 install_tree=$7 module=$8 module_version=$9
current_kernel=${10} current_os=${11} running_distribution=${12} tmp_location=${13}
__lkm_names=(${14}) __lkm_framework=${15}
shift 16
__lkm_files=("$@")
set --
[ -n "$__lkm_framework" ] || unset "${__lkm_names[@]}"
__lkm_tmp=$(mktemp) || exit 1
for __lkm_file in "${__lkm_files[@]}"; do
    [ -e "$__lkm_file" ] || continue
    (
        exec >"$__lkm_tmp"
        . "$__lkm_file" >/dev/null
        for __lkm_name in "${__lkm_names[@]}"; do
            eval "__lkm_keys=(\"\${!$__lkm_name[@]}\")"
            for __lkm_key in "${__lkm_keys[@]}"; do
                eval "__lkm_value=\${$__lkm_name[\$__lkm_key]}"
                printf '%s[%s]="%s"\n' "$__lkm_name" "$__lkm_key" "$__lkm_value"
            done
        done
    )
    . "$__lkm_tmp"
    if [ -z "$__lkm_framework" ]; then
        for __lkm_name in REMAKE_INITRD MODULES_CONF MODULES_CONF_OBSOLETES \
                MODULES_CONF_ALIAS_TYPE MODULES_CONF_OBSOLETE_ONLY; do
            eval "__lkm_count=\${#$__lkm_name[@]}"
            (( __lkm_count )) && echo "Deprecated feature: $__lkm_name ($__lkm_file)" >&2
        done
    fi
done
rm -f "$__lkm_tmp"
__lkm_put() {
    local __name=$1 __key
    eval "local __keys=(\"\${!$__name[@]}\")"
    printf '%s\0%s\0' "$__name" "${#__keys[@]}"
    for __key in "${__keys[@]}"; do
        eval "printf '%s\0%s\0' \"\$__key\" \"\${$__name[\$__key]}\""
    done
}
if [ -z "$__lkm_framework" ]; then
    # MAKE_MATCH, PATCH_MATCH and BUILD_EXCLUSIVE_* need bash's own regexes.
    [[ ${MAKE_MATCH[0]} ]] || __lkm_make="${MAKE[0]}"
    for ((__i = 0; __i < ${#MAKE[@]}; __i++)); do
        [[ ${MAKE[$__i]} && ${MAKE_MATCH[$__i]} && $kernelver =~ ${MAKE_MATCH[$__i]} ]] &&
            __lkm_make="${MAKE[$__i]}"
    done
    __lkm_patches=()
    for ((__i = 0; __i < ${#PATCH[@]}; __i++)); do
        __m=${PATCH_MATCH[$__i]}
        if [[ ${PATCH[$__i]} && (! $__m || $kernelver =~ $__m) ]]; then
            __lkm_patches+=("${PATCH[$__i]}")
        fi
    done
    __lkm_excluded=()
    [[ $BUILD_EXCLUSIVE_KERNEL && ! $kernelver =~ $BUILD_EXCLUSIVE_KERNEL ]] &&
        __lkm_excluded+=("BUILD_EXCLUSIVE_KERNEL=$BUILD_EXCLUSIVE_KERNEL")
    [[ $BUILD_EXCLUSIVE_ARCH && ! $arch =~ $BUILD_EXCLUSIVE_ARCH ]] &&
        __lkm_excluded+=("BUILD_EXCLUSIVE_ARCH=$BUILD_EXCLUSIVE_ARCH")
    if [[ $BUILD_EXCLUSIVE_CONFIG && -e $kernel_source_dir/.config ]]; then
        for __kconf in $BUILD_EXCLUSIVE_CONFIG; do
            case "$__kconf" in
            !*) grep -q -E "^${__kconf#!}=[ym]" "$kernel_source_dir/.config" &&
                    __lkm_excluded+=("BUILD_EXCLUSIVE_CONFIG=$__kconf") ;;
            *) grep -q -E "^${__kconf}=[ym]" "$kernel_source_dir/.config" ||
                    __lkm_excluded+=("BUILD_EXCLUSIVE_CONFIG=$__kconf") ;;
            esac
        done
    fi
    __lkm_names+=(__lkm_make __lkm_patches __lkm_excluded)
fi
for __lkm_name in "${__lkm_names[@]}"; do
    __lkm_put "$__lkm_name"
done
"""


class ConfError(LkmError, ValueError):
    """A dkms.conf that cannot be read or does not describe a package."""


class Variables(Record):
    """What bash left in the variables asked for: index -> value, in
    bash's index order (a plain assignment is index 0)."""

    values: Mapping[str, Mapping[int, str]]

    def array(self, name: str) -> Mapping[int, str]:
        return self.values.get(name, {})

    def get(self, name: str, index: int = 0) -> str:
        return self.array(name).get(index, "")

    def count(self, name: str) -> int:
        return len(self.array(name))


class Context(Record):
    """dkms's shell variables while it sources a dkms.conf."""

    kernelver: str
    arch: str
    kernel_source_dir: str
    kernel_config: str
    dkms_tree: str
    source_tree: str
    install_tree: str
    module: str = ""
    module_version: str = ""
    distribution: str = "debian"
    tmp_location: str = "/tmp"


def evaluate(
    files: Sequence[str],
    context: Context,
    names: Sequence[str] = CONF_VARIABLES,
    *,
    framework: bool = False,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[Variables, str]:
    """Source ``files`` in order (missing ones skipped) as dkms does, and
    return the variables ``names`` and what bash wrote to stderr."""
    from lkm.system.run import CommandError, run

    argv = [
        "bash",
        "-c",
        _DRIVER,
        "lkm-dkms",
        context.kernelver,
        context.arch,
        context.kernel_source_dir,
        context.kernel_config,
        context.dkms_tree,
        context.source_tree,
        context.install_tree,
        context.module,
        context.module_version,
        os.uname().release,
        os.uname().sysname,
        context.distribution,
        context.tmp_location,
        " ".join(names),
        "1" if framework else "",
        "--",
        *files,
    ]
    try:
        done = run(argv, check=False, cwd=cwd, env=env, timeout=_VARIABLES_TIMEOUT)
    except CommandError as exc:
        raise ConfError(f"{files[0] if files else 'dkms.conf'}: {exc}") from None
    values = _parse(done.stdout)
    return Variables(values), done.stderr.decode("utf-8", "replace")


def _parse(data: bytes) -> dict[str, dict[int, str]]:
    """``NAME NUL COUNT NUL (INDEX NUL VALUE NUL)…`` as the driver prints it."""
    fields = data.split(b"\0")
    values: dict[str, dict[int, str]] = {}
    at = 0
    while at + 1 < len(fields):
        name = fields[at].decode("utf-8", "surrogateescape")
        count = int(fields[at + 1])
        at += 2
        array: dict[int, str] = {}
        for _ in range(count):
            array[int(fields[at])] = fields[at + 1].decode("utf-8", "surrogateescape")
            at += 2
        values[name] = array
    return values


class ConfModule(Record):
    """One module a package builds and installs (one index of the arrays)."""

    built_name: str  # BUILT_MODULE_NAME (default: PACKAGE_NAME for a single module)
    built_location: str  # BUILT_MODULE_LOCATION, "" or ending in "/"
    dest_name: str  # DEST_MODULE_NAME (default: the built name)
    dest_location: str  # where it is installed: Debian's /updates/dkms
    conf_location: str  # DEST_MODULE_LOCATION as written
    strip: bool = True


class DkmsConf(Record):
    """A dkms.conf as dkms 3.0.10's read_conf makes of it, for one kernel."""

    path: str
    kernelver: str
    arch: str
    package_name: str
    package_version: str
    make_command: str
    clean: str
    modules: tuple[ConfModule, ...]
    patches: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()  # the BUILD_EXCLUSIVE_* settings not met
    pre_build: str = ""
    post_build: str = ""
    pre_install: str = ""
    post_install: str = ""
    post_add: str = ""
    post_remove: str = ""
    obsolete_by: str = ""
    autoinstall: bool = False
    remake_initrd: bool = False
    build_depends: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()  # dkms.conf errors: dkms refuses the file (exit 8)
    messages: str = ""  # what bash wrote to stderr while sourcing


def override_files(etc_dir: str, module: str, version: str, kernel: str, arch: str) -> list[str]:
    """The files dkms sources after a package's dkms.conf, least specific first."""
    base = f"{etc_dir}/dkms/{module}"
    return [
        f"{base}.conf",
        f"{base}-{version}.conf",
        f"{base}-{version}-{kernel}.conf",
        f"{base}-{version}-{kernel}-{arch}.conf",
    ]


def read_conf(
    path: str,
    context: Context,
    *,
    etc_dir: str = "/etc",
    addon_modules_dir: str = "",
    env: Mapping[str, str] | None = None,
) -> DkmsConf:
    """``path`` (and the /etc/dkms overrides) evaluated for one kernel."""
    if not os.access(path, os.R_OK):
        raise ConfError(f"{path}: cannot read the dkms.conf file")
    files = [
        path,
        *override_files(
            etc_dir, context.module, context.module_version, context.kernelver, context.arch
        ),
    ]
    variables, messages = evaluate(files, context, env=env)
    return _interpret(path, context, variables, messages, addon_modules_dir)


def dest_location(location: str, distribution: str, addon_modules_dir: str = "") -> str:
    """Where dkms really installs a module (override_dest_module_location)."""
    if addon_modules_dir:
        return f"/{addon_modules_dir}"
    if distribution.startswith(("fedora", "rhel", "ovm")):
        return "/extra"
    if distribution.startswith(("sles", "suse", "opensuse")):
        return "/updates"
    if distribution.startswith(("debian", "ubuntu", "arch")):
        return "/updates/dkms"
    return location


def _strip_setting(value: str, first: bool | None) -> bool | None:
    """STRIP[i]: n… no, y… yes, empty: as index 0 (default yes); anything
    else leaves it unset, which strips."""
    if value[:1] in ("n", "N"):
        return False
    if value[:1] in ("y", "Y"):
        return True
    if value == "":
        return True if first is None else first
    return None


def _interpret(
    path: str, context: Context, v: Variables, messages: str, addon_modules_dir: str
) -> DkmsConf:
    problems: list[str] = []
    size = max(
        v.count(name)
        for name in (
            "BUILT_MODULE_NAME",
            "BUILT_MODULE_LOCATION",
            "DEST_MODULE_NAME",
            "DEST_MODULE_LOCATION",
        )
    )
    modules = []
    first_strip: bool | None = None
    for index in range(size):
        built = v.get("BUILT_MODULE_NAME", index)
        if not built and v.count("DEST_MODULE_LOCATION") == 1:
            built = v.get("PACKAGE_NAME")
        dest = v.get("DEST_MODULE_NAME", index) or built
        location = v.get("BUILT_MODULE_LOCATION", index)
        if location and not location.endswith("/"):
            location += "/"
        strip = _strip_setting(v.get("STRIP", index), first_strip)
        if index == 0:
            first_strip = strip
        conf_location = v.get("DEST_MODULE_LOCATION", index)
        if not built:
            problems.append(f"No 'BUILT_MODULE_NAME' directive specified for record #{index}.")
        if built.endswith((".o", ".ko")):
            problems.append(
                f"'BUILT_MODULE_NAME' directive ends in '.o' or '.ko' in record #{index}."
            )
        if dest.endswith((".o", ".ko")):
            problems.append(
                f"'DEST_MODULE_NAME' directive ends in '.o' or '.ko' in record #{index}."
            )
        if not conf_location:
            problems.append(f"No 'DEST_MODULE_LOCATION' directive specified for record #{index}.")
        if not conf_location.startswith(DEST_PREFIXES):
            problems.append(
                "Directive 'DEST_MODULE_LOCATION' does not begin with '/kernel', '/updates', "
                f"or '/extra' in record #{index}."
            )
        modules.append(
            ConfModule(
                built,
                location,
                dest,
                dest_location(conf_location, context.distribution, addon_modules_dir),
                conf_location,
                strip is not False,
            )
        )
    if not modules:
        problems.append("No 'DEST_MODULE_LOCATION' directive specified.")
    name, version = v.get("PACKAGE_NAME"), v.get("PACKAGE_VERSION")
    if not name:
        problems.append("No 'PACKAGE_NAME' directive specified.")
    if not version:
        problems.append("No 'PACKAGE_VERSION' directive specified.")
    build_dir = f"{context.dkms_tree}/{context.module}/{context.module_version}/build"
    make = v.get("__lkm_make") or f"make -C {context.kernel_source_dir} M={build_dir}"
    clean = v.get("CLEAN") or f"make -C {context.kernel_source_dir} M={build_dir} clean"
    make += _toolchain_overrides(context)
    return DkmsConf(
        path=path,
        kernelver=context.kernelver,
        arch=context.arch,
        package_name=name,
        package_version=version,
        make_command=make,
        clean=clean,
        modules=tuple(modules),
        patches=tuple(v.array("__lkm_patches").values()),
        excluded=tuple(v.array("__lkm_excluded").values()),
        pre_build=v.get("PRE_BUILD"),
        post_build=v.get("POST_BUILD"),
        pre_install=v.get("PRE_INSTALL"),
        post_install=v.get("POST_INSTALL"),
        post_add=v.get("POST_ADD"),
        post_remove=v.get("POST_REMOVE"),
        obsolete_by=v.get("OBSOLETE_BY"),
        # dkms 3.0.10's autoinstall tests only that AUTOINSTALL is set
        # (``[[ ! $AUTOINSTALL ]]``): any value, "no" included, means yes.
        autoinstall=bool(v.get("AUTOINSTALL")),
        remake_initrd=v.get("REMAKE_INITRD").lower().startswith("y"),
        build_depends=tuple(v.array("BUILD_DEPENDS").values()),
        problems=tuple(problems),
        messages=messages,
    )


def _toolchain_overrides(context: Context) -> str:
    """`` CC=clang`` / `` LD=ld.lld`` when the kernel was built with them:
    dkms reads the headers' vmlinux ``.comment`` section, else ``.config``."""
    vmlinux = f"{context.kernel_source_dir}/vmlinux"
    if os.path.exists(vmlinux):
        comment = _comment_section(vmlinux)
        clang, lld = b"clang" in comment, b"LLD" in comment
    else:
        try:
            with open(context.kernel_config, "rb") as config:
                text = config.read()
        except OSError:
            return ""
        clang, lld = b"CONFIG_CC_IS_CLANG=y" in text, b"CONFIG_LD_IS_LLD=y" in text
    return (" CC=clang" if clang else "") + (" LD=ld.lld" if lld else "")


def _comment_section(path: str) -> bytes:
    from lkm.formats.elf import ElfFile
    from lkm.system.files import BINARY, read_file

    try:
        data = read_file(path, BINARY)
        return ElfFile(data).section_data(".comment") or b""
    except (LkmError, OSError, ValueError):
        return b""


def read_framework(
    etc_dir: str, defaults: Mapping[str, str], env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """framework.conf and framework.conf.d/*.conf, sourced as dkms does.
    ``defaults`` are dkms's own values of the tree variables, which only
    the files may change; the signing variables (``sign_file``,
    ``mok_signing_key``, ``mok_certificate``) may also come from the
    environment, as with dkms, which never sets them itself."""
    import glob

    files = [
        f"{etc_dir}/dkms/framework.conf",
        *sorted(glob.glob(f"{glob.escape(etc_dir)}/dkms/framework.conf.d/*.conf")),
    ]
    environment = {
        key: value
        for key, value in (os.environ if env is None else env).items()
        if key not in FRAMEWORK_VARIABLES[:8]
    }
    context = Context(
        "",
        "",
        "",
        "",
        dkms_tree=defaults["dkms_tree"],
        source_tree=defaults["source_tree"],
        install_tree=defaults["install_tree"],
        tmp_location=defaults.get("tmp_location", "/tmp"),
    )
    variables, _ = evaluate(files, context, FRAMEWORK_VARIABLES, framework=True, env=environment)
    result = dict(defaults)
    for name in FRAMEWORK_VARIABLES:
        if variables.count(name):
            result[name] = variables.get(name)
    return result


def distribution(etc_dir: str = "/etc") -> str:
    """dkms's running_distribution: os-release's ID (ubuntu), else the
    first word… of ID_LIKE as a whole, else ID."""
    import shlex

    fields: dict[str, str] = {}
    try:
        with open(f"{etc_dir}/os-release", encoding="utf-8", errors="replace") as file:
            for line in file:
                key, sep, value = line.strip().partition("=")
                if sep:
                    try:
                        fields[key] = " ".join(shlex.split(value))
                    except ValueError:
                        fields[key] = value
    except OSError:
        return "unknown"
    if fields.get("ID") == "ubuntu":
        return "ubuntu"
    return fields.get("ID_LIKE") or fields.get("ID", "")


def describe_problems(conf: DkmsConf) -> str:
    return one_line("; ".join(conf.problems))


__all__ = [
    "CONF_VARIABLES",
    "ConfError",
    "ConfModule",
    "Context",
    "DkmsConf",
    "Variables",
    "dest_location",
    "distribution",
    "evaluate",
    "read_conf",
    "read_framework",
]
