"""``lkm depmod --json``: the database a run made, one record per module.

Read back from the text files the run rendered (modules.dep, .alias,
.softdep, .weakdep, .symbols, .devname), so the records say exactly what
the indexes say; built-in modules, which have no file, are not among
them.
"""

from __future__ import annotations

from lkm.formats.module_names import module_name_from_path

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping


def _lines(files: Mapping[str, bytes | memoryview | None], name: str) -> Iterator[list[str]]:
    """The words of each line of one text file (comments left out)."""
    data = files.get(name)
    if data is None:
        return
    for line in bytes(data).decode("utf-8", "surrogateescape").splitlines():
        if line and not line.startswith("#"):
            yield line.split()


def database_records(files: Mapping[str, bytes | memoryview | None]) -> list[dict[str, object]]:
    """One record per line of modules.dep, in its order
    (lkm/schemas/depmod.schema.json)."""
    records: dict[str, dict[str, object]] = {}
    for words in _lines(files, "modules.dep"):
        path = words[0].removesuffix(":")
        name = module_name_from_path(path)
        records[name] = {
            "module": name,
            "path": path,
            "depends": [module_name_from_path(d) for d in words[1:]],
            "aliases": [],
            "exports": [],
            "softdeps": {"pre": [], "post": []},
            "weakdeps": [],
            "devname": None,
        }

    def add(name: str, key: str, value: object) -> None:
        record = records.get(name)
        if record is not None:
            target = record[key]
            assert isinstance(target, list)
            target.append(value)

    for words in _lines(files, "modules.alias"):
        add(words[2], "aliases", words[1])
    for words in _lines(files, "modules.symbols"):
        add(words[2], "exports", words[1].removeprefix("symbol:"))
    for words in _lines(files, "modules.weakdep"):
        add(words[1], "weakdeps", words[2])
    for words in _lines(files, "modules.softdep"):
        _add_softdeps(records.get(words[1]), words[2:])
    for name, node, kind in _lines(files, "modules.devname"):
        major, _, minor = kind[1:].partition(":")
        if name in records:
            records[name]["devname"] = {
                "node": node,
                "type": kind[0],
                "major": int(major),
                "minor": int(minor),
            }
    return list(records.values())


def _add_softdeps(record: dict[str, object] | None, words: list[str]) -> None:
    """``pre: a b post: c`` into the record's softdeps."""
    if record is None:
        return
    softdeps = record["softdeps"]
    assert isinstance(softdeps, dict)
    where: list[str] | None = None
    for word in words:
        if word in ("pre:", "post:"):
            where = softdeps[word[:-1]]
        elif where is not None:
            where.append(word)
