"""``lkm completion bash|zsh|fish``: shell completion for every lkm command
and the kmod-named links, made from the option tables the commands parse
with (getopt tables, argparse parsers), so the two cannot drift.

The scripts complete options, then the words each command takes: module
names from the kernel's ``modules.dep`` (``-S``/``-k``/``--kernel`` and
``-d``/``-b`` honoured), loaded modules, module files, kernel releases and
series, DKMS package/version pairs. Those values come from ``lkm
completion --candidates KIND [--root DIR] [--kernel VERSION]``, one per
line: the scripts ask lkm rather than each reimplementing where trees are.
Installed system-wide, the package puts them where each shell looks
(``share/bash-completion/completions``, ``share/zsh/vendor-completions``,
``share/fish/vendor_completions.d``).
"""

from __future__ import annotations

import os

from lkm.records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterable
    from typing import BinaryIO

USAGE = (
    "usage: lkm completion bash|zsh|fish\n"
    "       lkm completion --candidates modules|loaded|kernels|dkms "
    "[--root DIR] [--kernel VERSION]\n"
    "       lkm completion -h|--help|--version\n"
)
SHORTOPTS = "h"
LONGOPTS = ("candidates=", "root=", "kernel=", "help", "version")
SHELLS = ("bash", "zsh", "fish")

# What a command's operands are: module names, loaded modules, module
# files, directories, kernels, DKMS pairs, files (anything else: nothing).
OPERANDS = {
    "modprobe": "modules",
    "modinfo": "modules",
    "rmmod": "loaded",
    "insmod": "modfiles",
    "check": "modfiles",
    "sign": "modfiles",
    "install": "modfiles",
    "uninstall": "loaded",
    "depmod": "kernels",
    "static-nodes": "",
    "build": "dirs",
    "try": "dirs",
    "new": "dirs",
    "ksyms": "",
    "dkms": "dkms",
    "completion": "shells",
    "kernel/fetch": "kernels",
    "kernel/rm": "kernels",
}
# What an option's value is, by option (the rest take a file name).
VALUES = {
    "--kernel": "kernels",
    "-k": "kernels",
    "-S": "kernels",
    "--set-version": "kernels",
    "--kernelver": "kernels",
    "--module": "loaded",
    "-m": "loaded",
    "-b": "dirs",
    "--basedir": "dirs",
    "-d": "dirs",
    "--dirname": "dirs",
    "-o": "dirs",
    "--outdir": "dirs",
    "--moduledir": "dirs",
    "--dkmstree": "dirs",
    "--sourcetree": "dirs",
    "--installtree": "dirs",
    "--kernelsourcedir": "dirs",
    "--root": "dirs",
    "--candidates": "kinds",
}


class Spec(Record):
    """What one command (or subcommand) takes on its command line."""

    options: tuple[str, ...]  # every option string: "-a", "--all", …
    valued: tuple[str, ...]  # the options that take a value
    words: tuple[str, ...] = ()  # fixed words it takes (subcommands, actions)
    subcommands: tuple[tuple[str, Spec], ...] = ()


def run(args: list[str], out: BinaryIO, err: BinaryIO, argv0: str = "completion") -> int:
    from lkm.cli.options import UsageError, own_version_text, parse, usage_line

    try:
        opts, operands = parse(argv0, args, SHORTOPTS, LONGOPTS)
    except UsageError as exc:
        err.write(usage_line(str(exc)))
        return 2
    given = dict(opts)
    if "-h" in given or "--help" in given:
        out.write((USAGE + (__doc__ or "")).encode())
        return 0
    if "--version" in given:
        out.write(own_version_text().encode())
        return 0
    if "--candidates" in given:
        found = candidates(given["--candidates"], given.get("--root", ""), given.get("--kernel"))
        out.write("".join(f"{word}\n" for word in found).encode("utf-8", "surrogateescape"))
        return 0
    if len(operands) != 1 or operands[0] not in SHELLS:
        err.write(usage_line("lkm completion: give bash, zsh or fish"))
        return 2
    makers = {"bash": bash_script, "zsh": zsh_script, "fish": fish_script}
    out.write(makers[operands[0]](specs()).encode())
    return 0


# -- the option tables ---------------------------------------------------------------


