"""A seccomp filter, as the classic-BPF program bubblewrap loads with ``bwrap --seccomp FD``.

    program(DENY_NAMESPACES + DENY_MOUNTS)  ->  bytes: struct sock_filter[] for this machine's architecture

Each listed system call fails with ``EPERM`` instead of running; ``clone`` fails only when its flags ask for a
new namespace, and ``clone3`` (whose flags sit in memory a filter cannot read) fails with ``ENOSYS`` so that
the C library falls back to ``clone``: the rules Docker's default profile applies. A call made with another
architecture's numbering (i386 or x32 on x86_64) fails with ``EPERM`` whole, so that no second table slips
past the list. ``make gradescope-check`` uses it to refuse namespaces in a Docker-like container.

The program's layout: ``struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; }`` over ``struct seccomp_data {
int nr; u32 arch; u64 instruction_pointer; u64 args[6]; }`` (linux/filter.h, linux/seccomp.h).
"""

from __future__ import annotations

import errno
import platform
import struct

# classic BPF opcodes (linux/bpf_common.h)
_LD_W_ABS = 0x00 | 0x00 | 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x05 | 0x10 | 0x00  # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x05 | 0x30 | 0x00  # BPF_JMP | BPF_JGE | BPF_K
_JSET_K = 0x05 | 0x40 | 0x00  # BPF_JMP | BPF_JSET | BPF_K
_RET_K = 0x06 | 0x00  # BPF_RET | BPF_K

RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000

_NR_OFFSET, _ARCH_OFFSET, _ARG0_LOW_OFFSET = 0, 4, 16  # little-endian: the low half of args[0]
_X32_BIT = 0x40000000

#: clone() flags that make a namespace (linux/sched.h).
NAMESPACE_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x00000080
#                 NEWNS        NEWCGROUP    NEWUTS       NEWIPC       NEWUSER      NEWPID       NEWNET       NEWTIME

#: (audit architecture, system call numbers) per machine (asm/unistd_64.h; aarch64: asm-generic/unistd.h).
ARCHES: dict[str, tuple[int, dict[str, int]]] = {
    "x86_64": (0xC000003E, {
        "clone": 56, "clone3": 435, "unshare": 272, "setns": 308, "mount": 165, "umount2": 166, "pivot_root": 155,
        "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
        "mount_setattr": 442, "keyctl": 250, "add_key": 248, "request_key": 249, "bpf": 321, "userfaultfd": 323,
        "perf_event_open": 298, "ptrace": 101, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427,
    }),
    "aarch64": (0xC00000B7, {
        "clone": 220, "clone3": 435, "unshare": 97, "setns": 268, "mount": 40, "umount2": 39, "pivot_root": 41,
        "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
        "mount_setattr": 442, "keyctl": 219, "add_key": 217, "request_key": 218, "bpf": 280, "userfaultfd": 282,
        "perf_event_open": 241, "ptrace": 117, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427,
    }),
}  # fmt: skip

#: New namespaces: unshare and setns always; clone with a namespace flag; clone3 (ENOSYS, see above).
DENY_NAMESPACES = ("unshare", "setns", "clone", "clone3")
#: Mounting, old and new API.
DENY_MOUNTS = ("mount", "umount2", "pivot_root", "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount",
               "fspick", "mount_setattr")  # fmt: skip
#: Kernel surfaces a grading never needs and that carry most local privilege-escalation bugs.
DENY_KERNEL_SURFACE = ("keyctl", "add_key", "request_key", "bpf", "userfaultfd", "perf_event_open", "ptrace",
                       "io_uring_setup", "io_uring_enter", "io_uring_register")  # fmt: skip


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k & 0xFFFFFFFF)


def program(deny: tuple[str, ...], machine: str | None = None, err: int = errno.EPERM) -> bytes:
    """The filter denying ``deny`` (names of :data:`ARCHES`) on ``machine`` (default: this one's).

    Raises ValueError naming the machine or the system call that the table does not know.
    """
    machine = machine or platform.machine()
    if machine not in ARCHES:
        raise ValueError(f"machine: expected one of {', '.join(ARCHES)}, got {machine!r}")
    arch, numbers = ARCHES[machine]
    unknown = [name for name in deny if name not in numbers]
    if unknown:
        raise ValueError(f"deny: unknown system calls {unknown} (known: {', '.join(sorted(numbers))})")
    plain = [numbers[n] for n in dict.fromkeys(deny) if n not in ("clone", "clone3")]
    tests = [(nr, "deny") for nr in plain] + ([(numbers["clone3"], "enosys")] if "clone3" in deny else [])
    clone = "clone" in deny
    x32 = machine == "x86_64"
    # Layout: ld arch; jeq arch; ld nr; [jge x32 -> deny]; one jeq per test; [clone: jeq, ld args[0], jset];
    # then the three returns: allow, deny (err), ENOSYS. Jumps are relative to the next instruction.
    first_test = 3 + x32
    allow_at = first_test + len(tests) + (3 if clone else 0)
    deny_at, enosys_at = allow_at + 1, allow_at + 2

    def jump(frm: int, to: int) -> int:
        offset = to - frm - 1
        if not 0 <= offset <= 255:
            raise ValueError(f"deny: too many system calls for one jump ({len(deny)})")
        return offset

    insns = [(_LD_W_ABS, 0, 0, _ARCH_OFFSET), (_JEQ_K, 0, jump(1, deny_at), arch), (_LD_W_ABS, 0, 0, _NR_OFFSET)]
    if x32:
        insns.append((_JGE_K, jump(3, deny_at), 0, _X32_BIT))
    for at, (nr, target) in enumerate(tests, start=first_test):
        insns.append((_JEQ_K, jump(at, deny_at if target == "deny" else enosys_at), 0, nr))
    if clone:
        at = first_test + len(tests)
        insns += [(_JEQ_K, 0, jump(at, allow_at), numbers["clone"]), (_LD_W_ABS, 0, 0, _ARG0_LOW_OFFSET),
                  (_JSET_K, jump(at + 2, deny_at), 0, NAMESPACE_FLAGS)]  # fmt: skip
    insns += [(_RET_K, 0, 0, RET_ALLOW), (_RET_K, 0, 0, RET_ERRNO | (err & 0xFFFF)),
              (_RET_K, 0, 0, RET_ERRNO | errno.ENOSYS)]  # fmt: skip
    return b"".join(_insn(*insn) for insn in insns)
