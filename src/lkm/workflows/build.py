"""``lkm build``: kbuild for an out-of-tree module, with the failures
people actually hit explained in one line.

The build itself is ``make -C KDIR M=DIR modules``, whatever the module's
own Makefile says about ``uname -r``: kbuild reads only its variables
(``obj-m``), so a tutorial's Makefile builds against the kernel asked for.
Before it, lkm finds the headers tree for that kernel and checks what
kbuild would trip over later with a less helpful message (one table,
:data:`REQUIREMENTS`, which ``lkm prepare`` shares): the headers, the
kernel's compiler, make, ``pahole`` where BTF must be generated, the
shared libraries of kbuild's prebuilt programs. After the build, one table
(:data:`DIAGNOSES`) turns kbuild's messages into one line each that says
what to add or change: modpost's "undefined!" (a symbol the kernel does
not export), "missing MODULE_LICENSE()", objtool's warning about
functions named ``init_module``/``cleanup_module``.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
from collections.abc import Callable, Sequence

from lkm.errors import LkmError
from lkm.model.kernels import KernelNotFound, find_kernel, not_found_message
from lkm.records import Record
from lkm.system.files import BINARY, HEADERS_TEXT, read_file
from lkm.system.run import CommandError, ProgramNotFound, run, stream


class BuildError(LkmError):
    """A build that cannot start or failed; the message says why and what to do."""


class Headers(Record):
    """A kernel headers tree kbuild can build against."""

    path: str
    version: str  # kernel release the headers belong to
    config: dict[str, str]

    @property
    def compiler(self) -> str:
        """The compiler command the kernel was built with (CONFIG_CC_VERSION_TEXT)."""
        text = self.config.get("CONFIG_CC_VERSION_TEXT", "gcc").strip('"')
        return text.split()[0] if text else "gcc"


class BuildResult(Record):
    modules: tuple[str, ...]  # built .ko files
    headers: Headers
    notes: tuple[str, ...] = ()  # warnings a module may not survive, one line each


def _read_config(path: str) -> dict[str, str]:
    config: dict[str, str] = {}
    for candidate in (f"{path}/include/config/auto.conf", f"{path}/.config"):
        try:
            text = read_file(candidate, HEADERS_TEXT).decode("utf-8", "replace")
        except OSError:
            continue
        for line in text.splitlines():
            key, eq, value = line.partition("=")
            if eq and key.startswith("CONFIG_"):
                config[key] = value
        return config
    return config


def find_headers(kernel: str | None) -> Headers:
    """Headers for a kernel (a release, a label, a headers tree or an image
    beside its headers; see :func:`lkm.model.kernels.find_kernel`).

    Without ``kernel``: the running kernel's, else the newest cached kernel's.
    """
    try:
        found = find_kernel(kernel, need="headers")
    except KernelNotFound as exc:
        raise BuildError(str(exc)) from None
    if found.headers is None:  # an image with no headers beside it
        raise BuildError(not_found_message(found.release, "headers"))
    return Headers(found.headers, found.release, _read_config(found.headers))


# -- what kbuild needs from the machine -----------------------------------------
# One table (REQUIREMENTS): each thing a headers tree needs, how to check it,
# and the Debian package that provides it. ``lkm build`` stops at the first
# one missing (check_toolchain); ``lkm prepare`` checks them all and installs
# the packages (lkm.workflows.prepare).

OK = "ok"
MISSING = "missing"
UNKNOWN = "unknown"  # cannot be told without the headers

Which = Callable[[str], str | None]


class Finding(Record):
    """What one check found. ``detail``: a few words for prepare's table;
    ``packages``: the Debian packages that provide what is missing;
    ``problem``: the one line ``lkm build`` ends with when it is."""

    check: str
    status: str  # OK, MISSING or UNKNOWN
    detail: str
    packages: tuple[str, ...] = ()
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.status == OK


# Program or shared library -> the Debian package that provides it. A table
# rather than a query: ``dpkg -S`` knows only the files of installed
# packages (a missing program is in none of them), and apt-file needs an
# index of its own that Debian does not install. Each entry was checked on
# bookworm with ``dpkg -S`` and ``apt-cache policy``. pahole is its own
# package since bookworm, where dwarves is the transitional package that
# depends on it; dwarves is the name every Debian release knows.
_PACKAGES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), package)
    for pattern, package in (
        (r"gcc", "gcc"),
        (r"gcc-(\d+)", r"gcc-\1"),  # also the host's TRIPLET-gcc-N
        (r"([a-z0-9_]+-linux-gnu[a-z]*)-gcc-(\d+)", r"gcc-\2-\1"),  # a cross compiler
        (r"make", "make"),
        (r"pahole", "dwarves"),
        (r"libelf\.so\.1", "libelf1"),  # objtool (Debian's linux-kbuild builds it with libelf)
        (r"libz\.so\.1", "zlib1g"),
        (r"libcrypto\.so\.3", "libssl3"),  # sign-file
        (r"libc\.so\.6", "libc6"),
    )
)


def _host_triplet() -> str:
    """The host's GNU triplet as Debian names it (``x86_64-linux-gnu``)."""
    import sysconfig

    multiarch = sysconfig.get_config_var("MULTIARCH")
    return (
        multiarch if isinstance(multiarch, str) and multiarch else f"{os.uname().machine}-linux-gnu"
    )


