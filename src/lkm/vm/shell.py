"""The interactive shell of ``lkm vm shell`` (and ``lkm try --shell``), as
the guest runs it on its console.

The guest starts the script below on ``/dev/hvc0`` as the controlling tty
of a new session (see :func:`lkm.vm.initramfs.init_script`), chrooted in
the overlay of the host's root. It sets the tty's window size to the host
terminal's, puts lkm (the tools beside this interpreter) and kmod's tools
on ``PATH``, and becomes bash (the host root's, without its rc files, so
the prompt is lkm's) or ``sh`` when there is no bash; the prompt names the
VM and its kernel.
"""

from __future__ import annotations

import os
import shlex
import sys

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def prompt(release: str) -> str:
    return f"[lkm-vm {release}] # "


def shell_script(release: str, size: tuple[int, int] | None, term: str) -> str:
    """The script that becomes the shell; ``size``: (rows, columns)."""
    bindir = os.path.dirname(sys.executable)
    environment = {
        "HOME": "/root",
        "TERM": term,
        "PATH": f"{bindir}:{SYSTEM_PATH}",
        "PS1": prompt(release),
    }
    lines = []
    if size is not None:
        lines.append(f"stty rows {size[0]} cols {size[1]}")
    lines.append("export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in environment.items()))
    lines.append("command -v bash >/dev/null && exec bash --norc --noprofile -i")
    lines.append("exec sh -i")
    return "\n".join(lines) + "\n"


__all__ = ["prompt", "shell_script"]
