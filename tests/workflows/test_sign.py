"""``lkm sign`` against the kernel's own ``scripts/sign-file`` (from the
Debian 6.1 and 6.12 kbuild packages), byte for byte; ``lkm keygen``'s
certificate; kmod's modinfo on the result; every bad input.

The module is built once per session from ``lkm new``'s template against
the 6.1 headers. Keys come from ``openssl req`` (RSA 2048 with a
certificate issued by a separate CA, so issuer and subject differ; RSA
4096 with a DER certificate and a PKCS#1 key) and from ``lkm keygen``.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import Result, command, kmod
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lkm.cli import main as lkm_main
from lkm.formats.signature import read_signature
from lkm.formats.signature_writer import (
    encode_signed_data,
    signature_algorithm,
    signature_trailer,
)
from lkm.testing.debian_kernels import KernelFixture
from lkm.workflows.build import build
from lkm.workflows.scaffold import create
from lkm.workflows.sign import load_signer

HASHES = ["sha1", "sha224", "sha256", "sha384", "sha512", "sha3-256", "sha3-512"]
# Debian's kmod 30 shows no signature for a digest outside its 3.7-era
# table; lkm shows these as kmod >= 32 does (README: differences).
KMOD30_UNKNOWN = {"sha3-256", "sha3-512"}


def lkm(tool: str, args: list[str]) -> Result:
    """``lkm TOOL ARGS…`` in-process."""
    out, err = io.BytesIO(), io.BytesIO()
    status = lkm_main(["lkm", tool, *args], out, err)
    return Result(out.getvalue(), err.getvalue(), status)


def _openssl(*args: str) -> None:
    command(["openssl", *args], check=True)


@dataclass(frozen=True)
class Key:
    name: str
    key: Path
    cert: Path


def sign(module: Path, key: Key, *options: str) -> Result:
    """``lkm sign MODULE --key … --cert … OPTIONS…`` in-process."""
    return lkm("sign", [str(module), "--key", str(key.key), "--cert", str(key.cert), *options])


@pytest.fixture(scope="session")
def sign_files(kernel_61: KernelFixture, kernel_612: KernelFixture) -> list[Path]:
    """scripts/sign-file of the 6.1 and of the 6.12 kbuild package."""
    found = [
        path
        for kernel in (kernel_61, kernel_612)
        for path in Path(kernel.root).glob("usr/lib/linux-kbuild-*/scripts/sign-file")
    ]
    assert len(found) == 2, found
    return found


@pytest.fixture(scope="session")
def module(tmp_path_factory: pytest.TempPathFactory, kernel_61: KernelFixture) -> Path:
    directory = tmp_path_factory.mktemp("build") / "signme"
    create(str(directory))
    result = build(str(directory), kernel_61.version, 2, lambda _line: None)
    (ko,) = result.modules
    assert read_signature(Path(ko).read_bytes()) is None  # kbuild signs at install
    return Path(ko)


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> list[Key]:
    tmp = tmp_path_factory.mktemp("keys")
    # RSA 2048, certificate issued by a CA: issuer != subject.
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=lkm test CA/O=lkm", "-keyout", str(tmp / "ca.key"),
             "-out", str(tmp / "ca.pem"))  # fmt: skip
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj",
             "/O=lkm tests/CN=module signer/OU=a, b", "-keyout", str(tmp / "rsa2048.key"),
             "-out", str(tmp / "rsa2048.csr"))  # fmt: skip
    (tmp / "ext.cnf").write_text("subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    _openssl("x509", "-req", "-in", str(tmp / "rsa2048.csr"), "-CA", str(tmp / "ca.pem"),
             "-CAkey", str(tmp / "ca.key"), "-set_serial", "0x00ff00000000000000000001",
             "-days", "2", "-extfile", str(tmp / "ext.cnf"),
             "-out", str(tmp / "rsa2048.pem"))  # fmt: skip
    # RSA 4096, PKCS#1 ("BEGIN RSA PRIVATE KEY") and a DER certificate.
    _openssl("req", "-x509", "-newkey", "rsa:4096", "-nodes", "-days", "2",
             "-subj", "/CN=big key", "-keyout", str(tmp / "rsa4096.p8"),
             "-outform", "DER", "-out", str(tmp / "rsa4096.der"))  # fmt: skip
    _openssl("rsa", "-traditional", "-in", str(tmp / "rsa4096.p8"), "-out",
             str(tmp / "rsa4096.key"))  # fmt: skip
    made = lkm("keygen", ["--key", str(tmp / "lkm.key"), "--cert", str(tmp / "lkm.x509")])
    assert made.status == 0, made.stderr
    return [
        Key("rsa2048-ca", tmp / "rsa2048.key", tmp / "rsa2048.pem"),
        Key("rsa4096-der", tmp / "rsa4096.key", tmp / "rsa4096.der"),
        Key("lkm-keygen", tmp / "lkm.key", tmp / "lkm.x509"),
    ]


@pytest.fixture(scope="session")
def signed_module(tmp_path_factory: pytest.TempPathFactory, module: Path, keys: list[Key]) -> Path:
    """The module signed once already (sha256, the first key)."""
    path = tmp_path_factory.mktemp("signed") / "signme.ko"
    shutil.copy(module, path)
    assert sign(path, keys[0]).status == 0
    return path


def _sign_file(binary: Path, options: list[str], key: Key, source: Path, dest: Path) -> bytes:
    command(
        [str(binary), *options, str(key.key), str(key.cert), str(source), str(dest)],
        check=True,
    )
    return dest.read_bytes()


def test_keys_have_the_shapes_intended(keys: list[Key]) -> None:
    assert keys[0].key.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert keys[1].key.read_text().startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert keys[1].cert.read_bytes()[:2] == b"\x30\x82"
    text = command(
        ["openssl", "x509", "-in", str(keys[0].cert), "-noout", "-issuer", "-subject"],
        check=True,
        text=True,
    ).stdout
    assert "issuer=CN = lkm test CA" in text and "subject=O = lkm tests" in text


def test_byte_identical_to_sign_file(
    sign_files: list[Path],
    module: Path,
    signed_module: Path,
    keys: list[Key],
    tmp_path: Path,
    report,  # type: ignore[no-untyped-def]
) -> None:
    compared = 0
    for binary in sign_files:
        for key in keys:
            for source in (module, signed_module):
                for hash_name in HASHES:
                    for keyid in (False, True):
                        expected = _sign_file(
                            binary,
                            ["-k", hash_name] if keyid else [hash_name],
                            key,
                            source,
                            tmp_path / "by-sign-file.ko",
                        )
                        ours = tmp_path / "by-lkm.ko"
                        shutil.copy(source, ours)  # signed in place
                        options = ["--hash", hash_name] + (["--keyid"] if keyid else [])
                        result = sign(ours, key, *options)
                        assert (result.status, result.stderr) == (0, b"")
                        case = f"{binary} {key.name} {source.parent.name} {hash_name} {keyid}"
                        assert ours.read_bytes() == expected, case
                        compared += 1
    report(f"lkm sign vs sign-file (6.1, 6.12): {compared} signed modules byte for byte")
    assert compared == len(sign_files) * len(keys) * 2 * len(HASHES) * 2


def test_a_signed_module_gets_a_second_signature(
    module: Path, signed_module: Path, keys: list[Key], tmp_path: Path
) -> None:
    """As sign-file: the new signature covers the module and the old one."""
    dest = tmp_path / "twice.ko"
    assert sign(signed_module, keys[1], "--output", str(dest)).status == 0
    twice = dest.read_bytes()
    once = signed_module.read_bytes()
    assert twice.startswith(once) and once.startswith(module.read_bytes())
    outer = read_signature(twice)
    assert outer is not None and outer.module_size == len(once)
    assert outer.pkcs7 is not None and outer.pkcs7.issuer_cn == b"big key"


@pytest.mark.parametrize("hash_name", ["sha1", "sha256", "sha384", "sha512"])
def test_ecdsa_has_sign_files_structure(
    sign_files: list[Path], module: Path, tmp_path: Path, hash_name: str
) -> None:
    """ECDSA signatures are randomised: the message around the signature
    must be sign-file's, and openssl must verify lkm's."""
    key = Key("ec", tmp_path / "ec.key", tmp_path / "ec.pem")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1",
             "-nodes", "-days", "2", "-subj", "/CN=ec signer", "-keyout", str(key.key),
             "-out", str(key.cert))  # fmt: skip
    reference = _sign_file(sign_files[0], [hash_name], key, module, tmp_path / "ref.ko")
    info = read_signature(reference)
    assert info is not None and info.pkcs7 is not None
    signer = load_signer(str(key.key), str(key.cert))
    rebuilt = encode_signed_data(
        hash_name,
        signer.signer_id(False),
        signature_algorithm("ecdsa", hash_name),
        info.pkcs7.encrypted_digest,
        key_id=False,
    )
    assert module.read_bytes() + signature_trailer(rebuilt) == reference
    ours = tmp_path / "ours.ko"
    assert sign(module, key, "-o", str(ours), "--hash", hash_name).status == 0
    signature = read_signature(ours.read_bytes())
    assert signature is not None
    (tmp_path / "sig.p7").write_bytes(signature.signature)
    refused = sign(module, key, "-o", str(ours), "--hash", "sha3-256")
    assert (refused.status, refused.stderr) == (1, (
        f"lkm sign: {key.key}: an ECDSA key signs with sha1, sha224, sha256, sha384, sha512 "
        "(as sign-file does), not sha3-256\n").encode())  # fmt: skip
    command(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(tmp_path / "sig.p7"),
         "-content", str(module), "-certfile", str(key.cert), "-noverify", "-out", os.devnull],
        check=True,
    )  # fmt: skip


def test_modinfo_shows_the_signature_as_kmod_does(
    sign_files: list[Path],
    module: Path,
    keys: list[Key],
    tmp_path: Path,
    report,  # type: ignore[no-untyped-def]
) -> None:
    compared = 0
    for key in keys:
        for hash_name in HASHES:
            ours, theirs = tmp_path / "ours.ko", tmp_path / "theirs.ko"
            assert sign(module, key, "-o", str(ours), "--hash", hash_name).status == 0
            _sign_file(sign_files[-1], [hash_name], key, module, theirs)
            fields = ["sig_id", "signer", "sig_key", "sig_hashalgo", "signature"]
            for field in fields:
                by_kmod = [kmod("modinfo", ["-F", field, str(p)]).stdout for p in (ours, theirs)]
                assert by_kmod[0] == by_kmod[1]
            for path in (ours, theirs):
                by_lkm = lkm("modinfo", [str(path)])
                by_kmod = kmod("modinfo", [str(path)])
                if hash_name in KMOD30_UNKNOWN:
                    assert b"\nsig_id:" not in by_kmod.stdout
                    assert f"\nsig_hashalgo:   {hash_name}\n".encode() in by_lkm.stdout
                    continue
                assert by_lkm == by_kmod
                assert f"\nsig_hashalgo:   {hash_name}\n".encode() in by_kmod.stdout
                compared += 1
            signer = lkm("modinfo", ["-F", "signer", str(ours)]).stdout
            expected_cn = {"rsa2048-ca": b"lkm test CA\n", "rsa4096-der": b"big key\n"}
            assert signer == expected_cn.get(key.name, b"lkm module signing key\n")
    report(f"lkm modinfo vs kmod modinfo on signed modules: {compared} outputs")


def test_keygen_certificate(tmp_path: Path, sign_files: list[Path], module: Path) -> None:
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key, cert = tmp_path / "k.pem", tmp_path / "c.der"
    made = lkm("keygen", ["--key", str(key), "--cert", str(cert), "--cn", "Mine", "--der",
                          "--days", "10"])  # fmt: skip
    assert made.status == 0 and made.stderr == b""
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    certificate = x509.load_der_x509_certificate(cert.read_bytes())
    extensions = certificate.extensions
    basic = extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and not basic.value.ca
    usage = extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    assert list(extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CODE_SIGNING
    ]
    ski = extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    aki = extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski
    assert certificate.subject == certificate.issuer
    assert certificate.subject.rfc4514_string() == "CN=Mine"
    assert certificate.public_key().key_size == 2048  # type: ignore[union-attr]
    assert (certificate.not_valid_after_utc - certificate.not_valid_before_utc).days == 10
    text = command(["openssl", "x509", "-inform", "DER", "-in", str(cert), "-noout",
                           "-text"], check=True, text=True).stdout  # fmt: skip
    for line in ("CA:FALSE", "Digital Signature", "Code Signing", "X509v3 Subject Key Identifier",
                 "X509v3 Authority Key Identifier"):  # fmt: skip
        assert line in text
    # sign-file takes the pair; the bytes are lkm sign's.
    for options in ([], ["-k"]):
        expected = _sign_file(
            sign_files[0], [*options, "sha512"], Key("k", key, cert), module, tmp_path / "a.ko"
        )
        keyid = ["--keyid"] if options else []
        made = sign(
            module, Key("k", key, cert), "-o", str(tmp_path / "b.ko"), "--hash", "sha512", *keyid
        )
        assert made.status == 0
        assert (tmp_path / "b.ko").read_bytes() == expected


def test_keygen_defaults_and_refusals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert lkm("keygen", []).status == 0
    key, cert = tmp_path / "signing_key.pem", tmp_path / "signing_key.x509"
    before = key.read_bytes(), cert.read_bytes()
    assert cert.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    refused = lkm("keygen", [])
    assert refused.status == 1
    assert refused.stderr == b"lkm keygen: signing_key.pem: already exists (--force replaces it)\n"
    refused = lkm("keygen", ["--key", "other.pem"])
    assert refused.stderr == b"lkm keygen: signing_key.x509: already exists (--force replaces it)\n"
    assert not (tmp_path / "other.pem").exists()
    assert (key.read_bytes(), cert.read_bytes()) == before
    same = lkm("keygen", ["--key", "x", "--cert", "./x"])
    assert same.status == 1 and same.stderr.count(b"\n") == 1 and not (tmp_path / "x").exists()
    missing_dir = lkm("keygen", ["--key", "new.pem", "--cert", "no/such/dir/c.pem"])
    assert missing_dir.stderr == b"lkm keygen: no/such/dir/c.pem: no directory no/such/dir\n"
    assert not (tmp_path / "new.pem").exists()
    assert lkm("keygen", ["--force"]).status == 0
    assert key.read_bytes() != before[0] and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["signing_key.pem", "signing_key.x509"]


# -- bad input: one line, status 1, nothing written ---------------------------


@pytest.fixture
def bad_inputs(tmp_path: Path, module: Path, keys: list[Key]) -> Iterator[dict[str, Path]]:
    paths = {"module": tmp_path / "m.ko", "dest": tmp_path / "out" / "signed.ko"}
    shutil.copy(module, paths["module"])
    (tmp_path / "out").mkdir()
    paths["text"] = tmp_path / "notes.txt"
    paths["text"].write_text("not a module\n")
    paths["program"] = tmp_path / "true"
    shutil.copy("/bin/true", paths["program"])
    paths["xz"] = tmp_path / "m.ko.xz"
    paths["xz"].write_bytes(command(["xz", "-k", "-c", str(module)], check=True).stdout)
    paths["public"] = tmp_path / "public.pem"
    _openssl("pkey", "-in", str(keys[0].key), "-pubout", "-out", str(paths["public"]))
    paths["encrypted"] = tmp_path / "encrypted.pem"
    _openssl("pkey", "-in", str(keys[0].key), "-aes256", "-passout", "pass:secret",
             "-out", str(paths["encrypted"]))  # fmt: skip
    paths["corrupt"] = tmp_path / "corrupt.pem"
    pem = keys[0].key.read_text().splitlines()
    paths["corrupt"].write_text("\n".join([pem[0], pem[1][::-1], *pem[2:]]) + "\n")
    paths["garbage"] = tmp_path / "garbage.pem"
    paths["garbage"].write_bytes(b"\x30\x82garbage")
    paths["noski"] = tmp_path / "noski.pem"
    paths["noski_key"] = tmp_path / "noski.key"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=n",
             "-addext", "subjectKeyIdentifier=none", "-keyout", str(paths["noski_key"]),
             "-out", str(paths["noski"]))  # fmt: skip
    paths["key"], paths["cert"] = keys[0].key, keys[0].cert
    paths["other_cert"] = keys[1].cert
    paths["dir"] = tmp_path
    yield paths


BAD = {
    # case: (module, key, cert, extra args, environment, expected message)
    "missing key": ("module", "nokey", "cert", [], {}, "{nokey}: No such file or directory"),
    "key is a directory": ("module", "dir", "cert", [], {}, "{dir}: Is a directory"),
    "certificate as key": ("module", "cert", "cert", [], {},
        "{cert}: no PEM private key in the file"),
    "public key as key": ("module", "public", "cert", [], {},
        "{public}: no PEM private key in the file"),
    "encrypted key, no pin": ("module", "encrypted", "cert", [], {},
        "{encrypted}: the key is encrypted: put its passphrase in $KBUILD_SIGN_PIN"),
    "encrypted key, wrong pin": ("module", "encrypted", "cert", [], {"KBUILD_SIGN_PIN": "nope"},
        "{encrypted}: cannot decrypt the key with $KBUILD_SIGN_PIN"),
    "corrupt key": ("module", "corrupt", "cert", [], {}, "{corrupt}: cannot read the private key"),
    "other certificate": ("module", "key", "other_cert", [], {},
        "{other_cert}: the certificate is not for the key in {key}"),
    "garbage certificate": ("module", "key", "garbage", [], {},
        "{garbage}: no DER X.509 certificate in the file"),
    "missing certificate": ("module", "key", "nocert", [], {},
        "{nocert}: No such file or directory"),
    "text file": ("text", "key", "cert", [], {}, "{text}: not an ELF file (bad magic)"),
    "program": ("program", "key", "cert", [], {},
        "{program}: not a kernel module (no .gnu.linkonce.this_module section)"),
    "compressed": ("xz", "key", "cert", [], {},
        "{xz}: xz-compressed module: sign the .ko, then compress it (as kbuild does: "
        "the kernel checks the signature of the decompressed module)"),
    "missing module": ("nomodule", "key", "cert", [], {}, "{nomodule}: No such file or directory"),
    "unknown hash": ("module", "key", "cert", ["--hash", "md5"], {},
        "hash algorithm 'md5' is not one the kernel signs modules with (sha1, sha224, sha256, "
        "sha384, sha512, sha3-224, sha3-256, sha3-384, sha3-512)"),
    "keyid without ski": ("module", "noski_key", "noski", ["--keyid"], {},
        "{noski}: the certificate has no subjectKeyIdentifier, which --keyid names the signer by"),
    "output in a missing directory": ("module", "key", "cert", ["-o", "{dir}/nodir/x.ko"], {},
        "{dir}/nodir/x.ko: No such file or directory"),
    "output is a directory": ("module", "key", "cert", ["-o", "{dir}/out"], {},
        "{dir}/out: Is a directory"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_and_writes_nothing(
    case: str, bad_inputs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module_name, key, cert, extra, env, message = BAD[case]
    names = {name: str(path) for name, path in bad_inputs.items()}
    names |= {f"no{n}": str(tmp_path / f"absent-{n}") for n in ("key", "cert", "module")}
    monkeypatch.delenv("KBUILD_SIGN_PIN", raising=False)
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    extra = [arg.format(**names) for arg in extra]
    if "-o" not in extra:
        extra += ["-o", names["dest"]]
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    result = lkm("sign", [names[module_name], "--key", names[key], "--cert", names[cert], *extra])
    assert result.status == 1
    assert result.stdout == b""
    assert result.stderr.decode() == f"lkm sign: {message.format(**names)}\n"
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # nothing written, no temporary left behind


def test_output_leaves_the_input_alone_and_in_place_keeps_the_mode(
    module: Path, keys: list[Key], tmp_path: Path
) -> None:
    source = tmp_path / "m.ko"
    shutil.copy(module, source)
    source.chmod(0o640)
    assert sign(source, keys[2], "-o", str(tmp_path / "o.ko")).status == 0
    assert source.read_bytes() == module.read_bytes()
    assert sign(source, keys[2]).status == 0
    assert source.read_bytes() == (tmp_path / "o.ko").read_bytes()
    assert stat.S_IMODE(source.stat().st_mode) == 0o640
    assert sorted(os.listdir(tmp_path)) == ["m.ko", "o.ko"]


def test_usage_errors(module: Path, keys: list[Key]) -> None:
    two = lkm("sign", [str(module), str(module), "-o", "x", "--key", "k", "--cert", "c"])
    assert (two.status, two.stderr) == (2, b"lkm sign: --output takes one MODULE\n")
    missing = command([str(Path(sys.executable).with_name("lkm")), "sign", str(module)])
    assert missing.returncode == 2 and b"--key" in missing.stderr


# -- fuzz: any bytes as a module give a signature or one line -------------------


@settings(
    max_examples=int(os.environ.get("LKM_FUZZ_EXAMPLES", "2200")) // 10,
    deadline=timedelta(seconds=10),
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_module_bytes(
    data: st.DataObject, module: Path, keys: list[Key], tmp_path_factory: pytest.TempPathFactory
) -> None:
    seed = module.read_bytes()
    kind = data.draw(st.sampled_from(["random", "truncated", "patched"]))
    if kind == "random":
        raw = data.draw(st.binary(max_size=256))
    elif kind == "truncated":
        raw = seed[: data.draw(st.integers(0, len(seed)))]
    else:
        buf = bytearray(seed)
        for _ in range(data.draw(st.integers(1, 6))):
            at = data.draw(
                st.integers(0, min(len(buf) - 1, data.draw(st.sampled_from([64, 4096, len(buf)]))))
            )
            chunk = data.draw(st.binary(min_size=1, max_size=8))
            buf[at : at + len(chunk)] = chunk
        raw = bytes(buf)
    path = tmp_path_factory.mktemp("fuzz") / "f.ko"
    path.write_bytes(raw)
    result = sign(path, keys[0])
    assert result.status in (0, 1)
    if result.status == 1:
        assert result.stderr.startswith(f"lkm sign: {path}: ".encode())
        assert result.stderr.count(b"\n") == 1
        assert path.read_bytes() == raw
    else:
        signature = read_signature(path.read_bytes())
        assert signature is not None and signature.module_size == len(raw)


def test_cryptography_is_imported_only_to_sign(signed_module: Path) -> None:
    code = (
        "import io, sys; from lkm.cli import main; "
        f"main(['lkm', 'modinfo', {str(signed_module)!r}], io.BytesIO(), io.BytesIO()); "
        "import lkm.cli.sign, lkm.workflows.sign, lkm.workflows.keygen; "
        "print(' '.join(sorted(sys.modules)))"
    )
    loaded = command([sys.executable, "-c", code], text=True, check=True).stdout.split()
    assert "lkm.workflows.sign" in loaded
    assert not [name for name in loaded if name.startswith("cryptography")]