def specs() -> dict[str, Spec]:
    """Every command's spec, by name (``lkm COMMAND`` and the links)."""
    import sys

    from lkm.cli import TOOLS

    found = {}
    for name, module_name in sorted(TOOLS.items()):
        __import__(module_name)
        found[name] = spec_of(name, sys.modules[module_name])
    return found


def spec_of(name: str, module: object) -> Spec:
    """A command's spec from its module: the getopt tables it parses with,
    else the argparse parser its run() builds."""
    if name == "dkms":
        return _dkms_spec(module)
    shortopts = getattr(module, "SHORTOPTS", None)
    longopts = getattr(module, "LONGOPTS", None)
    if shortopts is not None and longopts is not None:
        words = {"vm": ("run", "shell"), "completion": SHELLS}.get(name, ())
        return _getopt_spec(shortopts, longopts, words)
    from lkm.cli.options import parser_of

    return _argparse_spec(parser_of(getattr(module, "run")))  # noqa: B009 - typed as object


def _getopt_spec(shortopts: str, longopts: Iterable[str], words: Iterable[str] = ()) -> Spec:
    options, valued = [], []
    for at, letter in enumerate(shortopts):
        if letter == ":":
            continue
        options.append(f"-{letter}")
        # "L::" takes its optional value in the same word: the next is not it.
        if shortopts[at + 1 : at + 2] == ":" and shortopts[at + 2 : at + 3] != ":":
            valued.append(f"-{letter}")
    for name in longopts:
        option = f"--{name.rstrip('=')}"
        options.append(option)
        if name.endswith("=") and not name.endswith("=="):  # "color==": only --color=WHEN
            valued.append(option)
    return Spec(tuple(options), tuple(valued), tuple(words))


def _argparse_spec(parser: argparse.ArgumentParser) -> Spec:
    options: list[str] = []
    valued: list[str] = []
    subcommands: list[tuple[str, Spec]] = []
    for action in parser._actions:
        choices = getattr(action, "choices", None)
        if not action.option_strings and isinstance(choices, dict):  # subparsers
            subcommands += [(n, _argparse_spec(p)) for n, p in choices.items()]
            continue
        options += action.option_strings
        same_word = getattr(action, "value_in_same_word", False)  # --color=WHEN
        if action.option_strings and action.nargs != 0 and not same_word:
            valued += action.option_strings
    words = tuple(name for name, _ in subcommands)
    return Spec(tuple(options), tuple(valued), words, tuple(subcommands))


def _dkms_spec(module: object) -> Spec:
    valued = tuple(getattr(module, "_VALUED", {}))
    flags = tuple(getattr(module, "_FLAGS", {}))
    actions = tuple(getattr(module, "ACTIONS", ()))
    return Spec((*valued, *flags, "-h", "--help", "--version"), valued, actions)


# -- values ---------------------------------------------------------------------------


def candidates(kind: str, root: str = "", kernel: str | None = None) -> list[str]:
    """The words of one kind, for the scripts (nothing when none can be read)."""
    if kind == "modules":
        return module_names(root, kernel or os.uname().release)
    if kind == "loaded":
        return loaded_modules()
    if kind == "kernels":
        return kernel_names(root)
    if kind == "dkms":
        return dkms_pairs(root)
    if kind == "kinds":
        return ["modules", "loaded", "kernels", "dkms"]
    return []


def module_names(root: str, release: str) -> list[str]:
    """The module names of ``root``'s tree of ``release`` (modules.dep)."""
    try:
        with open(f"{root}/lib/modules/{release}/modules.dep", "rb") as f:
            text = f.read().decode("utf-8", "surrogateescape")
    except OSError:
        return []
    names = set()
    for line in text.splitlines():
        path = line.partition(":")[0]
        base = path.rpartition("/")[2]
        if base:
            names.add(base.partition(".ko")[0])
    return sorted(names)


def loaded_modules() -> list[str]:
    try:
        with open("/proc/modules", encoding="utf-8", errors="surrogateescape") as f:
            return sorted(line.split(" ", 1)[0] for line in f if line.strip())
    except OSError:
        return []


def kernel_names(root: str) -> list[str]:
    """Releases with a module tree here or in lkm's cache, and their series."""
    from lkm.errors import LkmError
    from lkm.model.kernels import available_kernels

    try:
        kernels = available_kernels(root)
    except (LkmError, OSError):
        return []
    releases = {k.release for k in kernels}
    return sorted(releases | {k.series for k in kernels})


