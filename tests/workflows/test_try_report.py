"""How ``lkm try`` reads what the guest saw: oopses and warnings in the
kernel log, load failures, taint bits. Kernel log lines are real ones from
the Debian 6.1 kernel."""

from __future__ import annotations

import errno
import io

from lkm.workflows.try_module import Call, explain_load_failure, find_incidents, taint_letters

OOPS = """\
BUG: kernel NULL pointer dereference, address: 0000000000000000
#PF: supervisor write access in kernel mode
Oops: 0002 [#1] PREEMPT SMP NOPTI
RIP: 0010:m_init+0x13/0x1000 [oops]
Call Trace:
 <TASK>
 do_one_initcall+0x59/0x220
 ? next_uptodate_folio+0x85/0x2a0
 do_init_module+0x4a/0x1f0
 </TASK>
Modules linked in: oops(OE+) overlay 9p
---[ end trace 0000000000000000 ]---
RIP: 0010:m_init+0x13/0x1000 [oops]
PKRU: 55555554
note: python3[116] exited with irqs disabled"""


def test_an_oops_runs_to_its_end_marker_and_the_registers_printed_after_it() -> None:
    lines = ["oops: loading out-of-tree module taints kernel.", *OOPS.splitlines()]
    (incident,) = find_incidents(("load", line) for line in lines)
    assert incident.phase == "load"
    assert incident.positions == list(range(1, len(lines) - 1))  # the note is not part of it
    assert incident.summary() == [
        "BUG: kernel NULL pointer dereference, address: 0000000000000000",
        "RIP: 0010:m_init+0x13/0x1000 [oops]",
        "Call Trace:",
        "  do_one_initcall+0x59/0x220",
        "  do_init_module+0x4a/0x1f0",
    ]


def test_a_warning_and_an_oops_are_two_incidents() -> None:
    warning = ["WARNING: CPU: 0 PID: 1 at x.c:2 m_init+0x11/0x1000 [x]", "---[ end trace 0 ]---"]
    incidents = find_incidents(("test", line) for line in [*warning, *OOPS.splitlines()])
    assert [i.title.split(":")[0] for i in incidents] == ["WARNING", "BUG"]


def test_load_failures_say_who_failed() -> None:
    init = Call("insmod", "m", 0.1, errno=errno.ENODEV)
    assert explain_load_failure(init) == (
        "m: No such device (-ENODEV): its init function returned -ENODEV, so it was not loaded"
    )
    loader = Call("insmod", "m", 0.1, errno=errno.ENOEXEC)
    assert "built for another kernel" in explain_load_failure(loader)
    killed = Call("insmod", "m", 0.1, signal=9)
    assert explain_load_failure(killed) == (
        "m: the task loading it was killed (signal 9): see the oops"
    )


def test_taint_letters_in_bit_order() -> None:
    assert [letter for letter, _ in taint_letters((1 << 12) | (1 << 13) | 1)] == ["P", "O", "E"]
    assert taint_letters(0) == []


def test_json_record_with_and_without_a_guest() -> None:
    from conftest import json_of

    from lkm.cli.json_output import write_array
    from lkm.workflows.try_module import GuestReport, TryReport, _review

    before = TryReport("/src/oops", "6.1.0-1-amd64", "/headers")
    before.problems.append("the build failed")
    guest = GuestReport.from_json(
        {
            "taint_before": 0,
            "taint_after": 1 << 12 | 1 << 13,  # O and E
            "load": [{"call": "insmod", "module": "oops", "seconds": 0.1, "signal": 9}],
            "unload": [],
            "lsmod": ["Module Size Used by", "oops 16384 1"],
            "loaded": [
                {
                    "module": "oops",
                    "size": 16384,
                    "refcount": 1,
                    "used_by": [],
                    "state": "Loading",
                    "taints": "OE",
                },
            ],
            "module_taint": {"oops": "OE"},
            "parameters": {},
            "log_load": [
                {"phase": "load", "level": 1, "usec": 5, "text": t} for t in OOPS.split("\n")
            ],
        }
    )
    after = TryReport("/src/oops", "6.1.0-1-amd64", "/headers")
    after.modules.append(("oops", "/src/oops/oops.ko"))
    _review(after, guest, lambda _name: None)
    out = io.BytesIO()
    write_array(out, [before.as_json(), after.as_json()])
    no_guest, oopsed = json_of("try", out.getvalue())
    assert no_guest["load"] == [] and no_guest["test"] is None and not no_guest["ok"]
    assert [t["letter"] for t in oopsed["taints"]] == ["O", "E"]
    assert oopsed["load"][0]["signal"] == 9 and not oopsed["load"][0]["ok"]
    (incident,) = oopsed["incidents"]
    assert incident["title"].startswith("BUG: kernel NULL pointer") and incident["phase"] == "load"
    assert "RIP: 0010:m_init+0x13/0x1000 [oops]" in incident["summary"]
