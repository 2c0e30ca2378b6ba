"""Whether a kernel will load a module, and if not why: the kernel's own
checks (kernel/module/*.c), made in advance from the module file and the
kernel's packages.

:class:`KernelFacts` is what a kernel's Debian packages say about what it
accepts: the vermagic and ``sizeof(struct module)`` of its own modules, the
key its own modules are signed with, every export with its CRC, licence
requirement and namespace (the headers' ``Module.symvers``) and the
configuration that changes the rules. :func:`check_module` takes a module
file through the loader's checks in the loader's order and returns a
:class:`Verdict`: each :class:`Finding` is the line the kernel would log,
its errno or its taint, and what to do about it.

What cannot be known from files (keys enrolled with MOK, the running
kernel's command line, modules already loaded) is either asked for
(``sig_enforce``, ``loaded``) or said, never guessed.
"""

from __future__ import annotations

import os

from lkm.errors import LkmError
from lkm.formats.module_params import FLAG_HWPARAM, FLAG_UNSAFE, module_params
from lkm.records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from collections.abc import Iterable

    from lkm.formats.module_file import ModuleFile
    from lkm.formats.module_params import ModuleParam
    from lkm.model.module_args import ArgOutcome

# Debian architecture -> ELF e_machine of its modules.
MACHINES = {
    "amd64": 62,  # EM_X86_64
    "i386": 3,  # EM_386
    "arm64": 183,  # EM_AARCH64
    "armhf": 40,  # EM_ARM
    "armel": 40,
    "s390x": 22,  # EM_S390
    "ppc64el": 21,  # EM_PPC64
    "riscv64": 243,  # EM_RISCV
    "mips64el": 8,  # EM_MIPS
    "loong64": 258,  # EM_LOONGARCH
}
ET_REL = 1
# Licences the kernel counts as GPL-compatible (include/linux/license.h).
GPL_COMPATIBLE = frozenset(
    (
        "GPL",
        "GPL v2",
        "GPL and additional rights",
        "Dual BSD/GPL",
        "Dual MIT/GPL",
        "Dual MPL/GPL",
    )
)
# Verdicts, worst last.
LOADS, TAINTS, REFUSED = "loads", "loads with taint", "refused"


class CheckError(LkmError):
    """The kernel's facts could not be read (one line naming what)."""


class Export(Record):
    """One symbol a kernel or one of its modules exports."""

    crc: int
    owner: str  # "vmlinux" or the exporting module's name
    gpl_only: bool
    namespace: str


class Finding(Record):
    """One thing the kernel would do about a module: refuse it (``errno``),
    taint itself (``taint``), or neither (a note)."""

    code: str  # stable identifier: "vermagic", "unknown-symbol", …
    message: str  # the line the kernel logs (or lkm's words for a note)
    errno: str = ""  # "ENOEXEC", … when the load fails
    taint: str = ""  # the taint letter when it taints
    advice: str = ""  # what to do, in plain words

    @property
    def refuses(self) -> bool:
        return bool(self.errno)


class Verdict(Record):
    """What kernel ``release`` does with the module at ``path``."""

    path: str
    name: str
    release: str
    findings: tuple[Finding, ...]
    needs: tuple[str, ...] = ()  # modules that must be loaded first (modprobe does)

    @property
    def verdict(self) -> str:
        if any(f.refuses for f in self.findings):
            return REFUSED
        return TAINTS if self.taints else LOADS

    @property
    def taints(self) -> str:
        return "".join(sorted({f.taint for f in self.findings if f.taint}))

    @property
    def reason(self) -> Finding | None:
        """The first finding that refuses the module (the kernel stops there)."""
        return next((f for f in self.findings if f.refuses), None)


class KernelFacts(Record):
    """What a kernel accepts, from its packages."""

    release: str
    arch: str
    vermagic: str
    this_module_size: int  # 0: not known
    exports: dict[str, Export]
    config: dict[str, str]
    signer: tuple[bytes | None, int] | None  # issuer CN and serial of its modules' key
    modules: frozenset[str]  # the names of its own modules
    certificate: bytes | None = None  # that key's certificate (DER), from its image

    def enabled(self, option: str) -> bool:
        return self.config.get(option) in ("y", "m")


