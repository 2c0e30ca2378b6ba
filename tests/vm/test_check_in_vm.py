"""``lkm check``'s verdicts against what the real kernels do.

In each kernel's guest, kmod's ``insmod`` loads a set of module files the
test makes from the Debian trees' own modules: the kernel's own
``dummy`` (signed, then unsigned, marked out of tree, with another
licence, another vermagic word, a changed symbol CRC), the other
kernel's ``dummy``, the armhf tree's, a truncated file, a module whose
namespace import is hidden, ``ext4`` without the modules it needs loaded,
a module loaded twice, (6.1) the kernel's own module xz-compressed, a
staging module, and ``dummy``/``e1000`` loaded with parameters (unknown,
not a number, out of range, too many array elements).
For each, ``lkm check`` predicted on the host (for the loaded-module cases
from the guest's ``/proc/modules`` of that moment, as ``--running``
reads it): a refusal must come with the kernel's own first error line
and insmod's reason, a load with exactly the predicted taints
(``/sys/module/NAME/taint``). ``lkm check --running`` also runs inside
the guest once, for ``ext4``, and ``lkm insmod -v`` says the kernel's
reason after a refusal. Signatures: the kernel's own module with a
byte changed (refused even unenforced, nothing logged: ``lkm check``
verifies it with the key's certificate from the kernel image) and the
module signed by a new key (loads, taint E).
"""

from __future__ import annotations

import lzma
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import command, json_of

from lkm.model.load_check import (
    LOADS,
    REFUSED,
    TAINTS,
    KernelFacts,
    Verdict,
    check_module,
    exports_of,
    insmod_text,
    kernel_facts,
)
from lkm.testing.debian_kernels import KernelFixture
from lkm.testing.guest import Guest
from lkm.testing.module_edits import crc_changed, modinfo_replaced, unsigned
from lkm.vm.qemu import VmSession

LKM = str(Path(sys.executable).with_name("lkm"))
Report = Callable[[str], None]
# One case: the file, the module name it loads as, whether it is loaded
# once first (the already-loaded case), the parameters insmod passes.
Case = tuple[str, Path, str, bool, str]


def _own_dummy(kernel: KernelFixture) -> Path:
    return next(kernel.indexed_moddir.glob("kernel/drivers/net/dummy.ko*"))


def _namespace_importer(kernel: KernelFixture) -> tuple[Path, str]:
    """A small in-tree module that imports a namespace and needs no other
    module, and its name."""
    moddir = kernel.indexed_moddir
    for line in (moddir / "modules.dep").read_text().splitlines():
        path, _, deps = line.partition(":")
        if deps.strip() or "staging" in path:
            continue
        data = unsigned(moddir / path)
        if b"import_ns=" in data:
            return moddir / path, Path(path).name.split(".")[0].replace("-", "_")
    raise AssertionError("no namespace importer without dependencies")


def _no_dependencies(kernel: KernelFixture, wanted: Callable[[str], bool]) -> tuple[Path, str]:
    """The first module of the tree ``wanted`` accepts (by its path) that
    needs no other module, and its name."""
    moddir = kernel.indexed_moddir
    for line in (moddir / "modules.dep").read_text().splitlines():
        path, _, deps = line.partition(":")
        if not deps.strip() and wanted(path):
            return moddir / path, Path(path).name.split(".")[0].replace("-", "_")
    raise AssertionError(f"no such module without dependencies in {moddir}")


