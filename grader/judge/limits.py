"""What every child the grader starts gets before its program: its limits (:class:`Limits`) and the set-up
between fork and exec (:func:`child_setup`: session, cgroups, network, rlimits, account, parent-death signal,
seccomp); and how it is stopped (:func:`kill_session`). Shared by :func:`grader.judge.sandbox.run_limited`, the
workers' launches and the judges the fork server forks (:mod:`grader.judge.forkserver`)."""

from __future__ import annotations

import ctypes
import os
import resource
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed run."""

    wall_seconds: float = 900.0
    cpu_seconds: int = 1800
    memory_bytes: int = 3 * 2**30
    max_processes: int = 256
    max_file_bytes: int = 64 * 2**20
    max_open_files: int = 1024
    max_output_bytes: int = 256 * 2**10
    network: bool = False
    #: bubblewrap's /tmp and /dev/shm are tmpfs of these sizes (their pages count in the memory cgroup)
    tmp_bytes: int = 512 * 2**20
    shm_bytes: int = 64 * 2**20


def die_with_parent(parent: int) -> None:
    """In a child before exec: SIGKILL when the process that started it dies (set after any change of
    account, which clears it); if that parent is already gone, die now."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def loopback_up() -> None:
    """Bring up ``lo`` in a fresh network namespace (it starts down): local sockets work, nothing else."""
    import fcntl
    import socket
    import struct

    siocsifflags, iff_up, iff_loopback, iff_running = 0x8914, 0x1, 0x8, 0x40
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14s", b"lo", iff_up | iff_loopback | iff_running, b"\0" * 14)
        fcntl.ioctl(sock, siocsifflags, request)


def child_setup(limits: Limits, *, parent: int, cgroups: Sequence[str] = (), unshare_net: bool = False,
                drop_to: tuple[int, int] | None = None, install_seccomp: Callable[[], None] | None = None) -> None:
    """What a fresh child does between fork and its program: a session of its own, the run's cgroups
    (``cgroups``: their folders), no network (``unshare_net``), the run's rlimits, the account ``drop_to``,
    death with ``parent`` (the pid that forked it) and the seccomp filter. Shared by :func:`run_limited`'s
    children and the judges :mod:`grader.judge.forkserver` forks."""
    os.setsid()
    for group in cgroups:
        (Path(group) / "cgroup.procs").write_text(str(os.getpid()))
    if unshare_net:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWNET) == 0:
            loopback_up()  # a notebook kernel talks to its client over 127.0.0.1
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 5))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.max_file_bytes, limits.max_file_bytes))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.max_open_files, limits.max_open_files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if drop_to is not None:
        os.setgroups([])
        os.setgid(drop_to[1])
        os.setuid(drop_to[0])
    resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_processes, limits.max_processes))
    die_with_parent(parent)
    if install_seccomp is not None:
        install_seccomp()


def kill_session(pid: int) -> None:
    """SIGKILL the session of the child ``pid`` (everything it started), and ``pid`` itself: a judge the fork
    server has just forked may not have made its session yet (:func:`child_setup` runs after the fork)."""
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except OSError:  # gone already, or (the group) not made yet
            pass
