"""Warm judges: a fork server that imports the judge's heavy modules once and forks each judge from there.

A judge started fresh (``python -m pytest`` with the graded tests) spends about 2.4 CPU-seconds importing before
its first test, 1.5 of them in ``import torch``; a judge forked from an interpreter that has imported torch,
numpy and pytest starts with them in memory (about 0.5 CPU-seconds to its first test). The grader starts one
fork server per interpreter and start-up environment, the first time a judge needs it, and keeps it until it
exits itself.

The fork server is the grader's own code, started by the grader; it hears only from the grader (a socket
pair nothing else holds) and never imports a submission. Each judge it forks then does what a fresh child of
:func:`grader.judge.sandbox.run_limited` does before its program (:func:`grader.judge.limits.child_setup`:
its own session, the run's cgroups, no network, the run's rlimits, death with its parent) and runs
``python -m pytest ARGS`` as Python would: the working folder first on ``sys.path``, then ``PYTHONPATH``; the
run's whole environment; standard input from /dev/null, standard output and error into the run's output
pipe, the passed descriptors at their numbers and no other descriptor; no module of the grader's own (the
judge imports the kit it grades with, as a fresh process does); and at its end the interpreter's own exit
steps (threads joined, ``atexit`` functions, streams flushed) before its status goes back.

What a fork cannot change is fixed when the server starts (hash seed, thread counts, bytecode writing,
locale: every variable Python or torch reads at start-up), so a server only forks for runs whose environment,
outside :data:`LATE_ENV`, is its own; any other environment gets a server of its own.

Protocol (a SOCK_SEQPACKET socket pair: one JSON message per datagram, descriptors as SCM_RIGHTS):
    server -> grader  {"ready": [modules imported]}   once, after the imports ({"unavailable": why} instead
                                                      where it cannot reap its judges: then judges start fresh)
    grader -> server  {"id", "args", "cwd", "env", "limits", "cgroups", "unshare_net", "fds"}
                      with descriptors: the output pipe's write end, then one for each number in "fds"
    server -> grader  {"id", "pid"} or {"id", "error"}
    server -> grader  {"pid", "status"}               the judge's wait status, once it has exited
When the grader's end closes (the grader exited), the server kills every judge it forked and exits.
"""

from __future__ import annotations

import atexit
import dataclasses
import importlib
import itertools
import json
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from grader.judge.limits import Limits, child_setup, kill_session

#: Imported by the server before it forks: what every judge imports, and what costs the most to import.
WARM_MODULES = ("numpy", "torch", "pytest")
#: Environment variables a judge's run may set differently from its server's (applied after the fork): the
#: run's own folders and report channel, and ``PYTHONPATH`` (the server puts it on ``sys.path`` as Python would).
LATE_ENV = frozenset({"PYTHONPATH", "HOME", "TMPDIR", "HYPOTHESIS_STORAGE_DIRECTORY",
                      "CA15_REPORT_FD", "CA15_REPORT_KEY", "CA15_REPORT_KEY_FD"})  # fmt: skip
#: Seconds the grader waits for a new server's imports, then for each fork, before it starts judges fresh.
READY_SECONDS = 300.0
FORK_SECONDS = 60.0
#: Largest message either side sends (a run's arguments and environment).
MESSAGE_BYTES = 1 << 20
_REPO = Path(__file__).resolve().parents[2]
# the server's interpreter: sys.path as Python made it (its first entry, -c's "", left out), then the grader's
_BOOT = ("import sys; base = sys.path[1:]; sys.path.insert(0, sys.argv[1]); "
         "from grader.judge.forkserver import serve; serve(int(sys.argv[2]), base)")  # fmt: skip


class ForkServerLost(RuntimeError):
    """The fork server stopped while a judge it forked was running: that judge's verdicts are not known."""