def _cases(
    kernel: KernelFixture, other: KernelFixture, arm: KernelFixture, work: Path
) -> list[Case]:
    work.mkdir()
    own = _own_dummy(kernel)
    plain = unsigned(own)
    importer, importer_name = _namespace_importer(kernel)
    edits = {
        "unsigned": plain,
        "out-of-tree": modinfo_replaced(plain, b"intree=Y", b"intreX=Y"),
        "licence": modinfo_replaced(plain, b"license=GPL", b"license=ABC"),
        "vermagic": modinfo_replaced(plain, b"SMP preempt", b"SMP preemPT"),
        "crc": crc_changed(plain, "register_netdevice"),
        "truncated": own.read_bytes()[:3000] if own.suffix == ".ko" else plain[:3000],
    }
    cases: list[Case] = [("signed", own, "dummy", False, "")]
    tampered = bytearray(
        own.read_bytes() if own.suffix == ".ko" else lzma.decompress(own.read_bytes())
    )
    tampered[200] ^= 1  # in the signed part: the kernel refuses, enforced or not
    (work / "tampered.ko").write_bytes(bytes(tampered))
    cases.append(("tampered", work / "tampered.ko", "dummy", False, ""))
    (work / "foreign-key.ko").write_bytes(_signed_by_a_new_key(plain, work))
    cases.append(("signed by another key", work / "foreign-key.ko", "dummy", False, ""))
    for label, data in edits.items():
        path = work / f"{label}.ko"
        path.write_bytes(data)
        cases.append((label, path, "dummy", False, ""))
    hidden = work / "namespace.ko"
    hidden.write_bytes(modinfo_replaced(unsigned(importer), b"import_ns=", b"import_nX="))
    cases.append(("namespace", hidden, importer_name, False, ""))
    cases.append(("other kernel's", _own_dummy(other), "dummy", False, ""))
    cases.append(("armhf", next(arm.moddir.rglob("dummy.ko*")), "dummy", False, ""))
    cases.append(("needs modules", kernel.indexed_moddir / _ext4(kernel), "ext4", False, ""))
    cases.append(("already loaded", own, "dummy", True, ""))
    staging, staging_name = _no_dependencies(kernel, lambda path: "/staging/" in path)
    cases.append(("staging", staging, staging_name, False, ""))
    cases.append(("unknown parameter", own, "dummy", False, "numdummies=2 nosuch=1 x.y=2"))
    cases.append(("parameter not a number", own, "dummy", False, "numdummies=2x"))
    cases.append(("parameter out of range", own, "dummy", False, "numdummies=0x100000000"))
    e1000, _ = _no_dependencies(kernel, lambda path: "/e1000.ko" in path)
    too_many = ",".join(["10"] * 40)
    cases.append(("array too long", e1000, "e1000", False, f"Speed={too_many}"))
    if own.suffix == ".ko":  # 6.1: its own module xz-compressed, as 6.12's are
        packed = work / "dummy.ko.xz"
        packed.write_bytes(lzma.compress(own.read_bytes(), check=lzma.CHECK_CRC32))
        cases.append(("xz", packed, "dummy", False, ""))
    return cases


def _signed_by_a_new_key(image: bytes, work: Path) -> bytes:
    from lkm.workflows.keygen import generate
    from lkm.workflows.sign import load_signer, sign_module

    pair = generate("lkm check test key")
    (work / "key.pem").write_bytes(pair.key_pem)
    (work / "cert.pem").write_bytes(pair.certificate)
    return sign_module(image, load_signer(str(work / "key.pem"), str(work / "cert.pem")))


def _ext4(kernel: KernelFixture) -> str:
    line = next(
        x for x in (kernel.indexed_moddir / "modules.dep").read_text().splitlines() if "/ext4." in x
    )
    return line.split(":", 1)[0]


def _script(cases: list[Case]) -> str:
    """One guest step for every case: the loaded modules, insmod's output
    and status, the kernel's lines, the module's taints; unloaded after."""
    lines = []
    for label, path, name, twice, args in cases:
        quoted = shlex.quote(str(path))
        lines.append(f"echo {shlex.quote('@@ ' + label)}")
        if twice:
            lines.append(f"insmod {quoted} >/dev/null 2>&1")
        lines.append("echo '@@loaded'; cut -d' ' -f1 /proc/modules | tr '\\n' ' '; echo")
        lines.append("dmesg -C")
        lines.append(f"echo '@@insmod'; insmod {quoted} {args} 2>&1; echo \"@@status $?\"")
        lines.append("echo '@@kernel'; dmesg -t")
        lines.append(f"echo '@@taint'; cat /sys/module/{name}/taint 2>/dev/null; echo")
        lines.append(f"rmmod {name} 2>/dev/null; true")
    return "\n".join(lines) + "\n"


