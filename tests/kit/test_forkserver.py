"""Warm judges (grader/judge/forkserver.py): a judge forked from the fork server is the judge a fresh
``python -m pytest`` would be (environment, paths, descriptors, limits, session, exit status, output, report
channel), costs no import of torch, and neither it nor its server outlives the grader."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from textwrap import dedent

import pytest

from grader.judge import forkserver
from grader.judge.sandbox import Limits, ReportChannel, RunCgroup, run_limited
from tests.kit.procs import processes_under

REPO = Path(__file__).resolve().parents[2]

PROBE = dedent(
    """\
    import json, os, resource, sys, tempfile

    def test_facts():
        import grader, numpy
        print("FACTS" + json.dumps({
            "env": dict(os.environ), "cwd": os.getcwd(), "path": sys.path[:4], "argv0": sys.argv[0],
            "fds": sorted(int(f) for f in os.listdir("/proc/self/fd")), "stdin": os.readlink("/proc/self/fd/0"),
            "grader": grader.__file__, "tmp": tempfile.gettempdir(), "session_leader": os.getsid(0) == os.getpid(),
            "limits": [resource.getrlimit(r)[0] for r in (resource.RLIMIT_AS, resource.RLIMIT_CPU,
                       resource.RLIMIT_NOFILE, resource.RLIMIT_FSIZE, resource.RLIMIT_CORE)],
            "cgroup": sorted(l.split(":", 2)[2].rsplit("/", 1)[-1].startswith("ca15-")
                             for l in open("/proc/self/cgroup").read().splitlines() if "pids" in l.split(":")[1]),
            "seed": int(numpy.random.randint(2**31)), "torch_loaded": "torch" in sys.modules,
            "main": sys.modules["__main__"].__file__,
        }))
    """
)


def _kit(tmp_path: Path) -> Path:
    """A folder for PYTHONPATH holding a ``grader`` package of its own, and the probe test."""
    kit = tmp_path / "kit"
    (kit / "grader").mkdir(parents=True)
    (kit / "grader" / "__init__.py").write_text("")
    (kit / "test_probe.py").write_text(PROBE)
    return kit


def _env(home: Path, kit: Path, **extra: str) -> dict[str, str]:
    home.mkdir(exist_ok=True)
    return {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHONPATH": str(kit), "HOME": str(home),
            "TMPDIR": str(home), "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "LANG": "C.UTF-8", **extra}  # fmt: skip


def _run(kit: Path, home: Path, warm: bool, test: str = "test_probe.py", wall: float = 120, env: dict | None = None,
         channel: ReportChannel | None = None, extra: tuple[str, ...] = ()):
    limits = Limits(wall_seconds=wall, cpu_seconds=300, memory_bytes=8 * 2**30, max_open_files=512)
    cmd = [sys.executable, "-m", "pytest", str(kit / test), "-q", "-s", "-p", "no:cacheprovider", "-p", "no:xdist",
           "-p", "no:randomly", *extra]  # fmt: skip
    return run_limited(cmd, cwd=home, env=env or _env(home, kit), limits=limits, channel=channel,
                       spawn=forkserver.spawn if warm else None)


def _facts(output: str) -> dict:
    line = next(line for line in output.splitlines() if line.startswith("FACTS"))
    return json.loads(line[len("FACTS"):])


def test_a_forked_judge_sees_what_a_fresh_one_sees(tmp_path: Path) -> None:
    """Environment, sys.path, argv[0], descriptors, stdin, grader package, temporary folder, session, rlimits
    and cgroup of a forked judge equal a fresh one's; only the forked one has torch imported already."""
    kit = _kit(tmp_path)
    cold, warm = _run(kit, tmp_path / "cold", warm=False), _run(kit, tmp_path / "warm", warm=True)
    assert cold.returncode == warm.returncode == 0, (cold.output, warm.output)
    a, b = _facts(cold.output), _facts(warm.output)
    assert b["torch_loaded"] and not a["torch_loaded"], "the judge was not forked from the warm server"
    home = {"cold": str(tmp_path / "cold"), "warm": str(tmp_path / "warm")}
    for facts, name in ((a, "cold"), (b, "warm")):
        assert facts["cwd"] == facts["tmp"] == facts["env"]["HOME"] == home[name]
        assert home[name] in facts["path"] and str(kit) in facts["path"]
        assert facts["grader"] == str(kit / "grader" / "__init__.py")
        assert facts["stdin"] == "/dev/null" and facts["session_leader"]
        assert facts["limits"] == [8 * 2**30, 300, 512, Limits().max_file_bytes, 0]
        assert facts["cgroup"] == [True] if RunCgroup.available() else True not in facts["cgroup"]
        facts["env"] = {k: v.replace(home[name], "HOME") for k, v in facts["env"].items()}
        facts["path"] = [p.replace(home[name], "HOME") for p in facts["path"]]
    for key in ("env", "path", "fds", "argv0", "main"):
        assert a[key] == b[key], key


