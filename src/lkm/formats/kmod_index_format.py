"""kmod's binary index format, as constants (read in
:mod:`lkm.formats.kmod_index`, written in :mod:`lkm.formats.kmod_index_writer`).

Kept apart so that writing an index does not import the reader.
"""

INDEX_MAGIC = 0xB007F457
INDEX_VERSION_MAJOR = 0x0002
INDEX_VERSION = 0x00020001

# The high nibble of a node offset: which parts the node has.
NODE_PREFIX = 0x80000000
NODE_VALUES = 0x40000000
NODE_CHILDS = 0x20000000
NODE_FLAGS = 0xF0000000
NODE_MASK = 0x0FFFFFFF

__all__ = [
    "INDEX_MAGIC",
    "INDEX_VERSION",
    "INDEX_VERSION_MAJOR",
    "NODE_CHILDS",
    "NODE_FLAGS",
    "NODE_MASK",
    "NODE_PREFIX",
    "NODE_VALUES",
]