def _parse(output: str) -> dict[str, dict[str, str]]:
    results: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    part = ""
    for line in output.splitlines():
        if line.startswith("@@ "):
            current = results.setdefault(line[3:], {})
            part = ""
        elif line.startswith("@@status "):
            current["status"] = line.split()[1]
        elif line.startswith("@@"):
            part = line[2:]
            current[part] = ""
        elif part:
            current[part] += line + "\n"
    return results


def _compare(label: str, predicted: Verdict, seen: dict[str, str]) -> str:
    """Nothing when the kernel did what ``lkm check`` said, else why not."""
    kernel_lines = seen["kernel"].splitlines()
    if predicted.verdict == REFUSED:
        reason = predicted.reason
        assert reason is not None
        if seen["status"] == "0":
            return f"{label}: loaded, lkm check said refused ({reason.message})"
        if insmod_text(reason.errno) not in seen["insmod"]:
            return f"{label}: insmod said {seen['insmod']!r}, lkm check {reason.errno}"
        if reason.message.startswith("(nothing logged"):
            errors = [line for line in kernel_lines if not line.endswith("tainting kernel")]
            return f"{label}: the kernel logged {errors}" if errors else ""
        # The first line the kernel logs that is not a taint's notice (some
        # are logged once per boot only) must be lkm check's reason.
        notices = {f.message for f in predicted.findings if not f.refuses}
        notices.add("Disabling lock debugging due to kernel taint")
        errors = [line for line in kernel_lines if line not in notices]
        if errors[:1] != [reason.message]:
            return f"{label}: the kernel logged {errors[:3]}, lkm check {reason.message!r}"
        return ""
    if seen["status"] != "0":
        return f"{label}: refused ({seen['insmod'].strip()}; {kernel_lines}), lkm check said loads"
    taints = set(seen["taint"].strip())
    if taints != set(predicted.taints):
        return f"{label}: taints {sorted(taints)}, lkm check said {sorted(predicted.taints)}"
    warnings = [f.message for f in predicted.findings if f.code == "unknown-param"]
    if not set(warnings) <= set(kernel_lines):
        return f"{label}: the kernel logged {kernel_lines}, lkm check warned {warnings}"
    return ""