# -- the kernel's side ----------------------------------------------------------


def kernel_facts(
    release: str, arch: str, modules_dir: str, headers_dir: str, image: str | None = None
) -> KernelFacts:
    """A kernel's facts from its module tree (a module of its own, the
    names of all), its headers (``Module.symvers``, the configuration) and
    its image when given (the certificate of the key its modules are
    signed with, to verify signatures). Raises :class:`CheckError` naming
    what is missing or unreadable."""
    exports = read_symvers(os.path.join(headers_dir, "Module.symvers"))
    config = read_config(headers_dir)
    names, sample = _tree_modules(modules_dir)
    vermagic, size, signer = _own_module_facts(sample)
    certificate = None
    if image is not None and signer is not None:
        from lkm.model.kernel_keys import signing_certificate

        certificate = signing_certificate(image, *signer)
    return KernelFacts(
        release, arch, vermagic, size, exports, config, signer, frozenset(names), certificate
    )


def read_symvers(path: str) -> dict[str, Export]:
    """``Module.symvers``: CRC, owner, export kind and namespace per symbol."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise CheckError(f"{path}: {exc.strerror}") from None
    exports: dict[str, Export] = {}
    for number, line in enumerate(lines, 1):
        fields = line.split("\t")
        if len(fields) < 4:
            raise CheckError(f"{path}:{number}: not a Module.symvers line")
        try:
            crc = int(fields[0], 16)
        except ValueError:
            raise CheckError(f"{path}:{number}: bad CRC {fields[0]!r}") from None
        owner = "vmlinux" if fields[2] == "vmlinux" else _module_name(fields[2])
        namespace = fields[4] if len(fields) > 4 else ""
        exports[fields[1]] = Export(crc, owner, fields[3].endswith("_GPL"), namespace)
    return exports


def read_config(headers_dir: str) -> dict[str, str]:
    """The kernel's configuration (``CONFIG_X`` -> value) from the headers'
    ``.config`` (Debian ships it there)."""
    path = os.path.join(headers_dir, ".config")
    config: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                key, sep, value = line.rstrip("\n").partition("=")
                if sep and key.startswith("CONFIG_"):
                    config[key] = value.strip('"')
    except OSError as exc:
        raise CheckError(f"{path}: {exc.strerror}") from None
    return config


def _module_name(path: str) -> str:
    from lkm.model.moddir import normalize_modname

    base = os.path.basename(path)
    return normalize_modname(base.split(".", 1)[0])


def _tree_modules(modules_dir: str) -> tuple[list[str], str]:
    """The names of a tree's modules (modules.dep, or a walk when it has
    none) and the path of one of them."""
    paths: list[str] = []
    try:
        with open(os.path.join(modules_dir, "modules.dep"), encoding="utf-8") as f:
            paths = [os.path.join(modules_dir, line.split(":", 1)[0]) for line in f if ":" in line]
    except OSError:
        for directory, _, files in os.walk(os.path.join(modules_dir, "kernel")):
            paths += [os.path.join(directory, n) for n in files if ".ko" in n]
    if not paths:
        raise CheckError(f"{modules_dir}: no modules (is it a module tree?)")
    return [_module_name(p) for p in paths], paths[0]


def _own_module_facts(path: str) -> tuple[str, int, tuple[bytes | None, int] | None]:
    """vermagic, this_module size and signing key of one of the kernel's
    own modules: every one of them has the same."""
    from lkm.formats.module_file import open_module

    with open_module(path) as module:
        vermagic = dict(module.modinfo() or []).get("vermagic", "")
        bounds = module.elf.find_section(".gnu.linkonce.this_module")
        signature = module.signature
    signer = None
    if signature is not None and signature.pkcs7 is not None:
        signer = (signature.pkcs7.issuer_cn, signature.pkcs7.serial)
    return vermagic, bounds[1] if bounds else 0, signer


# -- the module's side ------------------------------------------------------------


class _Module:
    """What the checks read from a module file."""

    def __init__(self, module: ModuleFile, *, params: bool) -> None:
        header = bytes(module.data[16:18])
        self.e_type = int.from_bytes(header, "big" if module.elf.big_endian else "little")
        self.machine = module.elf.machine
        self.compressed = "" if module.compression.value == "none" else module.compression.value
        self.modinfo = module.modinfo()
        info = self.modinfo or []
        self.info = {key: value for key, value in reversed(info)}  # first value wins
        self.imports = {value for key, value in info if key == "import_ns"}
        self.this_module = module.elf.find_section(".gnu.linkonce.this_module")
        self.has_versions = module.elf.find_section("__versions") is not None
        self.versions = {v.name: v.crc for v in module.versions()}
        self.needed = list(module.needed().distinct_names())
        self.exports = [symbol.name for symbol in module.exports()]
        self.signature = module.signature
        self.signature_valid: bool | None = None  # None: not verified
        # the parameter table costs a symbol table read: only when asked
        self.params = module_params(module.elf) if params else []
        self.element_types = {
            name: kind.removeprefix("array of ")
            for name, _, kind in (value.partition(":") for key, value in info if key == "parmtype")
            if kind.startswith("array of ")
        }

    def verify(self, module: ModuleFile, certificate: bytes) -> None:
        """Whether the signature is the certificate key's over the module."""
        from lkm.model.kernel_keys import signature_matches

        signature = self.signature
        if signature is None or signature.pkcs7 is None:
            return
        content = bytes(module.data[: signature.module_size])
        self.signature_valid = signature_matches(certificate, signature.pkcs7, content)


