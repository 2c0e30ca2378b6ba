"""lkm's one JSON shape, for every command that takes ``--json``.

* A command that ends prints one JSON array, one object per record (a
  module, a loaded module, a log record, a step of a plan, a kernel, a
  verdict…), ``[]`` when there is none; indented, then a line break.
* A command that runs until it is stopped (``lkm autoload``, ``lkm dmesg
  --follow``) prints the same objects one per line (JSON Lines), each as
  it happens: an array would never be closed.
* Keys are snake_case and always present (``null`` when not known);
  numbers are numbers, lists are arrays. A module's name is ``module``, a
  file's path ``path``, a kernel release ``kernel``.

Each command's records are described by a JSON Schema in
:mod:`lkm.schemas` (``lkm/schemas/COMMAND.schema.json``).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import BinaryIO, Protocol

    class Writable(Protocol):
        def write(self, data: bytes, /) -> object: ...


def write_array(out: Writable, records: Iterable[dict[str, object]]) -> None:
    """The records as one JSON array."""
    import json

    text = json.dumps(list(records), indent=2) + "\n"
    # A path that is not UTF-8 reaches JSON as surrogate escapes (\udcXX),
    # which json.dumps writes as escapes too: the output stays ASCII.
    out.write(text.encode("utf-8", "surrogateescape"))


def write_line(out: BinaryIO, record: dict[str, object]) -> None:
    """One record of a stream, on its own line, flushed at once."""
    import json

    out.write((json.dumps(record) + "\n").encode("utf-8", "surrogateescape"))
    out.flush()