def test_two_forked_judges_draw_different_numpy_global_seeds(tmp_path: Path) -> None:
    """numpy's global generator is seeded afresh in each forked judge, as in a fresh process."""
    kit = _kit(tmp_path)
    seeds = {_facts(_run(kit, tmp_path / f"h{i}", warm=True).output)["seed"] for i in range(2)}
    assert len(seeds) == 2


@pytest.mark.parametrize("body, status", [
    ("def test_fails():\n    assert False\n", 1),
    ("import os, signal\ndef test_killed():\n    os.kill(os.getpid(), signal.SIGKILL)\n", -signal.SIGKILL),
    ("x = 1\n", 5),  # no test collected
])  # fmt: skip
def test_a_forked_judge_exits_with_the_status_a_fresh_one_has(tmp_path: Path, body: str, status: int) -> None:
    """pytest's exit status, or the signal that killed the judge, reaches the grader unchanged."""
    kit = _kit(tmp_path)
    (kit / "test_status.py").write_text(body)
    for warm in (False, True):
        run = _run(kit, tmp_path / f"home-{warm}", warm=warm, test="test_status.py")
        assert run.returncode == status, (warm, run.output[-2000:])
        assert run.signal_name == ("SIGKILL" if status < 0 else None)


def test_a_forked_judge_runs_the_exit_steps_and_its_output_is_captured(tmp_path: Path) -> None:
    """atexit functions run and buffered output is flushed before a forked judge's status goes back."""
    kit = _kit(tmp_path)
    (kit / "test_exit.py").write_text(dedent(f"""\
        import atexit, sys
        def test_registers():
            atexit.register(lambda: open({str(tmp_path / 'atexit-ran')!r}, "w").close())
            sys.stdout.write("buffered-tail-" * 3)
            sys.stderr.write("to-stderr")
        """))  # fmt: skip
    run = _run(kit, tmp_path / "home", warm=True, test="test_exit.py")
    assert run.returncode == 0 and (tmp_path / "atexit-ran").exists()
    assert "buffered-tail-buffered-tail-buffered-tail-" in run.output and "to-stderr" in run.output


def test_the_wall_limit_kills_a_forked_judge_and_everything_in_its_session(tmp_path: Path) -> None:
    """At the wall-clock limit the judge and a child it started are killed; the run says it timed out."""
    kit = _kit(tmp_path)
    pidfile = tmp_path / "child.pid"
    (kit / "test_hang.py").write_text(dedent(f"""\
        import subprocess, time
        def test_hangs():
            child = subprocess.Popen(["sleep", "300"])
            open({str(pidfile)!r}, "w").write(str(child.pid))
            time.sleep(300)
        """))  # fmt: skip
    run = _run(kit, tmp_path / "home", warm=True, test="test_hang.py", wall=6)
    assert run.timed_out and run.signal_name == "SIGKILL"
    assert not _alive(int(pidfile.read_text()))


def test_the_report_channel_of_a_forked_judge_carries_the_same_signed_records(tmp_path: Path) -> None:
    """The kit's report plugin in a forked judge sends the records a fresh judge sends, signed with the run's key."""
    kit = _kit(tmp_path)
    records = {}
    for warm in (False, True):
        channel = ReportChannel()
        home = tmp_path / f"home-{warm}"
        run = _run(kit, home, warm=warm, env=_env(home, REPO), channel=channel,
                   extra=("-p", "grader.judge.pytest_report"))  # fmt: skip
        assert run.returncode == 0, run.output[-2000:]
        records[warm] = [{k: v for k, v in r.items() if k not in ("duration", "seconds")} for r in channel.records]
    assert records[True] == records[False] and any(r.get("type") == "test" for r in records[True])