def check_module(
    path: str,
    kernel: KernelFacts,
    *,
    others: dict[str, list[str]] | None = None,
    sig_enforce: bool = False,
    loaded: frozenset[str] | None = None,
    blacklist: frozenset[str] = frozenset(),
    args: str = "",
    lockdown: bool = False,
    running_keys: tuple[str, ...] = (),
) -> Verdict:
    """What ``kernel`` does when asked to load the module at ``path``
    with the parameters ``args`` (as insmod passes them).

    ``others``: exports of other modules checked in the same call, by
    module name (they satisfy this one's symbols). ``sig_enforce``: the
    kernel runs with ``module.sig_enforce=1``; ``lockdown``: locked down
    (integrity or confidentiality), which refuses what sig_enforce would
    with another errno; ``running_keys``: the descriptions (``CN: KEYID``)
    of the keys the running kernel verifies modules with (MOK and others
    beside its build key). ``loaded``:
    the names of modules already loaded (``--running``; then a symbol of
    a module not loaded is unknown, as for insmod); None: unknown, and
    such modules are listed as needed first. ``blacklist``: the names
    ``module_blacklist=`` gives.
    """
    from lkm.formats.module_file import open_module

    name = _module_name(path)
    try:
        with open_module(path) as module:
            facts = _Module(module, params=bool(args.strip()))
            if kernel.certificate is not None and _signed_by(facts, kernel):
                facts.verify(module, kernel.certificate)
    except LkmError as exc:
        return Verdict(path, name, kernel.release, (_unreadable(str(exc), path),))
    name = _module_name(facts.info.get("name", name)) if facts.info.get("name") else name
    checks = _Checks(facts, kernel, others or {}, sig_enforce, loaded, blacklist)
    checks.lockdown = lockdown
    checks.running_keys = running_keys
    checks.args = args
    findings = checks.run(name)
    return Verdict(path, name, kernel.release, tuple(findings), tuple(sorted(checks.needs)))


