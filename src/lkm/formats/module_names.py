"""Module file names: which files are modules, and the name each one gives.

Kept apart from :mod:`lkm.formats.module_file` so that walking a module
tree does not import the ELF and compression readers.
"""

from __future__ import annotations

MODULE_EXTENSIONS = (".ko", ".ko.gz", ".ko.xz", ".ko.zst")


def module_name_from_path(path: str) -> str:
    """Module name of a file: basename up to the first '.', '-' → '_'."""
    base = path.rsplit("/", 1)[-1]
    return base.split(".", 1)[0].replace("-", "_")


def has_module_extension(path: str) -> bool:
    """True for names ending in a module extension after a non-empty stem."""
    if path.endswith(".ko"):  # the common case first: most trees are uncompressed
        return len(path) > 3
    return any(path.endswith(ext) and len(path) > len(ext) for ext in MODULE_EXTENSIONS[1:])