def debian_package(name: str) -> str | None:
    """The Debian package providing program or library ``name``, when lkm knows it."""
    name = name.removeprefix(f"{_host_triplet()}-")
    for pattern, package in _PACKAGES:
        match = pattern.fullmatch(name)
        if match:
            return match.expand(package)
    return None


def _install_hint(package: str | None) -> str:
    return f"install the Debian package {package}" if package else "no Debian package known for it"


def _compiler(headers: Headers | None, which: Which) -> Finding:
    if headers is None:  # Debian's linux-headers-V packages depend on their compiler
        return Finding("compiler", UNKNOWN, "the headers name it (their package depends on it)")
    compiler = headers.compiler
    text = headers.config.get("CONFIG_CC_VERSION_TEXT", "").strip('"') or compiler
    found = which(compiler)
    if found is not None:
        return Finding("compiler", OK, f"{text} ({found})")
    package = debian_package(compiler)
    return Finding(
        "compiler",
        MISSING,
        f"'{compiler}' not found (the kernel was built with {text})",
        (package,) if package else (),
        f"kernel {headers.version} was built with {text}; '{compiler}' is not installed: "
        + _install_hint(package),
    )


def _make(headers: Headers | None, which: Which) -> Finding:
    found = which("make")
    if found is not None:
        return Finding("make", OK, found)
    return Finding(
        "make",
        MISSING,
        "'make' not found",
        ("make",),
        "make is not installed: " + _install_hint("make"),
    )


def _pahole(headers: Headers | None, which: Which) -> Finding:
    if headers is None:
        return Finding("pahole", UNKNOWN, "needed if the headers generate BTF for modules")
    found = which("pahole")
    if headers.config.get("CONFIG_DEBUG_INFO_BTF_MODULES") != "y":
        return Finding("pahole", OK, f"not needed (no BTF for modules){_at(found)}")
    if not os.path.exists(f"{headers.path}/vmlinux"):
        # kbuild generates a module's BTF from vmlinux's (scripts/Makefile.modfinal)
        # and skips it, with a message, when the headers carry no vmlinux.
        return Finding("pahole", OK, f"not needed (no vmlinux in the headers){_at(found)}")
    if found is not None:
        return Finding("pahole", OK, f"{found} (the headers generate BTF for modules)")
    return Finding(
        "pahole",
        MISSING,
        "'pahole' not found (the headers generate BTF for modules)",
        ("dwarves",),
        f"kernel {headers.version} generates BTF for modules and 'pahole' is not installed: "
        + _install_hint("dwarves"),
    )


def _at(found: str | None) -> str:
    return f"; {found}" if found else ""


# The prebuilt programs kbuild runs for a module (Debian's linux-kbuild-V).
_KBUILD_PROGRAM_DIRS = ("scripts/basic", "scripts/mod", "scripts/genksyms", "tools/objtool")
_NOT_FOUND = re.compile(r"^\s*(\S+) => not found", re.M)


def kbuild_programs(headers: Headers) -> list[str]:
    """The dynamically linked programs of the headers' kbuild (objtool,
    modpost, fixdep, genksyms; Debian's wrappers and the programs they run)."""
    from lkm.formats.elf import ElfFile

    programs = []
    for directory in _KBUILD_PROGRAM_DIRS:
        base = f"{headers.path}/{directory}"
        for name in sorted(os.listdir(base)) if os.path.isdir(base) else ():
            path = f"{base}/{name}"
            if not (os.path.isfile(path) and os.access(path, os.X_OK)):
                continue
            try:
                if ElfFile(read_file(path, BINARY)).find_section(".interp") is not None:
                    programs.append(path)
            except (OSError, LkmError):
                continue  # a script, or not ELF: nothing for the loader to find
    return programs


