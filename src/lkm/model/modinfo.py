"""A module's information list as kmod builds it (kmod_module_get_info).

``.modinfo`` key/value pairs in file order, then — for a signed module —
``sig_id``, ``signer``, ``sig_key``, ``sig_hashalgo`` and ``signature``,
the last two binary fields shown as colon-separated hex folded every 20
bytes. Also the merging of ``parm``/``parmtype`` entries modinfo prints.
"""

from __future__ import annotations

from functools import lru_cache
from operator import itemgetter

from lkm.formats.module_file import ModuleImage, modinfo_pairs
from lkm.records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from collections.abc import Callable

# kmod folds hex dumps after this many bytes, continuing on a new line
# indented by two tabs (kmod_module_hex_to_str).
HEX_BYTES_PER_LINE = 20


def hex_fold(raw: bytes) -> str:
    """``01:AB:…`` with ``\\n\\t\\t`` after every 20th byte but the last."""
    text = raw.hex(":").upper()
    if len(raw) <= HEX_BYTES_PER_LINE:
        return text
    return "\n\t\t".join(_lines_of(len(text))(text))


@lru_cache(maxsize=8)
def _lines_of(length: int) -> Callable[[str], tuple[str, ...]]:
    """Cuts a hex dump ``length`` characters long (two lines or more)
    into its lines, in one C call. A kernel's signatures all have one
    length: made once, not per module."""
    width = HEX_BYTES_PER_LINE * 3
    return itemgetter(*(slice(i, i + width) for i in range(0, length, width)))


def info_entries(module: ModuleImage) -> list[tuple[str, str]] | None:
    """kmod's info list for a module file; None when it has no ``.modinfo``."""
    parts = info_parts(module)
    if parts is None:
        return None
    text, signature = parts
    return modinfo_pairs(text) + signature


def info_parts(module: ModuleImage) -> tuple[str, list[tuple[str, str]]] | None:
    """kmod's info list in two parts: ``.modinfo`` as one string of
    NUL-separated ``key=value`` entries (see
    :func:`~lkm.formats.module_file.modinfo_text`), and the signature's
    entries. For a printer that turns the string straight into lines,
    without a pair per entry. None when the module has no ``.modinfo``."""
    text = module.find_modinfo_text()
    if text is None:
        return None
    signature = module.signature
    if signature is None:
        return text, []
    fields = signature.kmod_fields()
    if not fields:
        return text, []
    # sig_id, signer, sig_key, sig_hashalgo, then the signature: only the
    # last differs between modules signed by one key.
    *key, (name, value) = fields
    return text, [*_key_entries(tuple(key)), (name, _text(value))]


def _text(value: bytes | str) -> str:
    return hex_fold(value) if isinstance(value, bytes) else value


@lru_cache(maxsize=16)
def _key_entries(fields: tuple[tuple[str, bytes | str], ...]) -> list[tuple[str, str]]:
    """The signing key's entries as text, made once per key (a kernel's
    modules share one; its serial needs hex folding)."""
    return [(key, _text(value)) for key, value in fields]


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