def dkms_pairs(root: str) -> list[str]:
    """NAME/VERSION of every package in DKMS's tree."""
    tree = f"{root}/var/lib/dkms"
    pairs = []
    for name in _dirs(tree):
        pairs += [f"{name}/{v}" for v in _dirs(f"{tree}/{name}") if not v.startswith("kernel-")]
    return sorted(pairs)


def _dirs(path: str) -> list[str]:
    try:
        return [e.name for e in os.scandir(path) if e.is_dir()]
    except OSError:
        return []


# -- the scripts ------------------------------------------------------------------------


def _words(items: Iterable[str]) -> str:
    return " ".join(items)


def _case_arms(specs: dict[str, Spec]) -> str:
    """bash ``case`` arms setting each command's options, valued options,
    words and operand kind."""
    arms = []
    for name, spec in specs.items():
        sets = [
            f'opts="{_words(spec.options)}"',
            f'valued="{_words(spec.valued)}"',
            f'words="{_words(spec.words)}"',
            f'operands="{OPERANDS.get(name, "")}"',
        ]
        arms.append(f"        {name}) {'; '.join(sets)} ;;")
        for sub, subspec in spec.subcommands:
            sets = [
                f'opts="{_words(subspec.options)}"',
                f'valued="{_words(subspec.valued)}"',
                'words=""',
                f'operands="{OPERANDS.get(f"{name}/{sub}", "")}"',
            ]
            arms.append(f"        {name}/{sub}) {'; '.join(sets)} ;;")
    return "\n".join(arms)


def _value_arms() -> str:
    kinds: dict[str, list[str]] = {}
    for option, kind in VALUES.items():
        kinds.setdefault(kind, []).append(option)
    return "\n".join(f"        {'|'.join(opts)}) kind={kind} ;;" for kind, opts in kinds.items())


BASH_TEMPLATE = r"""# bash completion for lkm and the kmod-named links to it (lkm completion bash)
_lkm_candidates() {
    lkm completion --candidates "$1" ${_lkm_root:+--root "$_lkm_root"} \
        ${_lkm_kernel:+--kernel "$_lkm_kernel"} 2>/dev/null
}

_lkm() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    local cmd=${COMP_WORDS[0]##*/} first=1 i opts valued words operands kind=""
    local _lkm_root="" _lkm_kernel=""
    COMPREPLY=()
    if [[ $cmd == lkm ]]; then
        if (( COMP_CWORD == 1 )); then
            COMPREPLY=($(compgen -W "@COMMANDS@ --help --version" -- "$cur"))
            return
        fi
        cmd=${COMP_WORDS[1]}
        first=2
    fi
    # the tree and kernel the words so far name (module names come from it)
    for (( i = first; i < COMP_CWORD; i++ )); do
        case ${COMP_WORDS[i]} in
            -d|--dirname|-b|--basedir|--root) _lkm_root=${COMP_WORDS[i+1]} ;;
            -S|--set-version|-k|--kernel) _lkm_kernel=${COMP_WORDS[i+1]} ;;
        esac
    done
    local key=$cmd
    if (( COMP_CWORD > first )); then
        case $cmd in
            kernel) key=$cmd/${COMP_WORDS[first]} ;;
        esac
    fi
    case $key in
@ARMS@
        *) return ;;
    esac
    if [[ " $valued " == *" $prev "* ]]; then
        case $prev in
@VALUES@
        esac
        case $kind in
            dirs) COMPREPLY=($(compgen -d -- "$cur")) ;;
            "") COMPREPLY=($(compgen -f -- "$cur")) ;;
            *) COMPREPLY=($(compgen -W "$(_lkm_candidates "$kind")" -- "$cur")) ;;
        esac
        return
    fi
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
        return
    fi
    if [[ -n $words ]]; then  # a subcommand or action, until one is given
        local seen=""
        for (( i = first; i < COMP_CWORD; i++ )); do
            [[ " $words " == *" ${COMP_WORDS[i]} "* ]] && seen=1
        done
        [[ -z $seen ]] && COMPREPLY=($(compgen -W "$words" -- "$cur"))
    fi
    case $operands in
        modules|loaded|kernels|dkms)
            COMPREPLY+=($(compgen -W "$(_lkm_candidates "$operands")" -- "$cur")) ;;
        modfiles) COMPREPLY+=($(compgen -f -X '!*.ko*' -- "$cur") $(compgen -d -- "$cur")) ;;
        dirs) COMPREPLY+=($(compgen -d -- "$cur")) ;;
        shells) COMPREPLY+=($(compgen -W "bash zsh fish" -- "$cur")) ;;
    esac
    if [[ $cmd == modinfo || $cmd == modprobe ]] && [[ $cur == */* ]]; then
        COMPREPLY+=($(compgen -f -X '!*.ko*' -- "$cur"))
    fi
}

complete -F _lkm lkm
# kmod's names only where they are lkm (kmod ships its own completion)
_lkm_self=$(readlink -f "$(command -v lkm)" 2>/dev/null)
for _lkm_link in @LINKS@; do
    _lkm_target=$(readlink -f "$(command -v "$_lkm_link")" 2>/dev/null)
    if [[ -n $_lkm_self && $_lkm_target == "$_lkm_self" ]]; then
        complete -F _lkm "$_lkm_link"
    fi
done
unset _lkm_self _lkm_link _lkm_target
"""


