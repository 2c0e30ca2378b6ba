"""The order a written kmod index's nodes come in (a module of its own:
depmod's options name it without loading the index writer, and the
index reader, which modprobe starts with, never needs it or enum)."""

import enum


class Layout(enum.Enum):
    PRE_ORDER = "pre-order"  # kmod >= 34
    POST_ORDER = "post-order"  # kmod <= 33