def test_check_predicts_what_the_kernel_does(
    vm: Guest, kernels: list[KernelFixture], tmp_path: Path, report: Report
) -> None:
    kernel = vm.kernel
    other = next(k for k in kernels if k.label == ("6.12" if kernel.label == "6.1" else "6.1"))
    arm = next(k for k in kernels if k.label == "6.1-armhf")
    cases = _cases(kernel, other, arm, tmp_path / "cases")
    facts: KernelFacts = kernel_facts(
        kernel.version,
        "amd64",
        str(kernel.indexed_moddir),
        str(kernel.headers),
        str(kernel.vmlinuz),
    )
    output = vm.check(["sh", "-c", _script(cases)], timeout=300).stdout.decode()
    seen = _parse(output)
    problems = []
    kinds = set()
    predictions: dict[str, Verdict] = {}
    for label, path, _, _, args in cases:
        loaded = frozenset(seen[label]["loaded"].split())
        predicted = predictions[label] = check_module(str(path), facts, loaded=loaded, args=args)
        kinds.add(predicted.verdict if predicted.reason is None else predicted.reason.code)
        problems.append(_compare(label, predicted, seen[label]))
    assert [p for p in problems if p] == []
    assert {
        LOADS,
        "vermagic",
        "crc",
        "namespace",
        "gpl-only",
        "needs-module",
        "loaded",
        "bad-signature",
        "param-value",
    } <= kinds
    assert "C" in predictions["staging"].taints
    assert "unknown-param" in {f.code for f in predictions["unknown parameter"].findings}
    # lkm insmod -v: the kernel's reason after its refusal
    vermagic = next(path for label, path, _, _, _ in cases if label == "vermagic")
    # (the kernel's packages from lkm's cache: this guest has no build link)
    cache = f"LKM_CACHE={Path(kernel.root).parents[1]}"
    explained = vm.run(["env", cache, LKM, "insmod", "-v", str(vermagic)])
    lines = explained.stderr.decode().splitlines()
    assert explained.status == 1 and lines[0].endswith("Invalid module format"), lines
    assert lines[1].startswith("insmod: the kernel's reason: dummy: version magic '"), lines
    # and lkm modprobe -v (a notice after kmod's own error line)
    probed = vm.run(["env", cache, LKM, "modprobe", "-v", "dummy", "numdummies=x"])
    assert probed.status == 1 and probed.stderr.decode().splitlines()[-3:-1] == [
        "modprobe: ERROR: could not insert 'dummy': Invalid argument",
        "modprobe: NOTICE: the kernel's reason: dummy: `x' invalid for parameter `numdummies'",
    ], probed.stderr
    # --running in the guest itself, for the module whose dependencies are not loaded
    ext4 = str(kernel.indexed_moddir / _ext4(kernel))
    running = vm.run([LKM, "check", "--running", "--json", "--kernel", str(kernel.headers), ext4])
    verdict = json_of("check", running.stdout)[0]
    assert running.status == 1 and verdict["findings"][-1]["code"] == "needs-module"
    report(
        f"lkm check vs insmod in {kernel.label}: {len(cases)} modules, every verdict and first "
        "reason as the kernel's (and --running in the guest)"
    )


