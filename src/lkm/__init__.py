"""lkm: the Linux loadable-kernel-module toolkit.

Layers (see DESIGN.md): ``lkm.formats`` (pure parsers), ``lkm.model``
(module directories and what they answer), ``lkm.cli`` (kmod-compatible
commands). Importing ``lkm`` imports nothing else.
"""

__version__ = "0.1.0"