def missing_libraries(program: str) -> list[str]:
    """The shared libraries ``program`` needs that the dynamic loader cannot
    find. The loader's own answer (what ldd asks it): with
    ``LD_TRACE_LOADED_OBJECTS`` set it lists them and runs nothing."""
    done = run([program], env=dict(os.environ, LD_TRACE_LOADED_OBJECTS="1"), check=False)
    return _NOT_FOUND.findall(done.text)


def _program_name(path: str) -> str:
    """``objtool`` for Debian's ``objtool.real-x86``."""
    return os.path.basename(path).split(".real-")[0]


def _libraries(headers: Headers | None, which: Which) -> Finding:
    if headers is None:
        return Finding(
            "libraries", UNKNOWN, "of kbuild's programs: checked once the headers are there"
        )
    if not os.path.exists(f"{headers.path}/scripts/basic/fixdep"):
        return _kbuild_missing(headers)
    programs = kbuild_programs(headers)
    missing: dict[str, str] = {}  # library -> the first program needing it
    for program in programs:
        try:
            libraries = missing_libraries(program)
        except CommandError as exc:
            return Finding(
                "libraries",
                MISSING,
                f"{_program_name(program)}: {exc.problem}",
                (),
                f"{program}: {exc.problem}",
            )
        for library in libraries:
            missing.setdefault(library, _program_name(program))
    names = ", ".join(sorted({_program_name(p) for p in programs})) or "no prebuilt programs"
    if not missing:
        return Finding("libraries", OK, f"{names}: every shared library found")
    packages = tuple(dict.fromkeys(p for p in map(debian_package, missing) if p))
    what = ", ".join(f"{program} needs {library}" for library, program in missing.items())
    library, program = next(iter(missing.items()))
    return Finding(
        "libraries",
        MISSING,
        f"{what} (not found)",
        packages,
        f"kbuild's {program} needs {library}, which is not installed: "
        + _install_hint(debian_package(library)),
    )


def _kbuild_missing(headers: Headers) -> Finding:
    """kbuild's programs are not there: Debian's headers link ``scripts``
    to ``/usr/lib/linux-kbuild-V/scripts``, from the package linux-kbuild-V."""
    target = (
        os.readlink(f"{headers.path}/scripts") if os.path.islink(f"{headers.path}/scripts") else ""
    )
    match = re.search(r"/(linux-kbuild-[^/]+)/scripts$", target)
    package = match.group(1) if match else None
    return Finding(
        "libraries",
        MISSING,
        f"kbuild's programs are missing ({headers.path}/scripts/basic/fixdep)",
        (package,) if package else (),
        f"{headers.path}: kbuild's programs are missing (scripts/basic/fixdep): "
        + _install_hint(package),
    )


class Requirement(Record):
    """One thing kbuild needs and how to check it (None: the headers are
    not there yet)."""

    check: str
    inspect: Callable[[Headers | None, Which], Finding]


REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement("compiler", _compiler),
    Requirement("make", _make),
    Requirement("pahole", _pahole),
    Requirement("libraries", _libraries),
)


def inspect_toolchain(headers: Headers | None, which: Which = shutil.which) -> list[Finding]:
    """What each requirement found for ``headers`` (None: not installed yet)."""
    return [requirement.inspect(headers, which) for requirement in REQUIREMENTS]


def check_toolchain(headers: Headers, which: Which = shutil.which) -> None:
    """Every requirement of the headers, or a BuildError saying which package
    provides the first one missing."""
    for requirement in REQUIREMENTS:
        finding = requirement.inspect(headers, which)
        if not finding.ok:
            raise BuildError(finding.problem or f"{finding.check}: {finding.detail}")


# -- what kbuild's messages mean ---------------------------------------------------
# One table (DIAGNOSES): a message of make's output, and the one line that
# says what to add or change. A fatal one explains a failed build; the others
# are warnings a build survives but a module may not (printed as notes).


