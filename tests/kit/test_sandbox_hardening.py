"""The bubblewrap sandbox, hardened (issue 22, item 6): started as an unprivileged host account when the grader is
root, so that the sandbox's uid never maps to host root; no user namespace, mount, io_uring, keyctl, bpf or
ptrace inside (seccomp and --disable-userns); and, where the host cannot, the grader says so.

The unprivileged start needs an interpreter that ``nobody`` can run: the tests use the world-readable venv of
tests/kit/test_user_engine.py (``shared``), and skip where it cannot be made.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

from grader.judge.sandbox import NOBODY, Limits, WorkerSandbox, _preexec, check_bwrap, host_account, others_can_read
from tests.kit.test_user_engine import shared  # noqa: F401 - the world-readable venv fixture

REPO = Path(__file__).resolve().parents[2]


def _start(python: str, scratch: Path, code: str) -> subprocess.Popen:
    """``python -c code`` in a worker sandbox on a copy of the reference, started as the grader would."""
    sandbox = WorkerSandbox("bwrap", python, str(scratch))
    base = sandbox.stage(REPO / "reference")
    cmd = sandbox.command(base, lambda sub, tmp, out: [python, "-c", code])
    try:
        return subprocess.Popen(cmd.argv, cwd=cmd.cwd, env=cmd.env, pass_fds=cmd.fds, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                preexec_fn=_preexec(sandbox.limits, cmd.drop_to, cmd.unshare_net, None))  # fmt: skip
    finally:
        cmd.close()


@pytest.fixture
def unprivileged(shared: tuple[Path, str]) -> tuple[Path, str]:  # noqa: F811 - shared is the imported fixture
    folder, python = shared
    try:
        check_bwrap(python)
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"bubblewrap cannot start here: {exc}")
    if host_account(python) != NOBODY:
        pytest.skip("nobody cannot start bubblewrap with the shared venv here (unprivileged user namespaces off?)")
    return folder, python


def test_a_root_grader_starts_bubblewrap_as_nobody_so_no_sandboxed_process_is_host_root(unprivileged) -> None:
    """Every process of the sandbox (bubblewrap and the worker) runs as host nobody, seen from the host."""
    folder, python = unprivileged
    proc = _start(python, Path(tempfile.mkdtemp(dir=folder)), "import time; print('up', flush=True); time.sleep(30)")
    try:
        assert proc.stdout.readline().strip() == "up", proc.stderr.read() if proc.poll() is not None else ""
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        uids = {(p.name(), p.uids().real, p.uids().effective, p.uids().saved) for p in tree}
        assert len(tree) >= 2 and all(u[1:] == (NOBODY[0],) * 3 for u in uids), uids
    finally:
        proc.kill()
        proc.wait()


PROBE = r"""
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
def result(rc):
    return "ok" if rc != -1 else errno.errorcode[ctypes.get_errno()]
print("unshare-user", result(libc.unshare(0x10000000)))
print("unshare-mount", result(libc.unshare(0x00020000)))
print("unshare-net", result(libc.unshare(0x40000000)))
print("mount-tmpfs", result(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)))
print("io_uring", result(libc.syscall(425, 1, 0)))
print("keyctl", result(libc.syscall(250, 0, 0, 0, 0, 0)))
print("ptrace", result(libc.syscall(101, 0, 0, 0, 0)))
pid = os.fork()  # what a worker needs still works: fork, threads, exec
if pid == 0:
    os._exit(7)
