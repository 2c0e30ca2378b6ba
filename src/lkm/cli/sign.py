"""``lkm sign MODULE… --key KEY --cert CERT [--hash sha256] [--output DEST]
[--keyid]``: append a module signature, byte for byte what the kernel's
``scripts/sign-file [-k] HASH KEY CERT MODULE [DEST]`` writes. Modules are
signed in place unless ``--output`` names where the signed copy goes."""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from typing import BinaryIO


def run(args: list[str], out: BinaryIO, err: BinaryIO, argv0: str = "sign") -> int:
    from lkm.cli.options import argument_parser, parse_arguments
    from lkm.formats.signature_writer import SIGNING_HASHES
    from lkm.workflows.sign import DEFAULT_HASH, SignError, load_signer, sign_file

    parser = argument_parser("lkm sign", __doc__, out, err)
    parser.add_argument("modules", nargs="+", metavar="MODULE", help="uncompressed .ko files")
    parser.add_argument(
        "--key", required=True, help="PEM private key (encrypted: passphrase in $KBUILD_SIGN_PIN)"
    )
    parser.add_argument("--cert", required=True, help="its X.509 certificate, PEM or DER")
    parser.add_argument(
        "--hash",
        default=DEFAULT_HASH,
        help=f"digest: {', '.join(SIGNING_HASHES)} (default {DEFAULT_HASH})",
    )
    parser.add_argument("--output", "-o", help="write the signed module here (one MODULE only)")
    parser.add_argument(
        "--keyid",
        action="store_true",
        help="name the signer by the certificate's subjectKeyIdentifier (sign-file -k)",
    )
    options = parse_arguments(parser, args)
    if isinstance(options, int):
        return options
    if options.output is not None and len(options.modules) > 1:
        err.write(b"lkm sign: --output takes one MODULE\n")
        return 2
    try:
        signer = load_signer(options.key, options.cert)
        for module in options.modules:
            sign_file(module, signer, options.hash, options.output, key_id=options.keyid)
    except SignError as exc:
        err.write(f"lkm sign: {exc}\n".encode("utf-8", "surrogateescape"))
        return 1
    return 0