class Diagnosis(Record):
    pattern: re.Pattern[str]
    fatal: bool  # the cause of a failed build, else a warning worth a note
    explain: Callable[[list[re.Match[str]], Headers, str], str]  # (matches, headers, module dir)


def _shown(path: str, directory: str) -> str:
    """``path`` relative to the module's directory when it is inside it."""
    if directory and path.startswith(directory.rstrip("/") + "/"):
        return os.path.relpath(path, directory)
    return path


def _source_of(obj: str, directory: str) -> str:
    """The C file an object was compiled from, when it is the one beside it."""
    source = obj.removesuffix(".o") + ".c"
    if os.path.isfile(source):
        return _shown(source, directory)
    return f"one of the sources of {_shown(obj, directory)}"


def _more(matches: list[re.Match[str]]) -> str:
    return f" (and {len(matches) - 1} more)" if len(matches) > 1 else ""


def _unexported(matches: list[re.Match[str]], headers: Headers, directory: str) -> str:
    symbol, module = matches[0].groups()
    return (
        f"{os.path.basename(module)} uses {symbol}{_more(matches)}, which kernel "
        f"{headers.version} does not export to modules (a typo, a missing dependency "
        "module, or a GPL-only symbol in a non-GPL module)"
    )


def _no_license(matches: list[re.Match[str]], headers: Headers, directory: str) -> str:
    # modpost refuses a module without a license (6.1 and 6.12 both do;
    # older kernels printed the same words as a WARNING and built it).
    source = _source_of(matches[0].group(1), directory)
    return (
        f"{source} has no MODULE_LICENSE(), which kernel {headers.version} requires of "
        f'every module: add MODULE_LICENSE("GPL"); to {source}{_more(matches)}'
    )


def _missing_library(matches: list[re.Match[str]], headers: Headers, directory: str) -> str:
    program, library = matches[0].groups()
    return (
        f"kbuild's {_program_name(program)} needs {library}, which is not installed: "
        + _install_hint(debian_package(library))
    )


def _init_module_by_name(matches: list[re.Match[str]], headers: Headers, directory: str) -> str:
    # objtool warns (kernel commit 03d7a1053cf7; 6.12 does, 6.1 does not):
    # without module_init()'s reference to it, init_module() is not known
    # to be called indirectly, so its ENDBR is listed in .ibt_endbr_seal,
    # and a kernel with IBT enabled seals it when loading the module: the
    # loader's call to it then faults. Without IBT the module loads.
    obj = matches[0].group(1)
    functions = list(dict.fromkeys(m.group(2) for m in matches if m.group(1) == obj))
    name = os.path.basename(obj).removesuffix(".o").replace("-", "_")
    renames = {
        "init_module": (f"{name}_init", "module_init"),
        "cleanup_module": (f"{name}_exit", "module_exit"),
    }
    defined = " and ".join(f"{f}()" for f in functions)
    verb = "are" if len(functions) > 1 else "is"
    new_names = " and ".join(renames[f][0] for f in functions)
    registered = " ".join(f"{renames[f][1]}({renames[f][0]});" for f in functions)
    return (
        f"{_source_of(obj, directory)}: {defined} {verb} defined by name, without "
        f"module_init()/module_exit(): kernel {headers.version}'s objtool marks "
        f"{'them' if len(functions) > 1 else 'it'} for sealing, so on a CPU with IBT "
        f"the module fails to load; rename {'them' if len(functions) > 1 else 'it'} "
        f"{new_names} and add {registered}"
    )


def _headers_not_installed(matches: list[re.Match[str]], headers: Headers, directory: str) -> str:
    # Debian's headers include their -common half by an absolute path: a
    # tree unpacked with dpkg-deb -x anywhere but / names a file that is
    # not there. lkm kernel fetch repairs that line when it unpacks.
    return (
        f"{headers.path}/Makefile includes {matches[0].group(1)}, which is not there "
        "(Debian's headers expect to be installed under /usr/src): unpack the -common "
        f"package beside them and change that line, or run 'lkm kernel fetch "
        f"{headers.version}', which does both"
    )