print("fork", os.waitpid(pid, 0)[1] >> 8)
import subprocess, threading
t = threading.Thread(target=print, args=("thread", "ok")); t.start(); t.join()
print("exec", subprocess.run(["true"]).returncode)
"""
ALLOWED = {"fork": "7", "thread": "ok", "exec": "0"}


@pytest.mark.parametrize("who", ["unprivileged", "grader's interpreter"])
def test_inside_the_sandbox_namespaces_mounts_io_uring_keyctl_and_ptrace_fail(who: str, request) -> None:
    """From inside a worker sandbox (started either way) each of these calls fails with EPERM, while fork,
    threads and exec still work."""
    import platform

    if platform.machine() != "x86_64":
        pytest.skip("the probe uses x86_64 system call numbers")
    if who == "unprivileged":
        folder, python = request.getfixturevalue("unprivileged")
        scratch = Path(tempfile.mkdtemp(dir=folder))
    else:
        python, scratch = sys.executable, Path(tempfile.mkdtemp(prefix="ca15-hardening-"))  # others may enter /tmp
        request.addfinalizer(lambda: shutil.rmtree(scratch, ignore_errors=True))
        try:
            check_bwrap(python)
        except Exception as exc:  # noqa: BLE001
            pytest.skip(f"bubblewrap cannot start here: {exc}")
    proc = _start(python, scratch, PROBE)
    out, err = proc.communicate(timeout=60)
    seen = dict(line.split(" ", 1) for line in out.splitlines())
    denied = {k: v for k, v in seen.items() if k not in ALLOWED}
    assert len(denied) == 7 and set(denied.values()) == {"EPERM"}, (seen, err[-1000:])
    assert {k: seen.get(k) for k in ALLOWED} == ALLOWED, (seen, err[-1000:])


def test_a_grader_interpreter_that_nobody_can_read_is_reported_as_host_root(tmp_path: Path) -> None:
    """Where nobody cannot run the interpreter (a venv under /root), bubblewrap starts as root, and says so."""
    import os

    if os.geteuid() != 0:
        pytest.skip("an unprivileged grader starts bubblewrap as itself: never root")
    if others_can_read(Path(sys.executable).resolve().parent.parent):
        pytest.skip(f"{sys.executable} is readable by others here: the root fallback does not happen")
    sandbox = WorkerSandbox("bwrap", sys.executable, str(tmp_path))
    assert sandbox.facts()["host_account"] == "root"
    assert "host account root" in sandbox.summary() and "maps to host root" in sandbox.describe()


def test_others_can_read_follows_every_folder_above(tmp_path: Path) -> None:
    """A system file is in reach of others; a readable file under a folder only its owner can search is not."""
    assert others_can_read(Path("/usr/bin/env"))
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "f").write_text("x")
    (private / "f").chmod(0o644)
    assert not others_can_read(private / "f")


def _no_probe(*args, **kwargs):
    raise AssertionError(f"a host probe ran although the spec carried its result: {args[0] if args else kwargs}")


@pytest.mark.parametrize("engine, probed, expect", [
    ("bwrap", {"netns": True, "bwrap_as": [65534, 65534]}, {"host_account": NOBODY}),
    ("bwrap", {"netns": True, "bwrap_as": None}, {"host_account": None}),
    ("user", {"netns": False, "per_run": True}, {"per_run": True}),
    ("none", {"netns": True, "nobody": False}, {"nobody": False}),
])  # fmt: skip
def test_a_judge_takes_the_host_probes_from_its_spec_and_probes_nothing(monkeypatch, engine, probed, expect) -> None:
    """from_json adopts the spec's probe results: host_account, per-run uids and nobody answer from them, no probe."""
    import grader.judge.sandbox as sandbox

    monkeypatch.setattr(sandbox, "_RUNS_AS", {})
    monkeypatch.setattr(sandbox, "_HOST_ACCOUNT", {})
    monkeypatch.setattr(sandbox, "_NETNS_OK", None)
    monkeypatch.setattr(sandbox.subprocess, "run", _no_probe)
    monkeypatch.setattr(sandbox, "_trial_sandbox", _no_probe)
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 0)
    spec = {"engine": engine, "python": "/opt/judge/python", "scratch": "/tmp", "user": "nobody",
            "limits": Limits().__dict__, "probed": probed}  # fmt: skip
    WorkerSandbox.from_json(json.dumps(spec))
    assert sandbox.network_namespaces_work() is probed["netns"]
    if "host_account" in expect:
        assert sandbox.host_account("/opt/judge/python") == expect["host_account"]
    if "per_run" in expect:
        assert sandbox.per_run_accounts_work("/opt/judge/python") is expect["per_run"]
    if "nobody" in expect:
        assert sandbox.can_drop_privileges("/opt/judge/python") is expect["nobody"]


def test_the_spec_carries_what_this_process_probed(monkeypatch) -> None:
    """to_json writes this process's probe results for the engine, which a reader adopts unchanged."""
    import grader.judge.sandbox as sandbox

    monkeypatch.setattr(sandbox, "_HOST_ACCOUNT", {"/opt/judge/python": NOBODY})
    monkeypatch.setattr(sandbox, "_NETNS_OK", False)
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 0)
    data = json.loads(WorkerSandbox("bwrap", "/opt/judge/python", "/tmp").to_json())
    assert data["probed"] == {"netns": False, "bwrap_as": list(NOBODY)}


def test_a_spec_whose_probes_are_not_a_dict_is_refused() -> None:
    """A malformed ``probed`` entry is a ValueError naming it, the expected dict and what was there."""
    spec = {"engine": "bwrap", "python": "p", "scratch": "/tmp", "limits": Limits().__dict__,
            "probed": [True]}  # fmt: skip
    with pytest.raises(ValueError, match=r"probed: expected a dict of host probes, got list"):
        WorkerSandbox.from_json(json.dumps(spec))