def test_modules_checked_together(vm: Guest, tmp_path: Path, report: Report) -> None:
    """The pair template built for the guest's kernel: its user module
    needs its core module's export. Checked alone it is refused (Unknown
    symbol, as insmod of it alone is); checked with the core both load,
    and insmod of the core, then the user, loads both."""
    from lkm.workflows.scaffold import create

    kernel = vm.kernel
    directory = tmp_path / "duo"
    create(str(directory), "pair")
    built = command([LKM, "build", str(directory), "--kernel", kernel.version, "-j2"], text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    core, user = directory / "duo_core.ko", directory / "duo_user.ko"
    facts = kernel_facts(kernel.version, "amd64", str(kernel.indexed_moddir), str(kernel.headers))
    loaded = frozenset(vm.check("cut -d' ' -f1 /proc/modules").stdout.decode().split())
    alone = check_module(str(user), facts, loaded=loaded)
    together = [
        check_module(str(path), facts, others=exports_of([str(other)]), loaded=loaded)
        for path, other in ((core, user), (user, core))
    ]
    script = (
        f'dmesg -C; insmod {user} 2>&1; echo "@@status $?"; dmesg -t | grep duo_user; '
        f"insmod {core} && insmod {user} && cat /sys/module/duo_user/taint; "
        "rmmod duo_user duo_core"
    )
    out = vm.check(["sh", "-c", script]).stdout.decode()
    assert alone.reason is not None and alone.reason.code == "unknown-symbol"
    assert "@@status 1" in out and alone.reason.message in out.splitlines()
    assert [v.verdict for v in together] == [TAINTS, TAINTS] and together[1].needs == ("duo_core",)
    assert set(out.strip().splitlines()[-1]) == set(together[1].taints) == {"O", "E"}
    report(
        f"lkm check of two out-of-tree modules in {kernel.label}: the user alone refused "
        f"({alone.reason.message}), both together load, as insmod found"
    )


def _signature_cases(kernel: KernelFixture, tmp_path: Path) -> list[str]:
    """The kernel's own module, unsigned, and signed by a new key."""
    own = _own_dummy(kernel)
    work = tmp_path / "cases"
    work.mkdir()
    (work / "unsigned.ko").write_bytes(unsigned(own))
    (work / "new-key.ko").write_bytes(_signed_by_a_new_key(unsigned(own), work))
    return [str(own), str(work / "unsigned.ko"), str(work / "new-key.ko")]


def _boot_and_load(
    kernel: KernelFixture, append: str, cases: list[list[str]]
) -> tuple[str, list[str]]:
    """In a guest booted with ``append``: lkm check --running's JSON, then
    each module (a path and its parameters) loaded by insmod (its output
    and the kernel's last two lines)."""
    moddir = str(kernel.indexed_moddir)
    with VmSession(str(kernel.vmlinuz), moddir, kernel.version, append=append) as session:
        guest = Guest(session, kernel)
        words = [word for case in cases for word in case]
        predicted = guest.run(
            [LKM, "check", "--running", "--json", "--kernel", str(kernel.headers), *words]
        )
        loads = []
        for case in cases:
            insmod = f"dmesg -C; insmod {shlex.join(case)} 2>&1; dmesg -t | tail -2"
            done = guest.run(["sh", "-c", f"{insmod}; rmmod dummy applicom 2>/dev/null"])
            loads.append(done.stdout.decode())
    return predicted.stdout.decode(), loads


@pytest.mark.parametrize(
    ("append", "refusal", "messages"),
    [
        (
            "module.sig_enforce=1",
            "Key was rejected by service",
            [
                "Loading of unsigned module is rejected",
                "Loading of module with unavailable key is rejected",
            ],
        ),
        (
            "lockdown=integrity",
            "Operation not permitted",
            ["Lockdown: insmod: unsigned module loading is restricted; see man kernel_lockdown.7"]
            * 2,
        ),
    ],
    ids=["sig_enforce", "lockdown"],
)
def test_enforced_signatures(
    kernel_61: KernelFixture,
    tmp_path: Path,
    report: Report,
    append: str,
    refusal: str,
    messages: list[str],
) -> None:
    """A guest booted with ``module.sig_enforce=1``, or locked down: the
    kernel's own module loads, an unsigned one and one signed by a new key
    are rejected, as ``lkm check --running`` inside says (it reads
    sig_enforce and the lockdown level)."""
    cases = [[path] for path in _signature_cases(kernel_61, tmp_path)]
    # a parameter naming hardware (module_param_hw): refused only under lockdown
    applicom = str(kernel_61.indexed_moddir / "kernel/drivers/char/applicom.ko")
    cases.append([applicom, "irq=5"])
    predicted, loads = _boot_and_load(kernel_61, append, cases)
    verdicts = json_of("check", predicted)
    assert [v["verdict"] for v in verdicts[:3]] == [LOADS, REFUSED, REFUSED]
    assert [v["findings"][0]["message"] for v in verdicts[1:3]] == messages
    for verdict, seen in zip(verdicts[1:3], loads[1:3], strict=True):
        assert refusal in seen and refusal == verdict["findings"][0]["insmod"]
        assert seen.splitlines()[-1] == verdict["findings"][0]["message"]
    assert "ERROR" not in loads[0]
    invalid = "applicom: `5' invalid for parameter `irq'"
    if append.startswith("lockdown"):
        (finding,) = verdicts[3]["findings"]
        assert verdicts[3]["verdict"] == REFUSED and finding["errno"] == "EPERM"
        assert loads[3].splitlines()[-2:] == [finding["message"], invalid]
        assert "Operation not permitted" in loads[3]
    else:  # the parameter is set; the module's init then looks for a card
        assert verdicts[3]["verdict"] == LOADS and invalid not in loads[3]
    report(f"lkm check --running with {append} in 6.1: 4 modules as the kernel decided")