def test_another_startup_environment_gets_a_server_of_its_own(tmp_path: Path) -> None:
    """A run whose hash seed differs from a server's is never forked from it: its own server starts."""
    kit = _kit(tmp_path)
    tag = uuid.uuid4().hex
    env0 = _env(tmp_path / "h0", kit, CA15_TEST_TAG=tag)
    env1 = _env(tmp_path / "h1", kit, CA15_TEST_TAG=tag, PYTHONHASHSEED="1")
    first, second = forkserver.server_for(sys.executable, env0), forkserver.server_for(sys.executable, env1)
    assert first is not None and second is not None and first is not second
    assert first.warm == list(forkserver.WARM_MODULES)  # each imported torch, numpy and pytest before its forks
    assert forkserver.server_for(sys.executable, {**env0, "HOME": "/elsewhere", "TMPDIR": "/x"}) is first
    for server in (first, second):
        server.close()


def test_a_server_that_cannot_start_leaves_judges_to_start_fresh(tmp_path: Path, monkeypatch) -> None:
    """When no fork server starts, a warm run starts its judge as a fresh process and still runs."""
    kit = _kit(tmp_path)
    monkeypatch.setattr(forkserver, "_BOOT", "raise SystemExit(3)")
    env = _env(tmp_path / "home", kit, CA15_TEST_TAG=uuid.uuid4().hex)
    assert forkserver.server_for(sys.executable, env) is None
    run = _run(kit, tmp_path / "home", warm=True, env=env)
    assert run.returncode == 0 and not _facts(run.output)["torch_loaded"]


#: A fork server whose pidfd_open fails (as under a seccomp profile that refuses it): from the start, or from
#: its first fork on.
NO_PIDFD = ("import os, sys; base = sys.path[1:]; sys.path.insert(0, sys.argv[1])\n"
            "calls = []\n"
            "def refused(pid, flags=0):\n"
            "    calls.append(pid)\n"
            "    if len(calls) > FIRST_OK:\n"
            "        raise PermissionError(1, 'Operation not permitted')\n"
            "    return real(pid, flags)\n"
            "real, os.pidfd_open = os.pidfd_open, refused\n"
            "from grader.judge.forkserver import serve; serve(int(sys.argv[2]), base)\n")  # fmt: skip


@pytest.mark.parametrize("first_ok", [0, 1], ids=["at_start", "at_each_fork"])
def test_a_server_that_cannot_reap_its_judges_leaves_them_to_start_fresh(tmp_path: Path, monkeypatch,
                                                                         first_ok: int) -> None:
    """pidfd_open refused (at the server's start, or for a fork): the run starts its judge fresh and completes."""
    kit = _kit(tmp_path)
    monkeypatch.setattr(forkserver, "_BOOT", NO_PIDFD.replace("FIRST_OK", str(first_ok)))
    env = _env(tmp_path / "home", kit, CA15_TEST_TAG=uuid.uuid4().hex)
    server = forkserver.server_for(sys.executable, env)
    assert (server is None) == (first_ok == 0)
    run = _run(kit, tmp_path / "home", warm=True, env=env)
    assert run.returncode == 0 and not _facts(run.output)["torch_loaded"]
    assert processes_under(tmp_path / "home") == []
    if server is not None:
        assert server.alive, "the server stopped instead of refusing that one fork"
        server.close()


