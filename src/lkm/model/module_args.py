"""What the kernel does with the parameters a module is loaded with.

``load_module`` ends with ``parse_args(mod->name, args, mod->kp, …,
unknown_module_param_cb)`` (kernel/params.c): each ``name[=value]`` word is
matched against the module's parameter table (``-`` and ``_`` alike) and
handed to its ops' ``set``; an unknown name is ignored with a warning; a
value the ops refuse fails the load. This module repeats those rules for
the kernel's own ops (``param_ops_int`` … ``param_array_ops``), from their
``kstrto*`` parsers; a module's own ops decide for themselves, which is
said, not guessed.
"""

from __future__ import annotations

from lkm.records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from lkm.formats.module_params import ModuleParam

# ops symbol -> (lowest, highest) accepted by its kstrto* parser.
INTEGER_OPS = {
    "param_ops_byte": (0, 2**8 - 1),
    "param_ops_short": (-(2**15), 2**15 - 1),
    "param_ops_ushort": (0, 2**16 - 1),
    "param_ops_int": (-(2**31), 2**31 - 1),
    "param_ops_uint": (0, 2**32 - 1),
    "param_ops_hexint": (0, 2**32 - 1),
    "param_ops_long": (-(2**63), 2**63 - 1),
    "param_ops_ulong": (0, 2**64 - 1),
    "param_ops_ullong": (0, 2**64 - 1),
}
BOOL_OPS = ("param_ops_bool", "param_ops_invbool", "param_ops_bint", "param_ops_bool_enable_only")
# Ops that take a bare name (KERNEL_PARAM_OPS_FL_NOARG): all but invbool.
NO_ARGUMENT_OPS = ("param_ops_bool", "param_ops_bint", "param_ops_bool_enable_only")
CHARP_LIMIT = 1024  # param_set_charp


class ArgProblem(Record):
    """Why the kernel refuses one parameter: the lines it logs, its errno."""

    lines: tuple[str, ...]
    errno: str


class ArgOutcome(Record):
    """What one ``name[=value]`` word does to the load."""

    name: str
    value: str | None  # None: the bare name
    param: ModuleParam | None  # None: the module has no such parameter
    problem: ArgProblem | None = None
    unchecked: bool = False  # the module's own ops decide

    @property
    def word(self) -> str:
        return self.name if self.value is None else f"{self.name}={self.value}"


class SplitArgs(Record):
    """A load's parameter string as parse_args sees it."""

    words: tuple[tuple[str, str | None], ...]  # (name, value or None)
    after_dashes: str | None = None  # what follows a bare ``--`` (ignored)


def split_args(args: str) -> SplitArgs:
    """The words as the kernel's next_arg() takes them one by one: split at
    spaces outside double quotes; a word that starts with a quote loses it
    and its closing one, a value that starts with a quote too; a bare
    ``--`` ends the parameters (the rest is ignored, with a warning)."""
    words: list[tuple[str, str | None]] = []
    rest = args.lstrip()
    while rest:
        name, value, rest = _next_arg(rest)
        if value is None and name == "--":
            return SplitArgs(tuple(words), rest)
        words.append((name, value))
    return SplitArgs(tuple(words))


def _next_arg(args: str) -> tuple[str, str | None, str]:
    """(name, value, the rest) of the first word, as next_arg()."""
    quoted = args.startswith('"')
    if quoted:
        args = args[1:]
    in_quote, equals, i = quoted, -1, 0
    while i < len(args) and (in_quote or not args[i].isspace()):
        if equals < 0 and args[i] == "=" and i > 0:
            equals = i
        if args[i] == '"':
            in_quote = not in_quote
        i += 1
    word, rest = args[:i], args[i + 1 :].lstrip()
    if quoted:
        word = word.removesuffix('"')
    if equals < 0:
        return word, None, rest
    name, value = word[:equals], word[equals + 1 :]
    if value.startswith('"'):
        value = value[1:].removesuffix('"')
    return name, value, rest


def _same_name(a: str, b: str) -> bool:
    return a.replace("-", "_") == b.replace("-", "_")


def outcomes(
    module: str, args: str, table: list[ModuleParam], element_types: dict[str, str]
) -> list[ArgOutcome]:
    """Each word of ``args`` against the module's parameter ``table``;
    ``element_types``: an array's element type by parameter name (from
    ``parmtype=…:array of TYPE``)."""
    results = []
    for name, value in split_args(args).words:
        param = next((p for p in table if _same_name(name, p.name)), None)
        if param is None:
            results.append(ArgOutcome(name, value, None))
            continue
        ops = param.ops
        if ops == "param_array_ops":
            element = "param_ops_" + element_types.get(param.name, "")
            problem = _array_problem(module, name, value, param, element)
        else:
            problem = _value_problem(module, name, value, param, ops)
        known = ops in INTEGER_OPS or ops in BOOL_OPS or ops in ("param_ops_charp",)
        known = known or ops in ("param_ops_string", "param_array_ops")
        results.append(ArgOutcome(name, value, param, problem, unchecked=not known))
    return results


