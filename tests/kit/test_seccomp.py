"""The seccomp filter (grader/judge/seccomp.py): its program's layout. What it refuses inside a worker sandbox, and
what it leaves working, is tests/kit/test_sandbox_hardening.py."""

from __future__ import annotations

import struct

import pytest

from grader.judge.seccomp import ARCHES, DENY_MOUNTS, DENY_NAMESPACES, RET_ALLOW, RET_ERRNO, program


def _insns(prog: bytes) -> list[tuple[int, int, int, int]]:
    return [struct.unpack("=HBBI", prog[i:i + 8]) for i in range(0, len(prog), 8)]


def test_program_checks_the_architecture_first_and_ends_with_allow_deny_enosys() -> None:
    """Instruction 1 compares the audit architecture; the last three return allow, EPERM and ENOSYS."""
    insns = _insns(program(DENY_NAMESPACES, "x86_64"))
    assert insns[1][3] == ARCHES["x86_64"][0]
    assert [k for *_, k in insns[-3:]] == [RET_ALLOW, RET_ERRNO | 1, RET_ERRNO | 38]


def test_every_plain_denied_call_jumps_to_the_deny_return() -> None:
    """Each denied number's jeq lands on the EPERM return (x86_64: 2 + 10 mount calls + clone's 3 + x32)."""
    insns = _insns(program(("unshare", "setns") + DENY_MOUNTS, "x86_64"))
    deny_at = len(insns) - 2
    numbers = ARCHES["x86_64"][1]
    for name in ("unshare", "setns") + DENY_MOUNTS:
        at = next(i for i, (code, _, _, k) in enumerate(insns) if code == 0x15 and k == numbers[name])
        assert at + 1 + insns[at][1] == deny_at, name


def test_unknown_machine_or_call_is_refused_by_name() -> None:
    """A machine or system call the tables lack is a ValueError naming it."""
    with pytest.raises(ValueError, match="machine: expected one of x86_64, aarch64, got 'mips'"):
        program(DENY_NAMESPACES, "mips")
    with pytest.raises(ValueError, match="unknown system calls \\['reboot'\\]"):
        program(("reboot",), "x86_64")