# ------------------------------------------------------------------------------------------ the grader's side
class ForkedJudge:
    """A judge the fork server forked, as much of :class:`subprocess.Popen` as :func:`run_limited` uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.stdout = None  # the output pipe's read end (set by :func:`spawn`)
        self._lost = False
        self._done = threading.Event()

    def wait(self, timeout: float | None = None) -> int | None:
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(f"judge {self.pid}", timeout)
        return self.returncode

    def lost(self) -> None:
        """Raise :class:`ForkServerLost` when the server died before it could report this judge's exit."""
        if self._lost:
            raise ForkServerLost(f"the fork server stopped while judge {self.pid} ran: its verdicts are unknown")

    def _exited(self, status: int) -> None:
        self.returncode = os.waitstatus_to_exitcode(status)
        self._done.set()

    def _lose(self) -> None:
        self._lost = True
        self._done.set()


class ForkServer:
    """The grader's handle on one fork server (:func:`server_for` finds or starts it)."""

    def __init__(self, python: str, startup_env: dict[str, str]) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [python, "-c", _BOOT, str(_REPO), str(theirs.fileno())],
                env={**startup_env, "HOME": "/nonexistent"}, cwd="/", pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C of the grader's terminal stops the judges, not their server
            )  # fmt: skip
        finally:
            theirs.close()
        self.sock = ours
        self._ids = itertools.count(1)
        self._send = threading.Lock()
        self._replies: dict[int, dict] = {}
        self._replied = threading.Condition()
        self._judges: dict[int, ForkedJudge] = {}
        self._abandoned: set[int] = set()  # requests whose launch gave up waiting (a late fork is killed at once)
        self.alive = True
        ours.settimeout(READY_SECONDS)
        try:
            ready = json.loads(ours.recv(MESSAGE_BYTES) or b"null")
        except (OSError, ValueError):
            ready = None
        ours.settimeout(None)
        if not isinstance(ready, dict) or "ready" not in ready:
            self.close()
            raise OSError(f"the fork server of {python} did not start")
        self.warm = ready["ready"]
        threading.Thread(target=self._listen, daemon=True, name="ca15-forkserver").start()

    def launch(self, args: Sequence[str], *, cwd: Path, env: dict[str, str], limits: Limits,
               cgroups: Sequence[str], unshare_net: bool, out_fd: int, pass_fds: Sequence[int]) -> ForkedJudge:
        """Fork a judge running ``python -m pytest *args``; raises OSError when the server cannot."""
        request = {"args": list(args), "cwd": str(cwd), "env": env, "limits": dataclasses.asdict(limits),
                   "cgroups": list(cgroups), "unshare_net": unshare_net, "fds": list(pass_fds)}  # fmt: skip
        with self._send:
            request["id"] = rid = next(self._ids)
            socket.send_fds(self.sock, [json.dumps(request).encode()], [out_fd, *pass_fds])
        deadline = time.monotonic() + FORK_SECONDS
        with self._replied:
            while rid not in self._replies and self.alive and time.monotonic() < deadline:
                self._replied.wait(1.0)
            reply = self._replies.pop(rid, None)
            if reply is None:
                self._abandoned.add(rid)  # the run starts fresh instead: a judge forked now must not run too
        if reply is None or "judge" not in reply:
            raise OSError(f"the fork server could not start a judge: {(reply or {}).get('error', 'no answer')}")
        return reply["judge"]

    def _listen(self) -> None:
        """Replies go to the launch that waits for them; statuses to their judges."""
        while True:
            try:
                data = self.sock.recv(MESSAGE_BYTES)
            except OSError:
                data = b""
            if not data:
                break
            message = json.loads(data)
            if "status" in message:
                judge = self._judges.pop(message["pid"], None)
                if judge is not None:
                    judge._exited(message["status"])
                continue
            with self._replied:
                if message["id"] in self._abandoned:
                    self._abandoned.discard(message["id"])
                    if "pid" in message:
                        kill_session(message["pid"])
                    continue
                if "pid" in message:  # registered before the launch sees it: the status can only come after
                    message["judge"] = self._judges[message["pid"]] = ForkedJudge(message["pid"])
                self._replies[message["id"]] = message
                self._replied.notify_all()
        with self._replied:
            self.alive = False
            self._replied.notify_all()
        for judge in list(self._judges.values()):
            judge._lose()

    def close(self, wait: float = 10.0) -> None:
        """Close the grader's end (the server then kills its judges and exits) and reap the server."""
        self.alive = False
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # the listening thread's recv holds the socket: close alone waits
        except OSError:
            pass
        try:
            self.sock.close()
        finally:
            try:
                self.proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