def ignored_name(name: str) -> str | None:
    """The name the kernel's warning prints for an unknown parameter, or
    None when it takes the word silently (``async_probe``, ``dyndbg``)."""
    if name == "async_probe":
        return None
    # ddebug_dyndbg_module_param_cb cuts the word at its first '.', in place,
    # before the caller prints it.
    head, dot, tail = name.partition(".")
    if (tail if dot else head) == "dyndbg":
        return None
    return head


def _invalid(module: str, name: str, value: str | None, errno: str = "EINVAL") -> ArgProblem:
    return ArgProblem((_parse_args_line(module, name, value, errno),), errno)


def _parse_args_line(module: str, name: str, value: str | None, errno: str) -> str:
    """What parse_args logs when a parameter's set() fails with ``errno``."""
    if errno == "ENOSPC":
        return f"{module}: `{value or ''}' too large for parameter `{name}'"
    return f"{module}: `{value or ''}' invalid for parameter `{name}'"


def _value_problem(
    module: str, name: str, value: str | None, param: ModuleParam, ops: str
) -> ArgProblem | None:
    if value is None:
        return None if ops in NO_ARGUMENT_OPS or not ops else _invalid(module, name, value)
    if ops in INTEGER_OPS:
        errno = integer_errno(value, *INTEGER_OPS[ops])
        return _invalid(module, name, value, errno) if errno else None
    if ops in BOOL_OPS:
        return None if bool_value(value) is not None else _invalid(module, name, value)
    if ops == "param_ops_charp" and _strlen(value) > CHARP_LIMIT:
        return ArgProblem(
            (
                f"{param.name}: string parameter too long",
                _parse_args_line(module, name, value, "ENOSPC"),
            ),
            "ENOSPC",
        )
    if ops == "param_ops_string" and param.limit and _strlen(value) + 1 > param.limit:
        return ArgProblem(
            (
                f"{param.name}: string doesn't fit in {param.limit - 1} chars.",
                _parse_args_line(module, name, value, "ENOSPC"),
            ),
            "ENOSPC",
        )
    return None


def _strlen(value: str) -> int:
    """The kernel's strlen: bytes, not characters (the command line is
    UTF-8 or whatever bytes it was given)."""
    return len(value.encode("utf-8", "surrogateescape"))


def _array_problem(
    module: str, name: str, value: str | None, param: ModuleParam, element: str
) -> ArgProblem | None:
    if value is None:
        return _invalid(module, name, value)
    items = value.split(",")
    # param_array NUL-terminates each element in place: parse_args then
    # prints the first element as the value.
    shown = items[0]
    for count, item in enumerate(items):
        if param.limit and count == param.limit:
            return ArgProblem(
                (
                    f"{param.name}: can only take {param.limit} arguments",
                    _invalid(module, name, shown).lines[0],
                ),
                "EINVAL",
            )
        found = _value_problem(module, name, item, param, element)
        if found is not None:
            *own, _ = found.lines
            last = _parse_args_line(module, name, shown, found.errno)
            return ArgProblem((*own, last), found.errno)
    return None


def bool_value(text: str) -> bool | None:
    """kstrtobool: y/Y/t/T/1, n/N/f/F/0 (true/false since 5.19), on/off
    by their first two letters."""
    first, second = text[:1], text[1:2]
    if first in ("y", "Y", "t", "T", "1"):
        return True
    if first in ("n", "N", "f", "F", "0"):
        return False
    if first in ("o", "O") and second in ("n", "N", "f", "F"):
        return second in ("n", "N")
    return None


def integer_errno(text: str, lowest: int, highest: int) -> str:
    """Empty when kstrto*(text, 0) takes it in [lowest, highest], else the
    errno it returns (EINVAL not a number, ERANGE out of range)."""
    negative = False
    if text.startswith("-") and lowest < 0:
        negative, text = True, text[1:]
    elif text.startswith("+"):
        text = text[1:]
    number = _parse_unsigned(text)
    if number is None:
        return "EINVAL"
    if number >= 2**64:
        return "ERANGE"
    value = -number if negative else number
    return "" if lowest <= value <= highest else "ERANGE"


def _parse_unsigned(text: str) -> int | None:
    """_kstrtoull with base 0: 0x → hex (a hex digit must follow), a
    leading 0 → octal, else decimal; one trailing newline allowed."""
    text = text.removesuffix("\n")
    base = 10
    if text[:2].lower() == "0x" and text[2:3] and text[2] in "0123456789abcdefABCDEF":
        base, text = 16, text[2:]
    elif text.startswith("0"):
        base = 8
    digits = "0123456789abcdef"[:base]
    if not text or any(c.lower() not in digits for c in text):
        return None
    return int(text, base)


__all__ = ["ArgOutcome", "ArgProblem", "SplitArgs", "ignored_name", "outcomes", "split_args"]
