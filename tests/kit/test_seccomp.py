"""The seccomp filter (grader/seccomp.py): its program's layout, and, where bubblewrap runs, what it refuses."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import tempfile

import pytest

from grader.seccomp import ARCHES, DENY_KERNEL_SURFACE, DENY_MOUNTS, DENY_NAMESPACES, RET_ALLOW, RET_ERRNO, program


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


PROBE = r"""
import ctypes, errno, os, threading, subprocess
libc = ctypes.CDLL(None, use_errno=True)
def result(rc):
    return "ok" if rc != -1 else errno.errorcode[ctypes.get_errno()]
print("unshare-user", result(libc.unshare(0x10000000)))
print("unshare-net", result(libc.unshare(0x40000000)))
print("keyctl", result(libc.syscall(NR_KEYCTL, 0, 0, 0, 0, 0)))
print("io_uring", result(libc.syscall(425, 1, 0)))
pid = os.fork()
if pid == 0:
    os._exit(7)
print("fork", os.waitpid(pid, 0)[1] >> 8)
t = threading.Thread(target=print, args=("thread", "ok")); t.start(); t.join()
print("exec", subprocess.run(["true"]).returncode)
"""


def test_under_bubblewrap_namespaces_keyctl_and_io_uring_fail_while_fork_threads_and_exec_work() -> None:
    """bwrap --seccomp with the filter: new namespaces, keyctl and io_uring fail with EPERM; the rest works."""
    import platform

    if shutil.which("bwrap") is None or platform.machine() not in ARCHES:
        pytest.skip("needs bubblewrap on x86_64 or aarch64")
    numbers = ARCHES[platform.machine()][1]
    with tempfile.TemporaryFile() as filt:
        filt.write(program(DENY_NAMESPACES + DENY_MOUNTS + DENY_KERNEL_SURFACE))
        filt.seek(0)
        argv = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid",
                "--seccomp", str(filt.fileno()), sys.executable, "-c",
                PROBE.replace("NR_KEYCTL", str(numbers["keyctl"]))]  # fmt: skip
        proc = subprocess.run(argv, pass_fds=(filt.fileno(),), capture_output=True, text=True, timeout=60)
    if "bwrap:" in proc.stderr and proc.returncode != 0 and "unshare" not in proc.stdout:
        pytest.skip(f"bubblewrap cannot start here: {proc.stderr.strip()[:300]}")
    seen = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    assert seen == {"unshare-user": "EPERM", "unshare-net": "EPERM", "keyctl": "EPERM", "io_uring": "EPERM",
                    "fork": "7", "thread": "ok", "exec": "0"}, proc.stderr  # fmt: skip
