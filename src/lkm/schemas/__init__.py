"""JSON Schemas (draft 2020-12) of lkm's ``--json`` outputs, one file per
command: ``COMMAND.schema.json``. Each describes the array a command prints
(or, for a stream, one line's object); :mod:`lkm.cli.json_output` says the
rules they share."""

from __future__ import annotations

import json
import os

HERE = os.path.dirname(__file__)


def schema_path(command: str) -> str:
    """The schema file of ``command`` (``modinfo``, ``kernel-list``, …)."""
    return os.path.join(HERE, f"{command}.schema.json")


def schema_names() -> list[str]:
    """Every command that has a schema."""
    suffix = ".schema.json"
    return sorted(name[: -len(suffix)] for name in os.listdir(HERE) if name.endswith(suffix))


def load_schema(command: str) -> dict[str, object]:
    with open(schema_path(command), encoding="utf-8") as file:
        schema: dict[str, object] = json.load(file)
    return schema
