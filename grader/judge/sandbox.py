"""Run untrusted code (a submission's tests or notebook) in a child process with limits.

The child gets its own session (so the whole process group can be killed), resource limits (address space,
CPU seconds, processes, file size, open files), an optional private network namespace (no network) and
the unprivileged account its sandbox chose (:meth:`WorkerSandbox.command`). Output is captured up to a byte
budget (head and tail kept). Results travel back over a pipe that the parent creates (:class:`ReportChannel`):
every record is signed with a per-run key, so text that a submission prints or writes into files is never
mistaken for a result.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from grader.judge.limits import Limits, child_setup, kill_session
from grader.sandboxed.channel import verify

NOBODY = (65534, 65534)


# ------------------------------------------------------------------------------------------ clean shutdown
#: Set when the grader is stopping (SIGTERM, SIGINT): nothing more starts, and a grading in flight is
#: abandoned without writing a result (so that a resumed batch grades it again).
SHUTDOWN = threading.Event()
_LIVE_GROUPS: set[int] = set()
_LIVE_LOCK = threading.Lock()


def stop_everything() -> None:
    """Kill every process group this process started and that still runs (judges, notebook runs; their
    workers die with them: each has a parent-death signal, and bubblewrap's --die-with-parent)."""
    SHUTDOWN.set()
    with _LIVE_LOCK:
        groups = list(_LIVE_GROUPS)
    for pgid in groups:
        kill_session(pgid)


@dataclass
class RunResult:
    """What a sandboxed run did."""

    returncode: int | None
    output: str
    timed_out: bool
    wall_seconds: float
    output_truncated: bool = False
    signal_name: str | None = None
    records: list[dict] = field(default_factory=list)
    forged_records: int = 0


class ReportChannel:
    """A pipe from the child to the parent carrying HMAC-signed JSON records.

    The child side (:func:`grader.sandboxed.channel.child_channel`, in ``grader.judge.pytest_report`` and
    ``grader.sandboxed.notebook``) reads ``CA15_REPORT_FD`` and
    ``CA15_REPORT_KEY`` from its environment and removes both before any submission code is imported.
    """

    def __init__(self) -> None:
        self.key = secrets.token_hex(32)
        self.read_fd, self.write_fd = os.pipe()
        self.records: list[dict] = []
        self.forged = 0
        self._thread = threading.Thread(target=self._drain, daemon=True)

    def env(self) -> dict[str, str]:
        return {"CA15_REPORT_FD": str(self.write_fd), "CA15_REPORT_KEY": self.key}

    def sandbox_env(self) -> tuple[dict[str, str], int]:
        """For a child in bubblewrap, whose command line every process of the sandbox can read: the key in a
        descriptor of its own (a memfd, returned for ``pass_fds``; close it once the child started) and only
        descriptor numbers in the environment."""
        key_fd = os.memfd_create("ca15-report-key", 0)
        os.write(key_fd, self.key.encode())
        os.lseek(key_fd, 0, os.SEEK_SET)
        return {"CA15_REPORT_FD": str(self.write_fd), "CA15_REPORT_KEY_FD": str(key_fd)}, key_fd

    def start(self) -> None:
        os.close(self.write_fd)  # only the child holds the write end now
        self._thread.start()

    def _drain(self) -> None:
        budget = 64 * 2**20
        with os.fdopen(self.read_fd, "rb") as stream:
            for raw in stream:
                budget -= len(raw)
                if budget < 0:
                    continue
                record = verify(raw, self.key)
                if record is None:
                    self.forged += 1
                else:
                    self.records.append(record)

    def join(self, timeout: float = 10.0) -> None:
        self._thread.join(timeout)


def _can_unshare_network() -> bool:
    try:
        proc = subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


_NETNS_OK: bool | None = None


def network_namespaces_work() -> bool:
    """Whether this process (as root) can give a child a private network namespace; probed once."""
    global _NETNS_OK
    if os.geteuid() != 0:
        return False
    if _NETNS_OK is None:
        _NETNS_OK = _can_unshare_network()
    return _NETNS_OK


_RUNS_AS: dict[tuple[str, tuple[int, int]], bool] = {}


def _can_run_as(python: str, account: tuple[int, int]) -> bool:
    """Whether ``python`` imports torch when started as ``account`` (uid, gid) from ``/`` (cached): its install
    must be readable by that account. Only root can switch accounts."""
    if os.geteuid() != 0:
        return False
    key = (python, account)
    if key not in _RUNS_AS:
        try:
            proc = subprocess.run(
                [python, "-c", "import torch"], capture_output=True, timeout=120, cwd="/",
                env={"PATH": "/usr/bin:/bin", "HOME": "/", "USER": "ca15-run"},
                preexec_fn=lambda: (os.setgroups([]), os.setgid(account[1]), os.setuid(account[0])),
            )  # fmt: skip
            _RUNS_AS[key] = proc.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            _RUNS_AS[key] = False
    return _RUNS_AS[key]


def can_drop_privileges(python: str) -> bool:
    """Whether ``python`` (and torch) can run as ``nobody`` here: its install must be readable by others.

    Where it is not (an interpreter under a private home folder), the sandbox keeps the grader's user and
    relies on the resource limits alone; the grader's log says so.
    """
    return _can_run_as(python, NOBODY)


#: The uids (each also the gid) the "user" engine gives its runs, one per run while it lives: a run cannot
#: signal, trace or read another run's processes and files, a notebook's leftovers cannot reach the tests'
#: workers, and at the end everything the uid still runs is killed (``CA15_SANDBOX_UIDS=FIRST-LAST`` moves the
#: range; the uids need no account, but must be valid in this user namespace: a rootless container maps 65536).
RUN_UIDS_ENV = "CA15_SANDBOX_UIDS"
DEFAULT_RUN_UIDS = (62000, 62999)


def run_uids() -> range:
    """The per-run uid range (:data:`RUN_UIDS_ENV`); a ValueError naming the variable if it is malformed."""
    text = os.environ.get(RUN_UIDS_ENV, "")
    if not text:
        return range(DEFAULT_RUN_UIDS[0], DEFAULT_RUN_UIDS[1] + 1)
    first, sep, last = text.partition("-")
    if not (sep and first.isdigit() and last.isdigit() and 1000 <= int(first) <= int(last) < 2**31 - 1):
        raise ValueError(f"{RUN_UIDS_ENV}: expected FIRST-LAST, two uids with 1000 <= FIRST <= LAST, got {text!r}")
    return range(int(first), int(last) + 1)


def per_run_accounts_work(python: str) -> bool:
    """Whether a run can switch to a uid of :func:`run_uids` and still import torch with ``python`` (the grader is
    root, the uid is valid here and the interpreter and its packages are readable by others)."""
    uid = run_uids()[0]
    return _can_run_as(python, (uid, uid))


def adopt_probes(python: str, facts: dict) -> None:
    """Take the host probes of :meth:`WorkerSandbox.probed` (made by the grading process that wrote the judge's
    spec, on this same host) as this process's own, so that they are not made again. Only a trusted spec is
    read here: the judge's, written by the grader where no sandboxed run can reach it."""
    global _NETNS_OK
    if not isinstance(facts, dict):
        raise ValueError(f"probed: expected a dict of host probes, got {type(facts).__name__}")
    if isinstance(facts.get("netns"), bool):  # read only by a root process (network_namespaces_work)
        _NETNS_OK = facts["netns"]
    if isinstance(facts.get("nobody"), bool):
        _RUNS_AS[(python, NOBODY)] = facts["nobody"]
    if isinstance(facts.get("per_run"), bool):
        uid = run_uids()[0]
        _RUNS_AS[(python, (uid, uid))] = facts["per_run"]
    if "bwrap_as" in facts:
        account = facts["bwrap_as"]
        _HOST_ACCOUNT[python] = (int(account[0]), int(account[1])) if account else None


def processes_of(uid: int) -> list[int]:
    """Pids of the live processes (zombies left out: they run nothing) whose real uid is ``uid``, from /proc."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status") as status:
                    fields = dict(line.split(":", 1) for line in status if line.startswith(("State:", "Uid:")))
            except (OSError, ValueError):
                continue
            if int(fields.get("Uid", "-1 ").split()[0]) == uid and not fields.get("State", "").strip().startswith("Z"):
                pids.append(int(entry))
    return pids


def kill_uid(uid: int) -> None:
    """Kill every process of ``uid``: a child that becomes ``uid`` sends SIGKILL to -1, which reaches exactly
    the processes that uid may signal (its own; never root's) in one pass that a fork cannot outrun."""
    for _ in range(5):
        if not processes_of(uid):
            return
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
                os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        time.sleep(0.05)  # the killed are reaped by their parents (or init)


#: World-writable folders where a run of the "user" engine can leave files outside its own folder.
SHARED_FOLDERS = ("/tmp", "/var/tmp", "/dev/shm")


def remove_files_of(uid: int, folders: Sequence[str] = SHARED_FOLDERS) -> None:
    """Remove what ``uid`` left directly in the world-writable ``folders`` (its own entries, whole)."""
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_uid != uid:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
            except OSError:
                pass


class RunAccount:
    """One uid of :func:`run_uids`, held by one run of the "user" engine from before it starts until it ended.

    The uid is reserved with a lock on a file in a root-only folder (a grader that dies frees it); on
    taking it, anything still running as that uid is killed; on release, every process of the uid is killed
    and what it left in :data:`SHARED_FOLDERS` is removed, so that nothing of the run lives on into the next.
    """

    LOCKS = Path(tempfile.gettempdir()) / "ca15-run-accounts"

    def __init__(self) -> None:
        import fcntl

        self.LOCKS.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.LOCKS, 0o700)
        uids = list(run_uids())
        start = secrets.randbelow(len(uids))
        for uid in uids[start:] + uids[:start]:
            fd = os.open(self.LOCKS / str(uid), os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self.uid, self._fd = uid, fd
            kill_uid(uid)
            remove_files_of(uid)
            return
        raise SandboxUnavailable(f"all {len(uids)} uids of {RUN_UIDS_ENV} ({uids[0]}-{uids[-1]}) are in use")

    @property
    def ids(self) -> tuple[int, int]:
        return self.uid, self.uid

    def release(self) -> None:
        """Kill the uid's processes, remove its files from the shared folders, free the uid (idempotent)."""
        if self._fd < 0:
            return
        kill_uid(self.uid)
        remove_files_of(self.uid)
        os.close(self._fd)
        self._fd = -1


CGROUP_ROOT = Path("/sys/fs/cgroup")
_UNREMOVED: set[Path] = set()


def _own_cgroup(controller: str) -> str:
    """This process's cgroup path in the v1 hierarchy of ``controller`` (``""`` for the root)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path.strip("/")
    return ""


class RunCgroup:
    """The cgroups of one sandboxed run (as root on a cgroup-v1 host, where the grader may make them): a
    ``pids`` group capping its processes (unlike RLIMIT_NPROC it also holds for root, and it finds every
    process of the run at the end, even those that left the process group, so that :meth:`kill_all` leaves
    nothing behind) and a ``memory`` group capping the run's total memory, all its processes and the tmpfs
    pages they write together (RLIMIT_AS caps each process alone). Each is made under this process's own
    group of that controller, so that the host's limits still hold."""

    CONTROLLERS = ("pids", "memory")

    def __init__(self, max_processes: int, memory_bytes: int | None = None) -> None:
        name = f"ca15-{secrets.token_hex(6)}"
        self.paths: dict[str, Path] = {}
        for controller in self.controllers():
            if controller == "memory" and memory_bytes is None:
                continue
            group = CGROUP_ROOT / controller / _own_cgroup(controller) / name
            group.mkdir()
            self.paths[controller] = group
        if "pids" in self.paths:
            (self.paths["pids"] / "pids.max").write_text(str(max_processes))
        if "memory" in self.paths:
            (self.paths["memory"] / "memory.limit_in_bytes").write_text(str(memory_bytes))
            swap = self.paths["memory"] / "memory.memsw.limit_in_bytes"
            if swap.exists():  # no escape into swap
                swap.write_text(str(memory_bytes))

    @staticmethod
    def controllers() -> tuple[str, ...]:
        """The controllers this process may make groups in (none unless root on a cgroup-v1 host)."""
        if os.geteuid() != 0:
            return ()
        found = []
        for controller in RunCgroup.CONTROLLERS:
            folder = CGROUP_ROOT / controller / _own_cgroup(controller)
            if (folder / "cgroup.procs").is_file() and os.access(folder, os.W_OK):
                found.append(controller)
        return tuple(found)

    @staticmethod
    def available() -> bool:
        return "pids" in RunCgroup.controllers()

    def folders(self) -> list[str]:
        """The run's group folders, which its child joins (:func:`grader.judge.limits.child_setup`)."""
        return [str(group) for group in self.paths.values()]

    def kill_all(self) -> None:
        """Kill every process of the run and remove its groups, with the groups its processes made inside
        (a judge's workers' groups, left there when the judge itself was killed)."""
        for top in self.paths.values():
            groups = sorted((g for g in top.rglob("*") if g.is_dir()), key=lambda g: -len(g.parts)) + [top]
            for group in groups:
                for _ in range(100):
                    try:
                        pids = [int(p) for p in (group / "cgroup.procs").read_text().split()]
                    except OSError:
                        break
                    if not pids:
                        break
                    for pid in pids:
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                    time.sleep(0.05)
                for _ in range(100):  # a memory group empties a moment after its last process
                    try:
                        group.rmdir()
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.05)
                else:
                    _UNREMOVED.add(group)  # sweep() tries again later

    @staticmethod
    def sweep() -> None:
        """Remove the groups :meth:`kill_all` could not yet (their last process was still exiting)."""
        for group in sorted(_UNREMOVED, key=lambda g: -len(g.parts)):
            try:
                group.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                continue
            _UNREMOVED.discard(group)


PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _seccomp_installer() -> Callable[[], None]:
    """A function that installs the workers' seccomp filter (:func:`_worker_deny`) on the calling process, made
    ready in the parent so that the child between fork and exec only makes two ``prctl`` calls: no new
    privileges (no setuid program can undo the filter), then the filter."""
    from grader.judge.seccomp import program

    code = program(_worker_deny())
    buf = ctypes.create_string_buffer(code, len(code))
    prog = _SockFprog(len(code) // 8, ctypes.cast(buf, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)

    def install() -> None:
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or libc.prctl(
                PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:  # fmt: skip
            os._exit(126)  # never run a sandboxed program without its filter

    return install


def _preexec(limits: Limits, drop_to: tuple[int, int] | None, unshare_net: bool, cgroup: RunCgroup | None,
             seccomp: bool = False):
    parent = os.getpid()
    install_seccomp = _seccomp_installer() if seccomp else None
    groups = cgroup.folders() if cgroup is not None else []
    return functools.partial(child_setup, limits, parent=parent, cgroups=groups, unshare_net=unshare_net,
                             drop_to=drop_to, install_seccomp=install_seccomp)  # runs in the child before exec


def _reader(stream, limit: int, sink: dict) -> None:
    head = bytearray()
    tail = bytearray()
    total = 0
    half = limit // 2
    while True:
        chunk = stream.read(65536)
        if not chunk:
            break
        total += len(chunk)
        if len(head) < half:
            take = chunk[: half - len(head)]
            head += take
            chunk = chunk[len(take) :]
        if chunk:
            tail += chunk
            if len(tail) > half:
                del tail[: len(tail) - half]
    sink["total"] = total
    sink["text"] = head.decode(errors="replace") + (
        f"\n[... {total - len(head) - len(tail)} bytes of output left out ...]\n" if total > len(head) + len(tail) else ""
    ) + tail.decode(errors="replace")


def run_limited(
    cmd: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str],
    limits: Limits,
    channel: ReportChannel | None = None,
    drop_to: tuple[int, int] | None = None,
    pass_fds: tuple[int, ...] = (),
    channel_env: bool = True,
    seccomp: bool = False,
    spawn: Callable[..., Any] | None = None,
) -> RunResult:
    """Run ``cmd`` under ``limits``; kill its whole process group at the wall-clock limit.

    Args:
        cmd: the command (argv).
        cwd: working folder of the child.
        env: its complete environment (the parent's is not inherited).
        limits: resource limits.
        channel: a report channel whose write end the child inherits.
        drop_to: ``(uid, gid)`` the child runs as (the sandbox decides: :meth:`WorkerSandbox.command`);
            ``None`` keeps the grader's own.
        pass_fds: descriptors the child inherits besides the channel's (bubblewrap's seccomp filter).
        channel_env: put the channel's descriptor and key in the child's environment (False: the command
            carries them itself, :meth:`ReportChannel.sandbox_env`).
        seccomp: install the workers' seccomp filter in the child (the "user" engine: :attr:`Command.seccomp`).
        spawn: tried before a fresh process: called with the command, working folder, environment, limits,
            network flag, cgroup folders and descriptors of the run, it returns a started child (as much of
            :class:`subprocess.Popen` as this uses) or None (:func:`grader.judge.forkserver.spawn`: a judge
            forked from a warm interpreter, with the same set-up as here).
    """
    unshare_net = not limits.network and network_namespaces_work()
    full_env = dict(env)
    if channel is not None:
        if channel_env:
            full_env.update(channel.env())
        pass_fds = (*pass_fds, channel.write_fd)
    if SHUTDOWN.is_set():
        raise Interrupted("the grader is stopping")
    cgroup = RunCgroup(limits.max_processes, limits.memory_bytes) if RunCgroup.available() else None
    start = time.monotonic()
    proc = None
    if spawn is not None and drop_to is None and not seccomp:
        proc = spawn(cmd, cwd=cwd, env=full_env, limits=limits, unshare_net=unshare_net, pass_fds=pass_fds,
                     cgroups=cgroup.folders() if cgroup is not None else [])
    if proc is None:
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=pass_fds,
            preexec_fn=_preexec(limits, drop_to, unshare_net, cgroup, seccomp),
        )
    with _LIVE_LOCK:
        _LIVE_GROUPS.add(proc.pid)  # its own session: the group id is its pid
    if SHUTDOWN.is_set():  # stopped while it was starting
        kill_session(proc.pid)
    if channel is not None:
        channel.start()
    sink: dict = {}
    reader = threading.Thread(target=_reader, args=(proc.stdout, limits.max_output_bytes, sink), daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=limits.wall_seconds)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        kill_session(proc.pid)  # the child's whole session, also after a normal exit
        proc.wait()
        with _LIVE_LOCK:
            _LIVE_GROUPS.discard(proc.pid)
        if cgroup is not None:
            cgroup.kill_all()
    reader.join(10)
    if channel is not None:
        channel.join()
    if getattr(proc, "lost", None) is not None:
        proc.lost()  # a forked child whose server died under it: raises, its verdicts are unknown
    code = proc.returncode
    sig = signal.Signals(-code).name if code is not None and code < 0 else None
    return RunResult(
        returncode=code,
        output=sink.get("text", ""),
        timed_out=timed_out,
        wall_seconds=time.monotonic() - start,
        output_truncated=sink.get("total", 0) > limits.max_output_bytes,
        signal_name=sig,
        records=channel.records if channel else [],
        forged_records=channel.forged if channel else 0,
    )


# ------------------------------------------------------------------------------------------ the worker's sandbox
#: The only kit files a worker sees: what it needs to load a root and answer the judge (no tests, no reference).
#: The kit's files a sandbox holds (relative to grader/): the package marker and the sandboxed side, no more.
SANDBOXED_FILES = ("__init__.py", "sandboxed")
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc/alternatives", "/etc/fonts")
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/localtime", "/etc/nsswitch.conf", "/etc/mime.types")
SANDBOX_UID = 65534
#: The unprivileged user of the "user" engine (created by the Gradescope setup.sh).
SANDBOX_USER = "ca15-worker"


class Interrupted(Exception):
    """The grader was told to stop (:data:`SHUTDOWN`) while this run was starting or running."""


class Command(NamedTuple):
    """How to start one sandboxed run: its argv, working folder, environment, the host account the process
    switches to before exec (``None``: the grader's own), whether it gets a private network namespace
    itself, and the descriptors it must inherit (bubblewrap's seccomp filter)."""

    argv: list[str]
    cwd: str
    env: dict
    drop_to: tuple[int, int] | None
    unshare_net: bool
    fds: tuple[int, ...] = ()
    #: the run's own uid under the "user" engine: released (its processes killed) by :meth:`finish`
    account: RunAccount | None = None
    #: install the seccomp filter in the child itself (the "user" engine; bubblewrap loads it from ``fds``)
    seccomp: bool = False

    def close(self) -> None:
        """Close the descriptors the child inherited (call once it has started)."""
        for fd in self.fds:
            os.close(fd)

    def finish(self) -> None:
        """After the run: kill whatever its account still runs and free the account (call once it ended)."""
        if self.account is not None:
            self.account.release()


class SandboxUnavailable(RuntimeError):
    """bubblewrap cannot start here; the message says why and how to fix it."""


@dataclass(frozen=True)
class WorkerSandbox:
    """How the judge starts workers: ``engine`` "bwrap" (bubblewrap), "user" (the dedicated unprivileged user
    ``user``, by default ``ca15-worker``, for containers without namespaces: Gradescope) or "none" (rlimits
    only, unsandboxed). ``user`` matters to the "user" engine only; the kit's own test of that engine names an
    existing account (``nobody``) instead of creating one.

    Each worker gets a fresh folder under ``scratch``: its own writable copy of the implementation root
    (``/submission`` inside) and its own ``/tmp``; the system, the interpreter and the virtualenv are
    read-only; no kit checkout, no other submission, no output folder; its own PID, IPC, UTS, user and
    network namespaces (loopback only); a new session; uid 65534 inside; dies with the judge.
    """

    engine: str
    python: str
    scratch: str
    limits: Limits = field(default_factory=Limits)
    user: str = SANDBOX_USER

    def to_json(self) -> str:
        """The spec a judge reads (``--worker-sandbox``), with :meth:`probed`: the judge adopts what this process
        found out about the host instead of probing again."""
        return json.dumps({"engine": self.engine, "python": self.python, "scratch": self.scratch,
                           "limits": self.limits.__dict__, "user": self.user, "probed": self.probed()})  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> WorkerSandbox:
        """The sandbox :meth:`to_json` wrote; its ``probed`` facts become this process's (:func:`adopt_probes`)."""
        data = json.loads(text)
        sandbox = cls(engine=data["engine"], python=data["python"], scratch=data["scratch"],
                      limits=Limits(**data["limits"]), user=data.get("user", SANDBOX_USER))  # fmt: skip
        if "probed" in data:
            adopt_probes(sandbox.python, data["probed"])
        return sandbox

    def probed(self) -> dict:
        """The host probes :meth:`command` reads for this engine, made here (once per process, cached):
        ``netns`` (:func:`network_namespaces_work`), and ``nobody`` (``python`` imports torch as nobody), ``bwrap_as``
        (:func:`host_account`) or ``per_run`` (:func:`per_run_accounts_work`). Each judge would otherwise make
        them again: the torch import as another account alone costs about 2 CPU-seconds per judge."""
        facts: dict = {"netns": network_namespaces_work()}
        if self.engine == "bwrap":
            account = host_account(self.python)
            facts["bwrap_as"] = list(account) if account else None
        elif self.engine == "user":
            facts["per_run"] = per_run_accounts_work(self.python)
        else:
            facts["nobody"] = can_drop_privileges(self.python)
        return facts

    def facts(self) -> dict:
        """What isolates a worker here, for the staff-visible record of every grading (results.json's
        ``extra_data.grader.judge.sandbox``, the hidden "Grader environment" row, the gradebook's ``sandbox``
        column): the engine, and which limits are really in force on this host. A False is a limit this host
        could not apply, so that a course grading without it knows."""
        netns = self.engine == "bwrap" or network_namespaces_work()
        return {
            "engine": self.engine,
            "engine_version": bwrap_version() if self.engine == "bwrap" else None,
            "account": f"uid {SANDBOX_UID} in a user namespace" if self.engine == "bwrap" else (
                self._user_account() if self.engine == "user" else ("nobody" if can_drop_privileges(self.python) else "the grader's own")),
            # the host account the sandbox's uid maps to: "root" means a kernel bug reached inside is host root
            "host_account": _host_account_name(self.engine, self.python, self.user),
            "user_namespaces_inside": self.engine == "bwrap" and "--disable-userns" not in bwrap_options(),
            "memory_mib_per_process": self.limits.memory_bytes >> 20,
            "cpu_seconds": self.limits.cpu_seconds,
            "wall_seconds": self.limits.wall_seconds,
            "pids_cgroup": "pids" in RunCgroup.controllers(),
            "memory_cgroup": "memory" in RunCgroup.controllers(),
            "pid_namespace": self.engine == "bwrap",
            "network_namespace": netns,
            "mount_namespace": self.engine == "bwrap",
            "seccomp": self.engine in ("bwrap", "user"),
        }  # fmt: skip

    def _user_account(self) -> str:
        """The "user" engine's accounts in words: a uid of its own per run, or the one shared account."""
        if per_run_accounts_work(self.python):
            uids = run_uids()
            return f"a uid of its own per run ({uids[0]}-{uids[-1]})"
        return f"user {self.user}, shared by every run"

    def summary(self, facts: dict | None = None) -> str:
        """:meth:`facts` (or the ``facts`` already read) in one line: ``bwrap 0.8.0 as uid 65534 ... (host account
        nobody): memory 3072 MiB per process, CPU 3600 s; network namespace yes, ...``."""
        f = facts or self.facts()
        yes = {True: "yes", False: "NO"}
        name = f"{f['engine']} {f['engine_version']}" if f["engine_version"] else f["engine"]
        return (f"{name} as {f['account']} (host account {f['host_account']}): memory {f['memory_mib_per_process']} MiB per process, CPU "
                f"{f['cpu_seconds']} s; network namespace {yes[f['network_namespace']]}, pid namespace "
                f"{yes[f['pid_namespace']]}, pids cgroup {yes[f['pids_cgroup']]}, memory cgroup {yes[f['memory_cgroup']]}, "
                f"seccomp {yes[f['seccomp']]}")  # fmt: skip

    def describe(self) -> str:
        if self.engine == "bwrap" and _host_account_name(self.engine, self.python, self.user) == "root":
            return (f"bubblewrap {bwrap_version()} started as root: uid {SANDBOX_UID} inside maps to host root, because "
                    f"'nobody' cannot run {self.python} here (install the kit's venv where others can read it); "
                    "namespaces, seccomp and resource limits as usual")  # fmt: skip
        if self.engine == "bwrap":
            return (f"bubblewrap {bwrap_version()} ({shutil.which('bwrap')}): uid {SANDBOX_UID} inside; user, pid, "
                    "ipc, uts, network (loopback only) and mount namespaces; read-only system and interpreter; "
                    f"memory {self.limits.memory_bytes >> 20} MiB, CPU {self.limits.cpu_seconds} s")  # fmt: skip
        if self.engine == "user":
            return (f"{self._user_account()} (no namespaces here): the kit is readable by root only; seccomp, "
                    "resource limits, a private network namespace where allowed; every process of a run's uid is "
                    "killed when it ends")  # fmt: skip
        return "unsandboxed (--no-sandbox): resource limits only; the worker shares this machine's file system"

    def stage(self, root: Path) -> Path:
        """A fresh folder for one sandboxed run: ``submission/`` (a copy of the folder ``root``), ``tmp/``
        (the run's /tmp where the engine has no tmpfs), ``out/`` (what the run hands back to the grader) and
        ``opt/grader/`` holding only the kit's sandboxed side (:data:`SANDBOXED_FILES`)."""
        base = Path(tempfile.mkdtemp(prefix="run-", dir=self.scratch))
        (base / "tmp").mkdir()
        (base / "out").mkdir()
        shutil.copytree(root, base / "submission", symlinks=False, ignore=shutil.ignore_patterns("__pycache__"))
        kit = base / "opt" / "grader"
        kit.mkdir(parents=True)
        package = Path(__file__).resolve().parents[1]
        for name in SANDBOXED_FILES:
            if (package / name).is_dir():
                shutil.copytree(package / name, kit / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(package / name, kit / name)
        return base

    def command(self, base: Path, tail: Callable[[str, str, str], list[str]], writable: bool = False,
                extra_env: dict[str, str] | None = None) -> Command:
        """How to run ``tail(submission_dir, tmp_dir, out_dir)`` on ``base`` (:class:`Command`). Under
        bubblewrap the submission is read-only unless ``writable`` (a notebook writes beside itself), and /tmp
        and /dev/shm are size-limited tmpfs (:attr:`Limits.tmp_bytes`, :attr:`Limits.shm_bytes`)."""
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "MPLBACKEND": "Agg",
               "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1",
               "PYTHONHASHSEED": "0", "LANG": "C.UTF-8", "PYTHONPATH": "/opt/ca15", **(extra_env or {})}  # fmt: skip
        if self.engine == "bwrap":
            account = host_account(self.python)
            if account:  # bubblewrap starts unprivileged: the sandbox's uid maps to that account, never root
                os.chmod(self.scratch, 0o711)
                _chown_tree(base, account)
            fd = seccomp_fd()
            argv = [*bwrap_argv(self.python, base, env, seccomp=fd, unprivileged=account is not None,
                                limits=self.limits, writable=writable), *tail("/submission", "/tmp", "/out")]
            return Command(argv, "/", {}, account, False, (fd,))
        tmp = str(base / "tmp")
        env.update(HOME=tmp, TMPDIR=tmp, PYTHONPATH=str(base / "opt"))
        account: RunAccount | None = None
        if self.engine == "user":  # Gradescope without namespaces: an unprivileged uid of its own per run
            if per_run_accounts_work(self.python):
                account = RunAccount()
                drop: tuple[int, int] | None = account.ids
            else:  # the one account setup.sh makes (ca15-worker), shared by every run
                import pwd

                entry = pwd.getpwnam(self.user)
                drop = (entry.pw_uid, entry.pw_gid)
            env.update(USER="ca15-run", LOGNAME="ca15-run")
        else:
            drop = NOBODY if can_drop_privileges(self.python) else None
        if drop:
            _chown_tree(base, drop)
        return Command(tail(str(base / "submission"), tmp, str(base / "out")), tmp, env, drop,
                       network_namespaces_work(), account=account, seccomp=self.engine == "user")  # fmt: skip

    def launch(self, root: Path, read_fd: int, write_fd: int) -> subprocess.Popen:
        """Start one worker on a fresh copy of ``root``; the returned process cleans up after itself."""
        from grader.judge.remote import worker_argv

        base = self.stage(root)
        cmd = self.command(base, lambda sub, tmp, out: worker_argv(self.python, sub, read_fd, write_fd))
        cgroup = RunCgroup(self.limits.max_processes, self.limits.memory_bytes) if RunCgroup.available() else None
        try:
            proc = subprocess.Popen(cmd.argv, cwd=cmd.cwd, env=cmd.env, pass_fds=(read_fd, write_fd, *cmd.fds),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    preexec_fn=_preexec(self.limits, cmd.drop_to, cmd.unshare_net, cgroup,
                                                        cmd.seccomp))  # fmt: skip
        except BaseException:
            cmd.finish()
            raise
        finally:
            cmd.close()

        def cleanup() -> None:
            if cgroup is not None:
                cgroup.kill_all()
            cmd.finish()
            shutil.rmtree(base, ignore_errors=True)

        proc.ca15_cleanup = cleanup  # type: ignore[attr-defined]
        return proc


def bwrap_argv(python: str, base: Path, env: dict[str, str], seccomp: int | None = None,
               unprivileged: bool = False, limits: Limits | None = None, writable: bool = False) -> list[str]:
    """bubblewrap's command line for a worker whose folder is ``base`` (``submission``, ``tmp``, ``opt``).

    Every namespace (a new user namespace whatever the caller is), no capability, and, where this bubblewrap
    has them, ``--disable-userns`` (no user namespace can be made inside) and the seccomp filter read from
    descriptor ``seccomp`` (:data:`WORKER_DENY`: no namespace, mount, io_uring, keyctl, bpf, ptrace, ...)."""
    import sys

    argv = ["bwrap", "--unshare-all", "--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
            "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--clearenv"]  # fmt: skip
    if "--disable-userns" in bwrap_options():
        argv.append("--disable-userns")
    if seccomp is not None:
        argv += ["--seccomp", str(seccomp)]
    for key, value in env.items():
        argv += ["--setenv", key, value]
    for path in SYSTEM_DIRS:
        if Path(path).is_dir():
            argv += ["--ro-bind", path, path]
    for path in SYSTEM_FILES:
        if Path(path).is_file():
            argv += ["--ro-bind", path, path]
    limits = limits or Limits()
    argv += ["--proc", "/proc", "--dev", "/dev",
             "--perms", "1777", "--size", str(limits.shm_bytes), "--tmpfs", "/dev/shm",
             "--bind" if writable else "--ro-bind", str(base / "submission"), "/submission",
             "--perms", "1777", "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp",
             "--bind", str(base / "out"), "/out",
             "--ro-bind", str(base / "opt"), "/opt/ca15", "--chdir", "/tmp"]  # fmt: skip
    # The interpreter and the venv last: they may live under /tmp (a kit cloned there), above the private /tmp.
    prefixes = {str(Path(sys.base_prefix).resolve()), sys.prefix, str(Path(python).parent.parent),
                str(Path(python).resolve().parent.parent)}  # fmt: skip
    for prefix in sorted(p for p in prefixes if not p.startswith("/usr/") and p != "/usr"):
        # started unprivileged, bubblewrap can bind only what others may reach (the grader's own interpreter
        # under /root is not needed by a worker interpreter that lives elsewhere)
        if Path(prefix).is_dir() and (not unprivileged or others_can_read(Path(prefix))):
            argv += ["--ro-bind", prefix, prefix]
    return argv


@functools.cache
def bwrap_version() -> str:
    try:
        out = subprocess.run(["bwrap", "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return out.strip().removeprefix("bubblewrap ").strip() or "?"


def _host_account_name(engine: str, python: str, user: str) -> str:
    """Who the sandboxed process is on the host: the account's name, or ``root``."""
    import pwd

    if engine == "user":
        return "the run's own uid" if per_run_accounts_work(python) else user
    uid = os.geteuid()
    if engine == "bwrap" and uid == 0:
        account = host_account(python)
        uid = account[0] if account else 0
    elif engine == "none" and uid == 0 and can_drop_privileges(python):
        uid = NOBODY[0]
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def others_can_read(path: Path) -> bool:
    """Whether an account with no special rights can reach ``path``: every folder above it searchable by
    others, and the path itself readable by others."""
    path = path.resolve()
    for folder in reversed(path.parents):
        if not os.stat(folder).st_mode & 0o001:
            return False
    return bool(os.stat(path).st_mode & 0o004)


def check_kit_private(kit: Path) -> None:
    """The "user" engine hides the kit's hidden tests and any reference solution from submissions by file modes
    alone: raise :class:`SandboxUnavailable` naming the first of them that another account can read."""
    for path in (kit / "tests" / "hidden", kit / "reference"):
        if path.exists() and others_can_read(path):
            raise SandboxUnavailable(
                f"the user engine keeps the kit from submissions by file modes only, and {path} is readable by "
                f"other accounts, so every submission could read it. Make the kit root-only, as Gradescope's "
                f"setup.sh does: chmod -R go-rwx {kit}   (or grade with bubblewrap, which shows workers no kit)")


_BWRAP_OPTIONS: str | None = None


def bwrap_options() -> str:
    """bubblewrap's ``--help`` text (read once), to know which options this version has."""
    global _BWRAP_OPTIONS
    if _BWRAP_OPTIONS is None:
        try:
            _BWRAP_OPTIONS = subprocess.run(["bwrap", "--help"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            _BWRAP_OPTIONS = ""
    return _BWRAP_OPTIONS


def _worker_deny() -> tuple[str, ...]:
    """What a worker may not do, on top of bubblewrap's namespaces (grader/judge/seccomp.py)."""
    from grader.judge.seccomp import DENY_KERNEL_SURFACE, DENY_MOUNTS, DENY_NAMESPACES

    return DENY_NAMESPACES + DENY_MOUNTS + DENY_KERNEL_SURFACE


def seccomp_fd() -> int:
    """A fresh descriptor holding the workers' seccomp program, at offset 0 (bubblewrap reads it once)."""
    from grader.judge.seccomp import program

    fd = os.memfd_create("ca15-seccomp", 0)
    os.write(fd, program(_worker_deny()))
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


_HOST_ACCOUNT: dict[str, tuple[int, int] | None] = {}


def host_account(python: str) -> tuple[int, int] | None:
    """The account bubblewrap is started as, when the grader is root: ``nobody``, so that the sandbox's uid
    maps to an unprivileged host account (never to host root), where ``nobody`` can run ``python`` (with
    torch) and start bubblewrap; ``None`` (bubblewrap as root) where it cannot, which :meth:`WorkerSandbox.facts`
    reports. A grader that is not root starts bubblewrap as itself (``None``): that is already unprivileged."""
    if os.geteuid() != 0:
        return None
    if python not in _HOST_ACCOUNT:
        _HOST_ACCOUNT[python] = NOBODY if can_drop_privileges(python) and _bwrap_starts(python, NOBODY) else None
    return _HOST_ACCOUNT[python]


def _chown_tree(folder: Path, account: tuple[int, int]) -> None:
    """Give ``folder`` and everything in it to ``account`` (the account the sandboxed run is)."""
    for p in [folder, *folder.rglob("*")]:
        os.chown(p, *account, follow_symlinks=False)


def _trial_sandbox(python: str, code: str, account: tuple[int, int] | None = None) -> subprocess.CompletedProcess:
    """``python -c code`` in a throw-away worker sandbox (seccomp included), bubblewrap started as ``account``
    (``None``: as this process). Raises OSError or TimeoutExpired where bubblewrap cannot even run."""
    with tempfile.TemporaryDirectory(prefix="ca15-bwrap-check-") as tmp:
        base = Path(tmp)
        for sub in ("submission", "tmp", "out", "opt"):
            (base / sub).mkdir()
        if account:
            os.chmod(base, 0o755)
            _chown_tree(base, account)
        fd = seccomp_fd()
        argv = [*bwrap_argv(python, base, {"PATH": "/usr/bin:/bin"}, seccomp=fd, unprivileged=account is not None),
                python, "-c", code]  # fmt: skip
        drop = (lambda: (os.setgroups([]), os.setgid(account[1]), os.setuid(account[0]))) if account else None
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=60, pass_fds=(fd,), cwd="/",
                                  preexec_fn=drop)  # fmt: skip
        finally:
            os.close(fd)


def _bwrap_starts(python: str, account: tuple[int, int]) -> bool:
    try:
        proc = _trial_sandbox(python, "print(1)", account)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and proc.stdout.strip() == "1"


def check_bwrap(python: str) -> None:
    """Start a throw-away sandbox that imports nothing; raise :class:`SandboxUnavailable` saying how to fix it."""
    if shutil.which("bwrap") is None:
        raise SandboxUnavailable(
            "bubblewrap (bwrap) is not installed, and the grader runs submission code only inside it.\n"
            "  Install it: sudo apt-get install bubblewrap   (Debian/Ubuntu; Fedora: dnf install bubblewrap)\n"
            "  or grade without a sandbox, knowingly: ca15-grade --no-sandbox ... (results are marked unsandboxed)"
        )
    try:
        proc = _trial_sandbox(python, "import os; print(os.getuid())")
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxUnavailable(f"bubblewrap could not start a sandbox: {exc}") from exc
    if proc.returncode != 0 or proc.stdout.strip() != str(SANDBOX_UID):
        raise SandboxUnavailable(f"bubblewrap could not start a sandbox here (exit {proc.returncode}): "
                                 f"{proc.stderr.strip()[:500]}\n{bwrap_advice(proc.stderr)}")


#: bubblewrap's error where the container masks parts of /proc (Docker's and Podman's default).
MASKED_PROC = "Can't mount proc"


def bwrap_advice(stderr: str) -> str:
    """What really helps when bubblewrap failed with ``stderr``.

    A masked ``/proc`` (Docker and Podman overmount /proc/kcore, /proc/keys, ... by default) makes the kernel
    refuse a fresh procfs in a new pid namespace ("mount too revealing"): containers/bubblewrap#284 and #505.
    Unconfining seccomp does not change that; unmasking /proc does. Refused namespaces are the other cause.
    """
    fallback = ("  Or grade without a sandbox, knowingly: ca15-grade --no-sandbox ... (results are marked "
                "unsandboxed); on Gradescope, run_autograder falls back to the ca15-worker user engine by itself.")
    if MASKED_PROC in stderr:
        return ("  The container masks parts of /proc (Docker's and Podman's default), so the kernel refuses the "
                "fresh /proc of a new pid namespace (containers/bubblewrap#284, #505); seccomp=unconfined does "
                "not help. Start the container with /proc unmasked: docker run --security-opt "
                "systempaths=unconfined (Docker 19.03+), podman run --security-opt unmask=ALL, or --privileged.\n"
                + fallback)
    return ("  It needs user namespaces: sudo sysctl -w kernel.unprivileged_userns_clone=1 (Debian), "
            "kernel.apparmor_restrict_unprivileged_userns=0 (Ubuntu 24.04), or run the grader as root; in a "
            "container, allow them (docker run --security-opt seccomp=unconfined, or a seccomp profile that allows "
            "clone/unshare with CLONE_NEWUSER) and, as Docker masks /proc, --security-opt systempaths=unconfined.\n"
            + fallback)