def test_a_server_lost_while_its_judge_runs_fails_the_run_loudly(tmp_path: Path) -> None:
    """The fork server killed under a running judge: the run raises ForkServerLost (no verdicts), the judge dies."""
    kit = _kit(tmp_path)
    started = tmp_path / "started"
    (kit / "test_slow.py").write_text(f"import time\ndef test_slow():\n    open({str(started)!r}, 'w').close()\n"
                                      "    time.sleep(300)\n")  # fmt: skip
    env = _env(tmp_path / "home", kit, CA15_TEST_TAG=uuid.uuid4().hex)
    server = forkserver.server_for(sys.executable, env)

    def kill_when_started() -> None:
        deadline = time.monotonic() + 50
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        os.kill(server.proc.pid, signal.SIGKILL)

    threading.Thread(target=kill_when_started, daemon=True).start()
    with pytest.raises(forkserver.ForkServerLost):
        _run(kit, tmp_path / "home", warm=True, test="test_slow.py", env=env, wall=60)
    server.proc.wait(10)


def test_neither_server_nor_judge_outlives_a_killed_grader(tmp_path: Path) -> None:
    """SIGKILL to the grader process: its fork server and the judge it forked are gone within seconds."""
    kit = _kit(tmp_path)
    (kit / "test_slow.py").write_text("import os, time\ndef test_slow():\n"
                                      f"    open({str(tmp_path / 'judge.pid')!r}, 'w').write(str(os.getpid()))\n"
                                      "    time.sleep(300)\n")  # fmt: skip
    script = dedent(f"""\
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from pathlib import Path
        from grader.judge import forkserver
        from tests.kit.test_forkserver import _env, _run
        kit, home = Path({str(kit)!r}), Path({str(tmp_path / 'home')!r})
        server = forkserver.server_for(sys.executable, _env(home, kit))
        open({str(tmp_path / 'server.pid')!r}, "w").write(str(server.proc.pid))
        _run(kit, home, warm=True, test="test_slow.py")
        """)  # fmt: skip
    grader = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    deadline = time.monotonic() + 120
    while not (tmp_path / "judge.pid").exists() and time.monotonic() < deadline and grader.poll() is None:
        time.sleep(0.2)
    assert (tmp_path / "judge.pid").exists(), "the judge never started"
    grader.kill()
    grader.wait()
    pids = [int((tmp_path / name).read_text()) for name in ("server.pid", "judge.pid")]
    deadline = time.monotonic() + 20
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in pids), "the fork server or its judge outlived the grader"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_judge_forked_after_its_launch_gave_up_is_killed(tmp_path: Path, monkeypatch) -> None:
    """A launch that stops waiting for the fork (the run then starts fresh) leaves no forked judge running."""
    kit = _kit(tmp_path)
    (kit / "test_slow.py").write_text("import time\ndef test_slow():\n    time.sleep(300)\n")
    home = tmp_path / "home"
    env = _env(home, kit, CA15_TEST_TAG=uuid.uuid4().hex)
    server = forkserver.server_for(sys.executable, env)
    monkeypatch.setattr(forkserver, "FORK_SECONDS", 0.0)
    read_fd, write_fd = os.pipe()
    try:
        with pytest.raises(OSError, match="could not start a judge"):
            server.launch(["-q", str(kit / "test_slow.py")], cwd=home, env=env, limits=Limits(), cgroups=[],
                          unshare_net=False, out_fd=write_fd, pass_fds=[])  # fmt: skip
    finally:
        os.close(read_fd)
        os.close(write_fd)
    deadline = time.monotonic() + 20
    while (server._abandoned or processes_under(home)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not server._abandoned and processes_under(home) == [], "a judge forked too late is still running"
    server.close()


def test_a_judge_stopped_before_it_made_its_session_is_killed(tmp_path: Path, monkeypatch) -> None:
    """The grader told to stop while a judge is just forked (no session of its own yet): the run kills it."""
    from grader.judge import sandbox

    monkeypatch.setattr(sandbox, "SHUTDOWN", threading.Event())  # this test's own stop, not the process's

    def spawn(cmd, **_):
        child = subprocess.Popen(["sleep", "300"], stdout=subprocess.PIPE)  # still in our session, as a fresh fork
        sandbox.SHUTDOWN.set()  # the stop arrives now
        return child

    run = run_limited(["true"], cwd=tmp_path, env={}, limits=Limits(wall_seconds=60), spawn=spawn)
    assert run.signal_name == "SIGKILL" and not run.timed_out, run  # killed at the stop, not at the wall limit