# ElfFile's problems -> what the kernel's elf_validity_check logs for them.
_ELF_PROBLEMS = (
    ("bad magic", "Invalid ELF header magic: != \x7fELF"),
    ("truncated ELF header", "Invalid ELF header len {size}"),
    ("section header size", "Invalid ELF section header size"),
    ("section header table", "Invalid ELF section header overflow"),
    ("does not end with a NUL", "ELF Spec violation: section name table isn't null terminated"),
)


def _signed_by(module: _Module, kernel: KernelFacts) -> bool:
    """Whether the module names the key the kernel's own modules are signed with."""
    signature, known = module.signature, kernel.signer
    if signature is None or signature.pkcs7 is None or known is None:
        return False
    return (signature.pkcs7.issuer_cn, signature.pkcs7.serial) == known


def _unreadable(problem: str, path: str) -> Finding:
    """A file the loader cannot take: the kernel's line for an ELF it
    rejects; for a file that does not even decompress, the tool's (insmod
    reads it before the kernel sees anything)."""
    for clue, message in _ELF_PROBLEMS:
        if clue in problem:
            size = os.stat(path).st_size if os.path.exists(path) else 0
            advice = f"not a loadable module ({problem}); rebuild it"
            return Finding("not-a-module", message.format(size=size), "ENOEXEC", advice=advice)
    return Finding(
        "unreadable",
        f"(nothing reaches the kernel: insmod cannot read the file: {problem})",
        "ENOEXEC",
        advice="not a loadable module file; rebuild or fetch it again",
    )