DIAGNOSES: tuple[Diagnosis, ...] = (
    Diagnosis(
        re.compile(r"^Makefile:\d+: (/usr/src/\S+/Makefile): No such file or directory", re.M),
        True,
        _headers_not_installed,
    ),
    Diagnosis(re.compile(r'ERROR: modpost: "([^"]+)" \[([^\]]+)\] undefined!'), True, _unexported),
    Diagnosis(
        re.compile(r"ERROR: modpost: missing MODULE_LICENSE\(\) in (\S+)"), True, _no_license
    ),
    Diagnosis(
        re.compile(r"WARNING: modpost: missing MODULE_LICENSE\(\) in (\S+)"), False, _no_license
    ),
    Diagnosis(
        re.compile(r"^(\S+): error while loading shared libraries: (\S+): cannot open", re.M),
        True,
        _missing_library,
    ),
    Diagnosis(
        re.compile(
            r"^(\S+\.o): warning: objtool: (init_module|cleanup_module)\(\): "
            r"not an indirect call target",
            re.M,
        ),
        False,
        _init_module_by_name,
    ),
)


def _diagnose(output: str, headers: Headers, directory: str, fatal: bool) -> list[str]:
    lines = []
    for diagnosis in DIAGNOSES:
        if diagnosis.fatal == fatal:
            matches = list(diagnosis.pattern.finditer(output))
            if matches:
                lines.append(diagnosis.explain(matches, headers, directory))
    return lines


def explain_failure(output: str, headers: Headers, status: int, directory: str = "") -> str:
    """One line for a failed make: what to add or change, when kbuild said."""
    causes = _diagnose(output, headers, directory, fatal=True)
    return (
        causes[0]
        if causes
        else f"make failed with status {status}; the compiler's messages are above"
    )


def build_notes(output: str, headers: Headers, directory: str = "") -> list[str]:
    """One line for each warning in make's output that a module may not survive."""
    return _diagnose(output, headers, directory, fatal=False)


def build(
    directory: str,
    kernel: str | None = None,
    jobs: int | None = None,
    output: Callable[[str], None] = print,
    make_vars: Sequence[str] = (),
) -> BuildResult:
    """Run kbuild in ``directory``, streaming its output line by line;
    ``make_vars``: ``NAME=VALUE`` words for make (``V=1``, ``W=1``,
    ``KCFLAGS=…``)."""
    directory = os.path.abspath(directory)
    if jobs is not None and jobs < 1:
        raise BuildError(f"--jobs must be at least 1, not {jobs}")
    if any(c.isspace() for c in directory):
        # make splits M=… at white space, and kbuild's rules cannot quote it.
        raise BuildError(
            f"{directory}: kbuild cannot build in a path with white space; "
            "move the module or build through a symbolic link without it"
        )
    if not (os.path.isfile(f"{directory}/Kbuild") or os.path.isfile(f"{directory}/Makefile")):
        raise BuildError(f"{directory}: no Kbuild or Makefile (create one with: lkm new NAME)")
    for word in make_vars:
        if not is_make_variable(word):
            raise BuildError(f"{word}: not a make variable (NAME=VALUE, as V=1 or KCFLAGS=-g)")
    headers = find_headers(kernel)
    check_toolchain(headers)
    command = ["make", "-C", headers.path, f"M={directory}", *make_vars, "modules"]
    if jobs:
        command.insert(1, f"-j{jobs}")
    try:
        done = stream(command, output)
    except ProgramNotFound:
        raise BuildError("make is not installed: install the Debian package make") from None
    notes = tuple(build_notes(done.text, headers, directory))
    for note in notes:
        output(f"note: {note}")
    if done.status != 0:
        raise BuildError(explain_failure(done.text, headers, done.status, directory))
    built = tuple(sorted(glob.glob(f"{directory}/*.ko")))
    return BuildResult(built, headers, notes)


def is_make_variable(word: str) -> bool:
    """Whether ``word`` is a ``NAME=VALUE`` assignment make takes from its
    command line (the name as make's variables and kbuild's: letters,
    digits, underscores, not first a digit)."""
    name, equals, _ = word.partition("=")
    return (
        bool(equals)
        and bool(name)
        and not name[0].isdigit()
        and name.replace("_", "a").isalnum()
        and name.isascii()
    )


__all__ = [
    "DIAGNOSES",
    "MISSING",
    "OK",
    "REQUIREMENTS",
    "UNKNOWN",
    "BuildError",
    "BuildResult",
    "Diagnosis",
    "Finding",
    "Headers",
    "Requirement",
    "build",
    "build_notes",
    "check_toolchain",
    "debian_package",
    "explain_failure",
    "find_headers",
    "inspect_toolchain",
    "is_make_variable",
    "kbuild_programs",
    "missing_libraries",
]