_SERVERS: dict[tuple, ForkServer | None] = {}
_SERVERS_LOCK = threading.Lock()


def server_for(python: str, env: dict[str, str]) -> ForkServer | None:
    """The fork server for judges of ``python`` with environment ``env`` (started the first time), or None
    when none can start (then judges start fresh, as before); one that died is started again."""
    startup = {k: v for k, v in env.items() if k not in LATE_ENV}
    key = (python, tuple(sorted(startup.items())))
    with _SERVERS_LOCK:
        if key in _SERVERS and (_SERVERS[key] is None or _SERVERS[key].alive):
            return _SERVERS[key]
        try:
            _SERVERS[key] = ForkServer(python, startup)
        except OSError:
            _SERVERS[key] = None  # never tried again in this process: judges start fresh
        return _SERVERS[key]


@atexit.register
def close_servers() -> None:
    """Stop every fork server this process started, and reap them (their CPU time counts as ours)."""
    with _SERVERS_LOCK:
        servers = [s for s in _SERVERS.values() if s is not None]
        _SERVERS.clear()
    for server in servers:
        server.close()


def spawn(cmd: Sequence[str], *, cwd: Path, env: dict[str, str], limits: Limits, unshare_net: bool,
          cgroups: Sequence[str], pass_fds: Sequence[int]) -> ForkedJudge | None:
    """``cmd`` (``PYTHON -m pytest ...``) forked by the fork server of PYTHON, or None when none can serve it
    (then :func:`grader.judge.sandbox.run_limited`, which calls this, starts it as a fresh process)."""
    if list(cmd[1:3]) != ["-m", "pytest"]:
        return None
    server = server_for(cmd[0], env)
    if server is None:
        return None
    read_fd, write_fd = os.pipe()
    try:
        judge = server.launch(cmd[3:], cwd=cwd, env=env, limits=limits, cgroups=cgroups, unshare_net=unshare_net,
                              out_fd=write_fd, pass_fds=pass_fds)  # fmt: skip
    except OSError:
        os.close(read_fd)
        return None
    finally:
        os.close(write_fd)
    judge.stdout = os.fdopen(read_fd, "rb")
    return judge


# ------------------------------------------------------------------------------------------ the server's side
def serve(fd: int, base_path: list[str]) -> None:
    """The fork server's loop (``fd``: its end of the socket pair; ``base_path``: ``sys.path`` without the
    entries of ``-c`` and ``PYTHONPATH``)."""
    sock = socket.socket(fileno=fd)
    try:  # a container's seccomp profile may refuse pidfds (Docker before 20.10): then judges start fresh
        os.close(os.pidfd_open(os.getpid()))
    except (OSError, AttributeError) as exc:
        sock.send(json.dumps({"unavailable": f"pidfd_open: {exc}"}).encode())
        return
    warm = []
    for name in WARM_MODULES:
        try:
            importlib.import_module(name)
            warm.append(name)
        except Exception:  # noqa: BLE001 - a module this interpreter lacks is imported by the judge, or not
            pass
    sock.send(json.dumps({"ready": warm}).encode())
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ, None)  # and each judge's pidfd, its pid as the key's data
    while True:
        for key, _ in selector.select():
            if key.data is not None:  # a judge exited
                pid = key.data
                selector.unregister(key.fd)
                os.close(key.fd)
                _, status = os.waitpid(pid, 0)
                sock.send(json.dumps({"pid": pid, "status": status}).encode())
                continue
            try:
                data, fds, flags, _ = socket.recv_fds(sock, MESSAGE_BYTES, 64)
            except OSError:
                data, fds, flags = b"", [], 0
            if not data:  # the grader is gone: so are its judges
                for judge in selector.get_map().values():
                    if judge.data is not None:
                        kill_session(judge.data)
                os._exit(0)
            request = json.loads(data)
            try:
                if flags & socket.MSG_TRUNC or len(fds) != 1 + len(request["fds"]):
                    raise ValueError("a request arrived cut short")
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
            except (OSError, ValueError, KeyError, TypeError) as exc:
                for f in fds:
                    os.close(f)
                sock.send(json.dumps({"id": request["id"], "error": f"{type(exc).__name__}: {exc}"}).encode())
                continue
            if pid == 0:
                _judge(request, fds, base_path, os.getppid())  # never returns
            for f in fds:
                os.close(f)
            try:
                pidfd = os.pidfd_open(pid)
            except OSError as exc:  # never a judge this loop cannot reap: it dies, the run starts fresh
                kill_session(pid)
                os.waitpid(pid, 0)
                sock.send(json.dumps({"id": request["id"], "error": f"pidfd_open: {exc}"}).encode())
                continue
            selector.register(pidfd, selectors.EVENT_READ, pid)
            sock.send(json.dumps({"id": request["id"], "pid": pid}).encode())