def bash_script(specs: dict[str, Spec]) -> str:
    return (
        BASH_TEMPLATE.replace("@COMMANDS@", _words(sorted(specs)))
        .replace("@ARMS@", _case_arms(specs))
        .replace("@VALUES@", _value_arms())
        .replace("@LINKS@", _words(_links()))
    )


def zsh_script(specs: dict[str, Spec]) -> str:
    """zsh runs the bash function through its bashcompinit layer: one
    implementation, the same tables."""
    return (
        "#compdef lkm\n"
        "# zsh completion for lkm (lkm completion zsh): the bash function, through\n"
        "# zsh's bashcompinit\n"
        "autoload -U +X compinit && compinit -u\n"
        "autoload -U +X bashcompinit && bashcompinit\n" + bash_script(specs)
    )


def fish_script(specs: dict[str, Spec]) -> str:
    lines = [
        "# fish completion for lkm (lkm completion fish)",
        "complete -c lkm -f",
        "complete -c lkm -n __fish_use_subcommand -a "
        + _fish_quote(_words(sorted(specs)))
        + " -d command",
    ]
    for name, spec in specs.items():
        condition = f"__fish_seen_subcommand_from {name}"
        lines += [_fish_option("lkm", condition, option, spec) for option in spec.options]
        if spec.words:
            lines.append(
                f"complete -c lkm -n {_fish_quote(condition)} -a {_fish_quote(_words(spec.words))}"
            )
        for sub, subspec in spec.subcommands:
            subcondition = (
                f"__fish_seen_subcommand_from {name}; and __fish_seen_subcommand_from {sub}"
            )
            lines += [_fish_option("lkm", subcondition, o, subspec) for o in subspec.options]
        kind = OPERANDS.get(name, "")
        if kind in ("modules", "loaded", "kernels", "dkms"):
            values = f"(lkm completion --candidates {kind} 2>/dev/null)"
            lines.append(f"complete -c lkm -n {_fish_quote(condition)} -a {_fish_quote(values)}")
        elif kind in ("modfiles", "dirs"):
            lines.append(f"complete -c lkm -n {_fish_quote(condition)} -F")
    for link in _links():
        lines.append(f"complete -c {link} -w 'lkm {link}'")
    return "\n".join(lines) + "\n"


def _links() -> list[str]:
    """The names lkm answers to through a link (kmod's tools, dkms)."""
    from lkm.cli import MULTICALL

    return sorted(MULTICALL)


def _fish_option(command: str, condition: str, option: str, spec: Spec) -> str:
    flag = f"-l {option[2:]}" if option.startswith("--") else f"-s {option[1:]}"
    needs = " -r" if option in spec.valued else ""
    kind = VALUES.get(option, "")
    values = ""
    if option in spec.valued and kind in ("kernels", "loaded", "kinds", "dkms"):
        values = " -a " + _fish_quote(f"(lkm completion --candidates {kind} 2>/dev/null)")
    return f"complete -c {command} -n {_fish_quote(condition)} {flag}{needs}{values}"


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


__all__ = ["Spec", "bash_script", "candidates", "fish_script", "specs", "zsh_script"]
