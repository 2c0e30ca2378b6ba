"""``lkm check`` against the Debian kernels' own files: every in-tree
module loads into its own kernel, and each kind of broken or foreign
module is refused (or taints) with the kernel's words.

The verdicts are compared with what the real kernels do in
``tests/vm/test_check_in_vm.py``; here they are checked against the
files alone, on both trees."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import json_of, lkm

from lkm.model.load_check import (
    LOADS,
    REFUSED,
    TAINTS,
    KernelFacts,
    check_module,
    exports_of,
    kernel_facts,
)
from lkm.testing.debian_kernels import KernelFixture
from lkm.testing.module_edits import crc_changed, modinfo_replaced, unsigned


def _facts(kernel: KernelFixture) -> KernelFacts:
    # With the image: every signature is verified against the kernel's key.
    moddir, headers = str(kernel.indexed_moddir), str(kernel.headers)
    return kernel_facts(kernel.version, "amd64", moddir, headers, str(kernel.vmlinuz))


@pytest.fixture(scope="module")
def facts_61(kernel_61: KernelFixture) -> KernelFacts:
    return _facts(kernel_61)


@pytest.fixture(scope="module")
def facts_612(kernel_612: KernelFixture) -> KernelFacts:
    return _facts(kernel_612)


def _tree_paths(kernel: KernelFixture) -> list[str]:
    moddir = kernel.indexed_moddir
    with open(moddir / "modules.dep", encoding="utf-8") as f:
        return [str(moddir / line.split(":", 1)[0]) for line in f]


@pytest.mark.parametrize("label", ["6.1", "6.12"])
def test_every_in_tree_module_loads_into_its_own_kernel(
    kernels: list[KernelFixture], label: str, report
) -> None:  # type: ignore[no-untyped-def]
    kernel = next(k for k in kernels if k.label == label)
    facts = _facts(kernel)
    paths = _tree_paths(kernel)
    started = time.perf_counter()
    verdicts = [check_module(path, facts) for path in paths]
    seconds = time.perf_counter() - started
    outcomes = Counter((v.verdict, v.taints) for v in verdicts)
    staging = {v.path for v in verdicts if "/drivers/staging/" in v.path}
    assert {v.path for v in verdicts if v.verdict == TAINTS} == staging
    assert all(v.taints == "C" for v in verdicts if v.verdict == TAINTS)
    assert outcomes[(LOADS, "")] == len(paths) - len(staging) > 4000
    # their dependencies are the ones depmod found in the tree
    needing = sum(1 for v in verdicts if v.needs)
    report(
        f"lkm check on {label}: {len(paths)} in-tree modules load, signatures verified "
        f"({len(staging)} staging with taint C, {needing} needing others first) "
        f"in {seconds:.1f} s"
    )


def test_dependencies_are_the_trees(kernel_61: KernelFixture, facts_61: KernelFacts) -> None:
    moddir = kernel_61.indexed_moddir
    ext4 = check_module(str(moddir / "kernel/fs/ext4/ext4.ko"), facts_61)
    line = next(x for x in (moddir / "modules.dep").read_text().splitlines() if "/ext4.ko:" in x)
    direct = {Path(p).name.split(".")[0].replace("-", "_") for p in line.split(":")[1].split()}
    assert ext4.verdict == LOADS and set(ext4.needs) <= direct and ext4.needs


def test_another_kernels_modules_are_refused(
    kernel_61: KernelFixture,
    kernel_612: KernelFixture,
    facts_61: KernelFacts,
    facts_612: KernelFacts,
) -> None:
    old = str(kernel_61.indexed_moddir / "kernel/drivers/net/dummy.ko")
    new = str(kernel_612.indexed_moddir / "kernel/drivers/net/dummy.ko.xz")
    into_new = check_module(old, facts_612)
    assert into_new.verdict == REFUSED and into_new.reason is not None
    assert into_new.reason.code == "this-module-size"
    into_old = check_module(new, facts_61)
    assert into_old.reason is not None and into_old.reason.code == "crc"
    assert into_old.reason.message == "dummy: disagrees about version of symbol module_layout"


def test_another_architecture_is_refused(
    kernels: list[KernelFixture], facts_61: KernelFacts
) -> None:
    arm = next(k for k in kernels if k.label == "6.1-armhf")
    path = next(str(p) for p in arm.moddir.rglob("dummy.ko*"))
    verdict = check_module(path, facts_61)
    assert verdict.reason is not None
    assert verdict.reason.message == "Invalid architecture in ELF header: 40"


# -- edited copies of 6.1's dummy.ko -------------------------------------------------


@pytest.fixture
def dummy(kernel_61: KernelFixture) -> bytes:
    return unsigned(kernel_61.indexed_moddir / "kernel/drivers/net/dummy.ko")


def _check(
    tmp_path: Path, data: bytes, facts: KernelFacts, **options: object
) -> tuple[str, list[tuple[str, str, str, str]]]:  # type: ignore[no-untyped-def]
    path = tmp_path / "edited.ko"
    path.write_bytes(data)
    verdict = check_module(str(path), facts, **options)  # type: ignore[arg-type]
    return verdict.verdict, [(f.code, f.message, f.errno, f.taint) for f in verdict.findings]


def test_edited_modules(
    tmp_path: Path, dummy: bytes, facts_61: KernelFacts, kernel_61: KernelFixture
) -> None:
    verdict, findings = _check(tmp_path, dummy, facts_61)
    assert verdict == TAINTS and [f[3] for f in findings] == ["E"]  # unsigned
    verdict, findings = _check(tmp_path, dummy, facts_61, sig_enforce=True)
    assert verdict == REFUSED and findings[0][2] == "EKEYREJECTED"
    magic = modinfo_replaced(dummy, b"SMP preempt", b"SMP preemPT")
    verdict, findings = _check(tmp_path, magic, facts_61)
    assert findings[-1][:3] == (
        "vermagic",
        f"dummy: version magic '{facts_61.release} SMP preemPT mod_unload modversions ' should "
        f"be '{facts_61.vermagic}'",
        "ENOEXEC",
    )
    crc = crc_changed(dummy, "register_netdevice")
    verdict, findings = _check(tmp_path, crc, facts_61)
    assert findings[-1][1:3] == (
        "dummy: disagrees about version of symbol register_netdevice",
        "EINVAL",
    )
    proprietary = modinfo_replaced(dummy, b"license=GPL", b"license=ABC")
    verdict, findings = _check(tmp_path, proprietary, facts_61)
    assert ("license", "dummy: module license 'ABC' taints kernel.", "", "P") in findings
    assert verdict == REFUSED and findings[-1][0] == "gpl-only"
    out_of_tree = modinfo_replaced(dummy, b"intree=Y", b"intreX=Y")
    verdict, findings = _check(tmp_path, out_of_tree, facts_61)
    assert (
        verdict == TAINTS
        and ("out-of-tree", "dummy: loading out-of-tree module taints kernel.", "", "O") in findings
    )
    signed = (kernel_61.indexed_moddir / "kernel/drivers/net/dummy.ko").read_bytes()
    verdict, findings = _check(tmp_path, signed[:200] + b"X" + signed[201:], facts_61)
    assert verdict == REFUSED and findings == [
        (
            "bad-signature",
            "(nothing logged: the signature does not match the module's contents)",
            "EKEYREJECTED",
            "",
        )
    ]
    verdict, findings = _check(tmp_path, dummy[:3000], facts_61)
    assert verdict == REFUSED and findings[0][0] == "not-a-module"
    verdict, findings = _check(tmp_path, b"not an ELF file at all", facts_61)
    assert verdict == REFUSED and findings[0][0] == "not-a-module"
    verdict, findings = _check(tmp_path, dummy, facts_61, loaded=frozenset({"dummy"}))
    assert verdict == REFUSED and findings[-1][2] == "EEXIST"


def test_namespaces_must_be_imported(
    tmp_path: Path, kernel_61: KernelFixture, facts_61: KernelFacts
) -> None:
    moddir = kernel_61.indexed_moddir
    importer = next(
        path
        for path in sorted(moddir.rglob("*.ko"))
        if b"import_ns=" in path.read_bytes() and "staging" not in str(path)
    )
    data = unsigned(importer)
    assert check_module(str(importer), facts_61).verdict == LOADS
    hidden = modinfo_replaced(data, b"import_ns=", b"import_nX=")
    verdict, findings = _check(tmp_path, hidden, facts_61)
    assert verdict == REFUSED and findings[-1][0] == "namespace"
    assert findings[-1][1].endswith(", but does not import it.")


def test_modules_checked_together_satisfy_each_other(
    kernel_61: KernelFixture, facts_61: KernelFacts
) -> None:
    moddir = kernel_61.indexed_moddir
    jbd2 = str(moddir / "kernel/fs/jbd2/jbd2.ko")
    ext4 = str(moddir / "kernel/fs/ext4/ext4.ko")
    # A kernel whose tree lacks jbd2 (as an out-of-tree dependency would be).
    without = facts_61.replace(
        exports={k: e for k, e in facts_61.exports.items() if e.owner != "jbd2"}
    )
    alone = check_module(ext4, without)
    assert alone.reason is not None and alone.reason.code == "unknown-symbol"
    together = check_module(ext4, without, others=exports_of([jbd2]))
    assert together.verdict == LOADS and "jbd2" in together.needs


def test_cli(tmp_path: Path, kernel_61: KernelFixture, kernel_612: KernelFixture) -> None:
    moddir = kernel_61.indexed_moddir
    good = str(moddir / "kernel/drivers/net/dummy.ko")
    foreign = str(kernel_612.indexed_moddir / "kernel/drivers/net/dummy.ko.xz")
    headers = str(kernel_61.headers)
    loads = lkm("lkm", ["check", "--kernel", headers, good])
    assert loads.status == 0 and loads.stdout.decode().startswith(f"{good}: loads (")
    refused = lkm("lkm", ["check", "--kernel", headers, "--json", good, foreign])
    assert refused.status == 1
    shown = json_of("check", refused.stdout)
    assert [v["verdict"] for v in shown] == [LOADS, REFUSED]
    assert shown[1]["findings"][-1]["errno"] == "ENOEXEC"
    directory = lkm("lkm", ["check", "--kernel", headers, "--json", str(moddir / "kernel/fs/ext4")])
    assert directory.status == 0 and [v["module"] for v in json_of("check", directory.stdout)] == [
        "ext4"
    ]
    assert lkm("lkm", ["check", "--bogus", good]).status == 2
    assert lkm("lkm", ["check"]).status == 2
    missing = lkm("lkm", ["check", "--kernel", headers, str(tmp_path / "none.ko")])
    assert missing.status == 1 and b"none.ko" in missing.stdout
    help_text = lkm("lkm", ["check", "--help"])
    assert help_text.status == 0 and b"--sig-enforce" in help_text.stdout


def test_parameters_as_parse_args_takes_them(kernel_61: KernelFixture) -> None:
    """The parameter table read from the relocations of ``__param`` (names,
    the kernel's ops, an array's size) and the values the kernel's ops
    accept, from its kstrto* rules; the guest confirms the kernel's lines
    in tests/vm/test_check_in_vm.py."""
    from lkm.formats.module_file import open_module
    from lkm.formats.module_params import module_params
    from lkm.model.module_args import bool_value, integer_errno, split_args

    e1000 = kernel_61.indexed_moddir / "kernel/drivers/net/ethernet/intel/e1000/e1000.ko"
    with open_module(str(e1000)) as module:
        table = {p.name: p for p in module_params(module.elf) or []}
    assert table["debug"].ops == "param_ops_int" and table["copybreak"].ops == "param_ops_uint"
    assert table["Speed"].ops == "param_array_ops" and table["Speed"].limit == 33
    with open_module(str(kernel_61.indexed_moddir / "kernel/drivers/block/loop.ko")) as module:
        own = {p.name: p.ops for p in module_params(module.elf) or []}
    assert own == {"hw_queue_depth": "", "max_part": "param_ops_int", "max_loop": ""}
    int_range = (-(2**31), 2**31 - 1)
    cases = {"7": "", "-7": "", "0x1f": "", "017": "", "08": "EINVAL", "0x": "EINVAL", "": "EINVAL"}
    cases |= {"+-1": "EINVAL", "1\n": "", "2147483648": "ERANGE", "0x1" + "0" * 16: "ERANGE"}
    assert {text: integer_errno(text, *int_range) for text in cases} == cases
    assert integer_errno("-1", 0, 2**32 - 1) == "EINVAL"
    assert [bool_value(t) for t in ("Y", "0", "on", "oF", "o", "", "true", "F", "x")] == [
        True, False, True, False, None, None, True, False, None
    ]  # fmt: skip
    split = split_args(' a=1  b="x y" c d= "e=3" "f" -- g=1')
    assert split.words == (
        ("a", "1"),
        ("b", "x y"),
        ("c", None),
        ("d", ""),
        ("e", "3"),
        ("f", None),
    )
    assert split.after_dashes == "g=1" and split_args('"').words == (("", None),)


def test_cli_parameters(kernel_61: KernelFixture) -> None:
    moddir = kernel_61.indexed_moddir
    e1000 = str(moddir / "kernel/drivers/net/ethernet/intel/e1000/e1000.ko")
    dummy = str(moddir / "kernel/drivers/net/dummy.ko")
    headers = str(kernel_61.headers)
    args = ["check", "--kernel", headers, "--json", e1000, "debug=2", "nosuch=1", dummy]
    both = lkm("lkm", [*args, "numdummies=x"])
    assert both.status == 1
    first, second = json_of("check", both.stdout)
    assert first["verdict"] == LOADS
    assert [f["message"] for f in first["findings"]] == [
        "e1000: unknown parameter 'nosuch' ignored"
    ]
    assert second["verdict"] == REFUSED and second["findings"][-1] == {
        "code": "param-value",
        "message": "dummy: `x' invalid for parameter `numdummies'",
        "errno": "EINVAL",
        "insmod": "Invalid parameters",
        "taint": None,
        "advice": "numdummies takes a value of type int",
    }
    quoted = lkm("lkm", ["check", "--kernel", headers, dummy, '"numdummies=3"', "fw=/lib/x"])
    assert quoted.status == 0, quoted.stdout
    assert b"unknown parameter 'fw' ignored" in quoted.stdout
    after_directory = lkm(
        "lkm", ["check", "--kernel", headers, str(moddir / "kernel/fs/ext4"), "x=1"]
    )
    assert after_directory.status == 2 and b"after a directory" in after_directory.stderr


def test_lkm_try_says_the_kernels_reason(kernel_61: KernelFixture, tmp_path: Path) -> None:
    """A module the guest's insmod got ENOEXEC for: ``lkm try``'s report adds
    the reason lkm check finds (the modules built together), not only
    "Invalid module format"."""
    import errno

    from lkm.vm.boot_kernel import BootKernel
    from lkm.workflows.try_module import Call, GuestReport, TryReport, _review, check_reason

    dummy = kernel_61.indexed_moddir / "kernel/drivers/net/dummy.ko"
    edited = tmp_path / "dummy.ko"
    edited.write_bytes(modinfo_replaced(unsigned(dummy), b"SMP preempt", b"SMP preemPT"))
    boot = BootKernel(kernel_61.version, str(kernel_61.vmlinuz), str(kernel_61.indexed_moddir))
    modules = [("dummy", str(edited))]
    guest = GuestReport(
        0, 0, (Call("insmod", "dummy", 0.1, errno.ENOEXEC),), (), (), {}, {}, None, ()
    )
    report = TryReport(str(tmp_path), kernel_61.version, str(kernel_61.headers))
    _review(report, guest, lambda name: check_reason(modules, boot, str(kernel_61.headers), name))
    assert report.problems[0].startswith("load failed: dummy: Exec format error (-ENOEXEC)")
    assert report.problems[1].startswith(
        "the kernel's reason (lkm check): dummy: version magic '6.1"
    ), report.problems
    assert "rebuild against" in report.problems[1]
    assert check_reason(modules, boot, str(kernel_61.headers), "other") is None


def test_lkm_build_notes_for_the_running_kernel(
    kernel_61: KernelFixture, kernel_612: KernelFixture, facts_61: KernelFacts
) -> None:
    """After a build for another kernel than the running one, lkm build says
    whether the running kernel (here: 6.1's facts) would load the result."""
    from lkm.workflows.check import load_notes

    own = str(kernel_61.indexed_moddir / "kernel/drivers/net/dummy.ko")
    foreign = str(kernel_612.indexed_moddir / "kernel/drivers/net/dummy.ko.xz")
    refused, loads = load_notes([foreign, own], kernel_612.version, facts_61)
    assert refused == (
        f"dummy is built for {kernel_612.version}, not the running {kernel_61.version}, which "
        "would refuse it: dummy: disagrees about version of symbol module_layout"
    )
    assert loads.endswith("which would load it too (loads)")


def test_keys_the_running_kernel_holds(
    kernel_61: KernelFixture, facts_61: KernelFacts, tmp_path: Path
) -> None:
    """A module signed by a key the running kernel holds besides its build
    key (MOK, as DKMS's enrolled key): no taint E, and loaded under
    sig_enforce, as the kernel would; the verdict says the kernel, not
    lkm, verifies it. Another key of another name: taint E, refused
    enforced."""
    from lkm.workflows.keygen import generate
    from lkm.workflows.sign import load_signer, sign_module

    pair = generate("DKMS module signing key")
    (tmp_path / "key.pem").write_bytes(pair.key_pem)
    (tmp_path / "cert.pem").write_bytes(pair.certificate)
    plain = unsigned(kernel_61.indexed_moddir / "kernel/drivers/net/dummy.ko")
    signer = load_signer(str(tmp_path / "key.pem"), str(tmp_path / "cert.pem"))
    module = tmp_path / "dummy.ko"
    module.write_bytes(sign_module(plain, signer))
    held = ("Debian Secure Boot CA: 6ccece7e4c6c0d1f6149f3dd27dfcc5cbb419ea1",)
    held += ("Example Org: DKMS module signing key: 0123456789abcdef0123456789abcdef01234567",)
    for enforce in (False, True):
        with_key = check_module(str(module), facts_61, sig_enforce=enforce, running_keys=held)
        assert with_key.verdict == LOADS, with_key
        assert [f.code for f in with_key.findings] == ["held-key"]
        assert "Example Org: DKMS module signing key: 0123" in with_key.findings[0].message
    other = ("Someone else: 00",)
    assert check_module(str(module), facts_61, running_keys=other).taints == "E"
    refused = check_module(str(module), facts_61, sig_enforce=True, running_keys=other)
    assert refused.verdict == REFUSED and refused.findings[0].code == "signature"


def test_string_limits_count_bytes_as_the_kernel_does() -> None:
    from lkm.formats.module_params import ModuleParam
    from lkm.model.module_args import CHARP_LIMIT, outcomes

    table = [ModuleParam("name", "param_ops_string", 0, 8), ModuleParam("p", "param_ops_charp", 0)]
    fits, too_long = outcomes("m", "name=abcdefg name=abcdéfg", table, {})
    assert fits.problem is None  # 7 bytes and the NUL fill the 8-byte buffer
    assert too_long.problem is not None and too_long.problem.errno == "ENOSPC"  # é is 2 bytes
    half = "é" * (CHARP_LIMIT // 2)
    (at_limit,) = outcomes("m", f"p={half}", table, {})
    (over,) = outcomes("m", f"p={half}é", table, {})
    assert at_limit.problem is None and over.problem is not None


def test_the_kernels_certificate_is_found_once_and_the_cache_stays_small(
    kernel_61: KernelFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lkm.model import kernel_keys
    from lkm.model.load_check import _own_module_facts

    monkeypatch.setenv("LKM_CACHE", str(tmp_path / "cache"))
    dummy = kernel_61.indexed_moddir / "kernel/drivers/net/dummy.ko"
    _, _, signer = _own_module_facts(str(dummy))
    assert signer is not None
    found = kernel_keys.signing_certificate(str(kernel_61.vmlinuz), *signer)
    assert found is not None and found[:1] == b"\x30"  # DER
    (kept,) = (tmp_path / "cache" / "kernel-keys").iterdir()
    assert kept.read_bytes() == found

    def no_search(*_args: object) -> None:
        raise AssertionError("the image was searched again")

    monkeypatch.setattr(kernel_keys, "_in_image", no_search)
    assert kernel_keys.signing_certificate(str(kernel_61.vmlinuz), *signer) == found
    for n in range(kernel_keys.CACHED_CERTIFICATES + 5):
        (kept.parent / f"other-{n}.der").write_bytes(b"0")
    kernel_keys._keep_newest(str(kept.parent), kernel_keys.CACHED_CERTIFICATES)
    assert len(list(kept.parent.iterdir())) == kernel_keys.CACHED_CERTIFICATES