def _judge(request: dict, fds: list[int], base_path: list[str], server: int) -> None:
    """In the forked child: become the run's judge, run pytest, exit as Python would. Never returns."""
    try:  # in subprocess's order: descriptors, working folder, then the rest of the set-up
        _place_descriptors(fds, request["fds"])
        os.chdir(request["cwd"])
        child_setup(Limits(**request["limits"]), parent=server, cgroups=request["cgroups"],
                    unshare_net=request["unshare_net"])  # fmt: skip
        os.environ.clear()
        os.environ.update(request["env"])
        pythonpath = [p for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
        sys.path[:] = [os.getcwd(), *pythonpath, *base_path]  # as `python -m` makes it
        for name in [m for m in sys.modules if m == "grader" or m.startswith("grader.")]:
            del sys.modules[name]  # the judge imports the grader of the kit it grades with
        importlib.invalidate_caches()
        _fresh_state()
    except BaseException:  # noqa: BLE001 - nothing of the run may start half set up
        import traceback

        traceback.print_exc()
        _exit(125)
    sys.argv = ["-m", *request["args"]]
    code = 0
    try:
        import runpy

        runpy._run_module_as_main("pytest", alter_argv=True)  # what `python -m pytest` runs
    except SystemExit as exc:
        code = _exit_status(exc.code)
    except BaseException:  # noqa: BLE001 - as the interpreter: the traceback on stderr, status 1
        sys.excepthook(*sys.exc_info())
        code = 1
    _exit(code)


def _place_descriptors(fds: list[int], numbers: list[int]) -> None:
    """Standard input from /dev/null, standard output and error into ``fds[0]``, ``fds[1:]`` at ``numbers``;
    every other descriptor closed (the server's socket, its other judges' pidfds)."""
    targets = {0: os.open(os.devnull, os.O_RDONLY), 1: fds[0], 2: fds[0], **dict(zip(numbers, fds[1:]))}
    high = max(targets) + 1
    moved = {n: _dup_above(f, high) for n, f in targets.items()}  # copies above every target, then into place
    for number, fd in moved.items():
        os.dup2(fd, number, inheritable=True)
    keep = set(targets)
    for name in os.listdir("/proc/self/fd"):
        if int(name) not in keep:
            try:
                os.close(int(name))
            except OSError:
                pass


def _dup_above(fd: int, low: int) -> int:
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, low)


def _fresh_state() -> None:
    """What a fresh interpreter would not share with its siblings: the temporary folder (TMPDIR is read
    again), numpy's global generator (seeded from the OS, as at its import); and the name ``ps -o comm`` shows."""
    import tempfile

    tempfile.tempdir = None
    if "numpy.random" in sys.modules:  # numpy loads it on first use: a server that did would share its state
        sys.modules["numpy.random"].seed()
    try:
        import ctypes

        ctypes.CDLL(None).prctl(15, b"ca15-judge", 0, 0, 0)  # PR_SET_NAME: `ps -o comm` tells judges apart
    except (OSError, AttributeError):
        pass


def _exit_status(code: object) -> int:
    """The status ``SystemExit(code)`` gives a Python process."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _exit(code: int) -> None:
    """The interpreter's exit steps (non-daemon threads joined, atexit functions run, streams flushed), then
    the status ``code``."""
    for step in (threading._shutdown, atexit._run_exitfuncs):  # type: ignore[attr-defined]
        try:
            step()
        except BaseException:  # noqa: BLE001
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001
            pass
    os._exit(code)