class _Checks:
    """The loader's checks, in its order (kernel/module/main.c's
    load_module, then simplify_symbols), each giving findings; the
    messages are the kernel's format strings filled in."""

    def __init__(
        self,
        module: _Module,
        kernel: KernelFacts,
        others: dict[str, list[str]],
        sig_enforce: bool,
        loaded: frozenset[str] | None,
        blacklist: frozenset[str],
    ) -> None:
        self.module = module
        self.kernel = kernel
        self.sig_enforce = sig_enforce or kernel.enabled("CONFIG_MODULE_SIG_FORCE")
        self.loaded = loaded
        self.blacklist = blacklist
        self.provided = {symbol: owner for owner, names in others.items() for symbol in names}
        self.needs: set[str] = set()
        self.name = ""
        self.args = ""
        self.lockdown = False
        self.running_keys: tuple[str, ...] = ()

    def run(self, name: str) -> list[Finding]:
        self.name = name
        early = (self._enforced_signature, self._elf, self._this_module, self._blacklisted)
        versions = (self._module_layout, self._vermagic)
        # 6.4 moved the taints after the already-loaded check
        # (module_augment_kernel_taints); 6.1 taints first.
        if _newer_loader(self.kernel):
            late = (self._already_loaded, self._taints, self._unsigned, self._licence_again)
        else:
            late = (self._taints, self._already_loaded, self._unsigned, self._licence_again)
        findings: list[Finding] = []
        for step in (*early, *versions, *late, self._symbols, self._parameters):
            found = step()
            findings += found
            if any(f.refuses for f in found):
                break  # the kernel stops at the first step that fails
        return findings

    # -- before the module is set up -------------------------------------------------

    def _trusted_signature(self) -> bool | None:
        """Whether the module is signed by the key the kernel's own modules
        are (None: the kernel does not check signatures)."""
        if not self.kernel.enabled("CONFIG_MODULE_SIG"):
            return None
        return _signed_by(self.module, self.kernel) or self._held_key() is not None

    def _held_key(self) -> str | None:
        """The running kernel's key (its description) that the module's
        signer names: the issuer's common name and, where the key's id is
        the certificate's serial, the serial too. A key id that is the
        subjectKeyIdentifier cannot be compared with a signature naming
        issuer and serial: the name is then what matches, said so."""
        signature = self.module.signature
        if signature is None or signature.pkcs7 is None or signature.pkcs7.issuer_cn is None:
            return None
        name = signature.pkcs7.issuer_cn.decode("utf-8", "replace")
        serial = f"{signature.pkcs7.serial:x}"
        # the description's subject is "O: CN" unless CN starts with O
        # (x509_fabricate_name)
        subjects = [(d, d.rpartition(": ")[0]) for d in self.running_keys]
        named = [d for d, subject in subjects if subject == name or subject.endswith(f": {name}")]
        exact = [d for d in named if d.rpartition(": ")[2].lstrip("0").lower() == serial]
        found = exact or named
        return found[0] if found else None

    def _signature_advice(self) -> str:
        signed = self.module.signature is not None
        why = "signed with a key its modules do not use" if signed else "unsigned"
        return (
            f"{why}: sign it with a key {self.kernel.release} trusts (its build key, or one "
            "enrolled with mokutil, which only the running system can tell)"
        )

    def _enforced_signature(self) -> list[Finding]:
        # module_sig_check runs first of all; a signature that does not
        # match is fatal whatever the settings (and logs nothing); a
        # missing key or signature, unenforced, becomes taint E later.
        if self._trusted_signature() and self.module.signature_valid is False:
            return [
                Finding(
                    "bad-signature",
                    "(nothing logged: the signature does not match the module's contents)",
                    "EKEYREJECTED",
                    advice="the file changed after it was signed: sign it again (or use the "
                    "unmodified file)",
                )
            ]
        if self._trusted_signature() is not False:
            return []
        signed = self.module.signature is not None
        if self.sig_enforce:
            what = "module with unavailable key" if signed else "unsigned module"
            message = f"Loading of {what} is rejected"
            return [Finding("signature", message, "EKEYREJECTED", advice=self._signature_advice())]
        if self.lockdown:
            # security_locked_down(LOCKDOWN_MODULE_SIGNATURE), which names the
            # loading process (kmod's insmod here)
            message = (
                "Lockdown: insmod: unsigned module loading is restricted; see man kernel_lockdown.7"
            )
            return [Finding("lockdown", message, "EPERM", advice=self._signature_advice())]
        return []

    def _elf(self) -> list[Finding]:
        module, kernel = self.module, self.kernel
        if module.e_type != ET_REL:
            message = f"Invalid ELF header type: {module.e_type} != {ET_REL}"
            return [Finding("elf-type", message, "ENOEXEC", advice="not a module object; rebuild")]
        expected = MACHINES.get(kernel.arch)
        if expected is not None and module.machine != expected:
            advice = f"built for another architecture; build it with {kernel.release}'s headers"
            message = f"Invalid architecture in ELF header: {module.machine}"
            return [Finding("elf-arch", message, "ENOEXEC", advice=advice)]
        return []

    def _this_module(self) -> list[Finding]:
        module, kernel, name = self.module, self.kernel, self.name
        if module.this_module is None:
            if _newer_loader(kernel):
                message = (
                    f"module {name}: Exactly one .gnu.linkonce.this_module section must exist."
                )
            else:
                message = f"{name}: No module found in object"
            return [Finding("no-this-module", message, "ENOEXEC", advice="not built by kbuild")]
        size = module.this_module[1]
        # 6.4's loader compares the section with sizeof(struct module);
        # 6.1's does not (a wrong layout shows in module_layout's CRC).
        if kernel.this_module_size and size != kernel.this_module_size and _newer_loader(kernel):
            return [
                Finding(
                    "this-module-size",
                    f"module {name}: .gnu.linkonce.this_module section size must match the "
                    "kernel's built struct module size at run time",
                    "ENOEXEC",
                    advice=f"built for another kernel (its struct module is {size:#x} bytes, "
                    f"{kernel.release}'s {kernel.this_module_size:#x}); rebuild against "
                    f"{kernel.release}'s headers",
                )
            ]
        return []

    def _blacklisted(self) -> list[Finding]:
        if self.name not in self.blacklist:
            return []
        message = f"Module {self.name} is blacklisted"
        return [Finding("blacklisted", message, "EPERM", advice="module_blacklist= names it")]

    def _module_layout(self) -> list[Finding]:
        module, kernel = self.module, self.kernel
        if not kernel.enabled("CONFIG_MODVERSIONS") or "module_layout" not in kernel.exports:
            return []
        if not module.has_versions:
            return [self._forced("module_layout")]
        crc = module.versions.get("module_layout")
        if crc is not None and crc != kernel.exports["module_layout"].crc:
            return [self._crc_mismatch("module_layout", "ENOEXEC")]
        return []

    def _forced(self, what: str) -> Finding:
        # try_to_force_load: Debian builds with MODULE_FORCE_LOAD.
        return Finding(
            "forced",
            f"{self.name}: {what}: kernel tainted.",
            taint="F",
            advice="built without symbol versions or vermagic; build it with kbuild",
        )

    def _vermagic(self) -> list[Finding]:
        module, kernel = self.module, self.kernel
        magic = module.info.get("vermagic")
        if not magic:
            return [self._forced("bad vermagic")]
        ours, theirs = magic, kernel.vermagic
        if module.has_versions and kernel.enabled("CONFIG_MODVERSIONS"):
            # same_magic: with symbol versions the release word may differ
            ours, theirs = ours.partition(" ")[2], theirs.partition(" ")[2]
        if ours == theirs:
            return []
        return [
            Finding(
                "vermagic",
                f"{self.name}: version magic '{magic}' should be '{kernel.vermagic}'",
                "ENOEXEC",
                advice=f"built for another kernel; rebuild against {kernel.release}'s headers",
            )
        ]

    # -- once the module is listed ---------------------------------------------------

    def _already_loaded(self) -> list[Finding]:
        if self.loaded is None or self.name not in self.loaded:
            return []
        # add_unformed_module: -EEXIST and nothing in the log
        message = f"(nothing logged: {self.name} is already loaded)"
        return [Finding("loaded", message, "EEXIST", advice="unload it first (rmmod)")]

    def _taints(self) -> list[Finding]:
        info, name = self.module.info, self.name
        findings = []
        # The kernel asks whether each key is there, not what it says.
        if "intree" not in info:
            message = f"{name}: loading out-of-tree module taints kernel."
            findings.append(Finding("out-of-tree", message, taint="O"))
        if "staging" in info:
            message = (
                f"{name}: module is from the staging directory, the quality is unknown, you have "
                "been warned."
            )
            findings.append(Finding("staging", message, taint="C"))
        licence = info.get("license") or "unspecified"
        if licence not in GPL_COMPATIBLE:
            findings.append(
                Finding(
                    "license",
                    f"{name}: module license '{licence}' taints kernel.",
                    taint="P",
                    advice="a GPL-compatible MODULE_LICENSE() does not taint, and may use "
                    "GPL-only symbols",
                )
            )
        if "test" in info:
            message = f"{name}: loading test module taints kernel."
            findings.append(Finding("test", message, taint="N"))
        return findings

    def _licence_again(self) -> list[Finding]:
        # Said once more when this load is what first tainted the kernel P
        # (6.1's check_module_license_and_versions, 6.12's
        # module_augment_kernel_taints).
        if (self.module.info.get("license") or "unspecified") in GPL_COMPATIBLE:
            return []
        return [Finding("license", f"{self.name}: module license taints kernel.", taint="P")]

    def _unsigned(self) -> list[Finding]:
        held = self._held_key() if not _signed_by(self.module, self.kernel) else None
        if held is not None:
            message = (
                f"(signed by a key the running kernel holds, '{held}': the kernel verifies the "
                "signature with it; lkm cannot read that key to verify it first)"
            )
            return [Finding("held-key", message)]
        if self._trusted_signature() is not False:
            return []
        return [
            Finding(
                "signature",
                f"{self.name}: module verification failed: signature and/or required key "
                "missing - tainting kernel",
                taint="E",
                advice=self._signature_advice(),
            )
        ]

    # -- symbols (simplify_symbols: every one, each failure logged) ------------------

    def _symbols(self) -> list[Finding]:
        findings: list[Finding] = []
        for symbol in self.module.needed:
            found = self._symbol(symbol)
            if found is not None:
                findings.append(found)
        return findings

    def _symbol(self, symbol: str) -> Finding | None:
        module, kernel, name = self.module, self.kernel, self.name
        if symbol in self.provided:
            self.needs.add(self.provided[symbol])
            return None
        export = kernel.exports.get(symbol)
        gpl = module.info.get("license") in GPL_COMPATIBLE
        if export is None or (export.gpl_only and not gpl):
            return self._unknown(symbol, export)
        if module.has_versions and kernel.enabled("CONFIG_MODVERSIONS"):
            crc = module.versions.get(symbol)
            if crc is not None and crc != export.crc:
                return self._crc_mismatch(symbol, "EINVAL")
        if export.namespace and export.namespace not in module.imports:
            return Finding(
                "namespace",
                f"{name}: module uses symbol ({symbol}) from namespace {export.namespace}, but "
                "does not import it.",
                "EINVAL",
                advice=f"add MODULE_IMPORT_NS({export.namespace}); to the module's source",
            )
        if export.owner != "vmlinux":
            if self.loaded is not None and export.owner not in self.loaded:
                return Finding(
                    "needs-module",
                    f"{name}: Unknown symbol {symbol} (err -2)",
                    "ENOENT",
                    advice=f"{symbol} is {export.owner}'s, which is not loaded: load it first "
                    "(modprobe does)",
                )
            self.needs.add(export.owner)
        return None

    def _unknown(self, symbol: str, export: Export | None) -> Finding:
        message = f"{self.name}: Unknown symbol {symbol} (err -2)"
        if export is not None:
            advice = f"{symbol} is exported GPL-only; a GPL-compatible MODULE_LICENSE() may use it"
            return Finding("gpl-only", message, "ENOENT", advice=advice)
        advice = (
            f"nothing in {self.kernel.release} or its modules exports {symbol}: written for "
            "another kernel version, or it needs a module this check was not given"
        )
        return Finding("unknown-symbol", message, "ENOENT", advice=advice)

    def _crc_mismatch(self, symbol: str, errno: str) -> Finding:
        return Finding(
            "crc",
            f"{self.name}: disagrees about version of symbol {symbol}",
            errno,
            advice=f"built against other headers than {self.kernel.release}'s; rebuild against "
            "its own",
        )

    # -- parameters (parse_args, last before the module's init) ------------------------

    def _parameters(self) -> list[Finding]:
        from lkm.model.module_args import NO_ARGUMENT_OPS, ignored_name, outcomes, split_args

        if not self.args.strip():
            return []
        table = self.module.params
        if table is None:
            note = "(parameters not checked: this module's parameter table is not read)"
            return [Finding("param-unchecked", note)]
        findings = []
        # parse_args goes through every word, logging each failure; the load
        # fails with the last one's errno
        for outcome in outcomes(self.name, self.args, table, self.module.element_types):
            param = outcome.param
            if param is None:
                shown = ignored_name(outcome.name)
                if shown is not None:
                    findings.append(self._unknown_param(shown, table))
                continue
            reaches_set = outcome.value is not None or param.ops in NO_ARGUMENT_OPS
            if param.flags & FLAG_HWPARAM and reaches_set and self.lockdown:
                findings.append(self._hardware_param_locked(outcome))
                continue  # param_check_unsafe refuses it: set() is not reached
            if param.flags & FLAG_UNSAFE and reaches_set:  # param_check_unsafe, before set()
                message = f"Setting dangerous option {param.name} - tainting kernel"
                findings.append(Finding("param-unsafe", message, taint="U"))
            if outcome.problem is not None:
                findings.append(self._bad_value(outcome))
            elif outcome.unchecked and outcome.value is not None:
                message = (
                    f"(the value of {param.name} is checked by {self.name}'s own code when it "
                    "loads)"
                )
                findings.append(Finding("param-unchecked", message))
        after_dashes = split_args(self.args).after_dashes
        # load_module warns only when parse_args did not fail
        if after_dashes is not None and not any(f.refuses for f in findings):
            message = f"{self.name}: parameters '{after_dashes}' after `--' ignored"
            findings.append(Finding("param-after-dashes", message))
        return _errno_of_the_last(findings)

    def _hardware_param_locked(self, outcome: ArgOutcome) -> Finding:
        """A parameter that names hardware (an I/O port, an IRQ: module_param_hw)
        on a locked-down kernel: security_locked_down(LOCKDOWN_MODULE_PARAMETERS)
        says no, then parse_args logs the failure (EPERM)."""
        assert outcome.param is not None
        message = (
            "Lockdown: insmod: unsafe module parameters is restricted; see man kernel_lockdown.7"
        )
        logged = f"{self.name}: `{outcome.value or ''}' invalid for parameter `{outcome.name}'"
        advice = (
            f"{outcome.param.name} names hardware (module_param_hw), which a locked-down "
            f"kernel does not let a parameter set; the kernel then logs: {logged}"
        )
        return Finding("param-lockdown", message, "EPERM", advice=advice)

    def _unknown_param(self, shown: str, table: list[ModuleParam]) -> Finding:
        names = ", ".join(p.name for p in table) or "none"
        return Finding(
            "unknown-param",
            f"{self.name}: unknown parameter '{shown}' ignored",
            advice=f"{self.name} has no parameter {shown} (its parameters: {names})",
        )

    def _bad_value(self, outcome: ArgOutcome) -> Finding:
        assert outcome.problem is not None and outcome.param is not None
        first, *rest = outcome.problem.lines
        param = outcome.param
        if param.ops == "param_array_ops":
            element = self.module.element_types.get(param.name, "")
            kind = f"a list of at most {param.limit} comma-separated {element} values"
        else:
            kind = f"a value of type {param.ops.removeprefix('param_ops_')}"
        advice = f"{param.name} takes {kind}"
        if rest:
            advice += f"; the kernel then logs: {rest[-1]}"
        return Finding("param-value", first, outcome.problem.errno, advice=advice)


