"""A module's information list as kmod builds it (kmod_module_get_info).

``.modinfo`` key/value pairs in file order, then — for a signed module —
``sig_id``, ``signer``, ``sig_key``, ``sig_hashalgo`` and ``signature``,
the last two binary fields shown as colon-separated hex folded every 20
bytes. Also the merging of ``parm``/``parmtype`` entries modinfo prints.
"""

from __future__ import annotations

from lkm.formats.module_file import ModuleImage
from lkm.records import Record

# kmod folds hex dumps after this many bytes, continuing on a new line
# indented by two tabs (kmod_module_hex_to_str).
HEX_BYTES_PER_LINE = 20


def hex_fold(raw: bytes) -> str:
    """``01:AB:…`` with ``\\n\\t\\t`` after every 20th byte but the last."""
    text = raw.hex(":").upper()
    if len(raw) <= HEX_BYTES_PER_LINE:
        return text
    width = HEX_BYTES_PER_LINE * 3
    lines = [text[i : i + width] for i in range(0, len(text), width)]
    return "\n\t\t".join(lines)


def info_entries(module: ModuleImage) -> list[tuple[str, str]] | None:
    """kmod's info list for a module file; None when it has no ``.modinfo``."""
    entries = module.modinfo()
    if entries is None:
        return None
    signature = module.signature
    if signature is not None:
        for key, value in signature.kmod_fields():
            entries.append((key, hex_fold(value) if isinstance(value, bytes) else value))
    return entries


class Parameter(Record, frozen=False):
    """A module parameter merged from its ``parm`` and ``parmtype`` entries."""

    name: str
    description: str | None = None
    type: str | None = None


def merge_parameters(entries: list[tuple[str, str]]) -> tuple[list[Parameter], list[str]]:
    """Parameters in order of first mention, and kmod's warnings.

    A later ``parm`` (or ``parmtype``) for the same name replaces the
    earlier text. An entry without ':' is reported and skipped.
    """
    params: dict[str, Parameter] = {}
    warnings: list[str] = []
    for key, value in entries:
        if key not in ("parm", "parmtype"):
            continue
        name, colon, text = value.partition(":")
        if not colon:
            warnings.append(f"Found invalid \"{key}={value}\": missing ':'")
            continue
        param = params.setdefault(name, Parameter(name))
        if key == "parm":
            param.description = text
        else:
            param.type = text
    return list(params.values()), warnings