def _errno_of_the_last(findings: list[Finding]) -> list[Finding]:
    """The findings with every refusing one carrying the last one's errno:
    parse_args logs each failure and the load fails with the last."""
    refusing = [f for f in findings if f.refuses]
    if len(refusing) < 2:
        return findings
    last = refusing[-1].errno
    return [f.replace(errno=last) if f.refuses else f for f in findings]


def _newer_loader(kernel: KernelFacts) -> bool:
    """Whether the kernel has 6.4's loader (taints after the module is
    listed, struct module's size checked)."""
    from lkm.model.kernels import version_key

    return version_key(kernel.release) >= (6, 4)


# What insmod prints for an errno (kmod's insmod.c mod_strerror, else strerror).
INSMOD_TEXT = {
    "ENOEXEC": "Invalid module format",
    "ENOENT": "Unknown symbol in module",
    "EINVAL": "Invalid parameters",
}


def insmod_text(errno_name: str) -> str:
    """The reason ``insmod: ERROR: could not insert module …`` gives."""
    import errno

    if errno_name in INSMOD_TEXT:
        return INSMOD_TEXT[errno_name]
    return os.strerror(getattr(errno, errno_name, 0))


def exports_of(paths: Iterable[str]) -> dict[str, list[str]]:
    """The symbols each module file exports, by module name (unreadable
    files export nothing)."""
    from lkm.formats.module_file import open_module

    out: dict[str, list[str]] = {}
    for path in paths:
        try:
            with open_module(path) as module:
                out[_module_name(path)] = [s.name for s in module.exports()]
        except LkmError:
            continue
    return out


__all__ = [
    "LOADS",
    "REFUSED",
    "TAINTS",
    "CheckError",
    "Export",
    "Finding",
    "KernelFacts",
    "Verdict",
    "check_module",
    "exports_of",
    "insmod_text",
    "kernel_facts",
    "read_config",
    "read_symvers",
]
