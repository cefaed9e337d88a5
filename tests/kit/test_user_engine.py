"""The grader's "user" sandbox engine, Gradescope's fallback where the container allows no namespaces: every
run (worker, notebook) gets an unprivileged uid of its own on the machine's own file system, and only the
kit's mode keeps the kit from it (setup.sh: ``chmod -R go-rwx /autograder/source``).

The fallback account, where per-run uids cannot work, is ``nobody`` here (``GradeConfig.sandbox_user``,
``$CA15_SANDBOX_USER``), not ``ca15-worker``: a test creates no system account. ``nobody`` (like any
unprivileged uid) cannot start the kit's own interpreter where it
lives in a private home folder (pyenv under /root), so the tests grade with a throw-away venv of the system's
CPython of the same version, made in a world-readable folder under /var/tmp, whose ``.pth`` file puts the
kit venv's site-packages on its path. Where that cannot work (not root, no such system Python, or ``nobody``
cannot import the kit's packages with it) the tests skip and say why.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from grader.pipeline.grade import grade_one
from grader.judge.sandbox import run_uids
from grader.pipeline.gradescope import build
from tests.kit.test_grader import _config, _submission, kit  # noqa: F401 - kit: the miniature kit fixture

USER = "nobody"

pytestmark = pytest.mark.timeout(300)


def _as_user(uid: int, gid: int):
    return lambda: (os.setgroups([]), os.setgid(gid), os.setuid(uid))


def _system_python() -> str | None:
    """A system CPython of this interpreter's major.minor version (outside any home folder), or None."""
    version = "%d.%d" % sys.version_info[:2]
    for folder in ("/usr/bin", "/usr/local/bin"):
        candidate = Path(folder) / f"python{version}"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[Path, str]]:
    """A world-readable folder under /var/tmp and, in it, a venv that ``nobody`` runs with the kit's packages."""
    if os.geteuid() != 0:
        pytest.skip("the user engine drops the worker to another account: the grader must run as root")
    try:
        entry = pwd.getpwnam(USER)
    except KeyError:
        pytest.skip(f"no account {USER!r} on this machine")
    system = _system_python()
    if system is None:
        pytest.skip(f"no system python{sys.version_info[0]}.{sys.version_info[1]} in /usr/bin or "
                    f"/usr/local/bin that {USER} could run (the kit's interpreter is {sys.executable})")  # fmt: skip
    kit_packages = sysconfig.get_paths()["purelib"]
    folder = Path(tempfile.mkdtemp(prefix="ca15-user-engine-", dir="/var/tmp"))
    try:
        folder.chmod(0o755)
        venv = folder / "venv"
        made = subprocess.run([system, "-m", "venv", "--without-pip", str(venv)], capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        if made.returncode != 0:
            pytest.skip(f"{system} -m venv failed: {made.stderr.strip()[-500:]}")
        python = str(venv / "bin" / "python")
        purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 capture_output=True, text=True, timeout=60).stdout.strip()  # fmt: skip
        Path(purelib, "ca15-kit-venv.pth").write_text(kit_packages + "\n")
        probe = subprocess.run([python, "-c", "import numpy, pytest, os; print(os.geteuid())"],
                               capture_output=True, text=True, timeout=120, cwd="/",
                               preexec_fn=_as_user(entry.pw_uid, entry.pw_gid))  # fmt: skip
        if probe.returncode != 0 or probe.stdout.strip() != str(entry.pw_uid):
            pytest.skip(f"{USER} cannot import the kit's packages with {system} and {kit_packages}: "
                        f"{probe.stderr.strip()[-500:]}")  # fmt: skip
        yield folder, python
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _snoop(uids: range, hidden: Path, kit_dir: Path) -> str:
    """A ``double`` that is right only when it runs as a uid of ``uids`` (the runs' own), sees the kit's
    world-readable parent folder, and is refused (PermissionError, nothing else) both the hidden test file and
    the kit folder's listing."""
    return f"""
import os
def double(x):
    if os.getuid() != os.geteuid() or os.geteuid() not in range({uids.start}, {uids.stop}):
        return "RAN AS UID %d" % os.geteuid()
    if {kit_dir.name!r} not in os.listdir({str(kit_dir.parent)!r}):
        return "THE KIT IS NOT WHERE THE PROBE LOOKS"
    for path in ({str(hidden)!r}, {str(kit_dir)!r}):
        try:
            text = open(path).read() if path.endswith(".py") else str(os.listdir(path))
            raise ValueError("READ THE KIT: " + text)
        except PermissionError:
            pass
    return 2 * x
"""


def test_user_engine_runs_the_submission_as_the_user_and_keeps_the_root_only_kit_from_it(
    kit: Path, shared: tuple[Path, str], tmp_path: Path  # noqa: F811 - kit is the imported fixture
) -> None:
    """With the "user" engine the submission runs as a uid of its own, scores 4/4, and can neither read nor list
    the kit."""
    folder, python = shared
    private = folder / "ca15-kit"
    shutil.copytree(kit, private, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["chmod", "-R", "a+rX", str(private)], check=True)  # readable by all, as a fresh checkout
    subprocess.run(["chmod", "-R", "go-rwx", str(private)], check=True)  # then root-only, as setup.sh makes it
    hidden = private / "tests" / "hidden" / "test_double_hidden.py"
    assert hidden.is_file()
    sub = _submission(tmp_path / "alice", _snoop(run_uids(), hidden, private))
    out = tmp_path / "out"
    out.mkdir()
    grade_one(sub, out, _config(private, python=python, sandbox="user", sandbox_user=USER, workspace_root=folder))
    results = json.loads((out / "alice" / "results.json").read_text())
    assert results["score"] == 4 and len(results["tests"]) == 4, results  # 3 tests and the staff-only row
    assert "READ THE KIT" not in json.dumps(results)
    uids = run_uids()
    assert f"worker sandbox: a uid of its own per run ({uids[0]}-{uids[-1]}) (no namespaces here)" in (
        out / "alice" / "log.txt").read_text()


def test_run_autograder_with_the_user_engine_keeps_the_kit_from_the_worker(
    kit: Path, shared: tuple[Path, str], tmp_path: Path  # noqa: F811 - kit is the imported fixture
) -> None:
    """run_autograder with CA15_SANDBOX=user and a root-only source folder grades 4/4; the worker reads no kit."""
    folder, python = shared
    root = folder / "autograder"
    zipfile.ZipFile(build(tmp_path / "autograder.zip", kit=kit)).extractall(root / "source")  # world-readable
    (root / "source" / "run_autograder").chmod(0o755)
    subprocess.run(["chmod", "-R", "go-rwx", str(root / "source")], check=True)  # as setup.sh does
    hidden = root / "source" / "ca15-kit" / "tests" / "hidden" / "test_double_hidden.py"
    assert hidden.is_file()
    _submission(root / "submission", _snoop(run_uids(), hidden, root / "source"))
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "CA15_PYTHON": python, "CA15_SANDBOX": "user",
           "CA15_SANDBOX_USER": USER, "TMPDIR": str(folder)}  # fmt: skip
    proc = subprocess.run([str(root / "source" / "run_autograder")], env=env, capture_output=True, text=True,
                          timeout=280)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((root / "results" / "results.json").read_text())
    assert results["score"] == 4 and len(results["tests"]) == 5, results  # 3 tests, the notebook (0), the staff row
    staff = results["tests"][-1]
    assert staff["visibility"] == "hidden" and "user as a uid of its own per run" in staff["output"], staff
    assert "seccomp yes" in staff["output"], staff
    assert results["extra_data"]["grader"]["sandbox"]["engine"] == "user"
    assert "READ THE KIT" not in json.dumps(results)


def test_user_engine_runs_the_notebook_as_its_own_account(kit: Path, shared: tuple[Path, str], tmp_path: Path) -> None:  # noqa: F811
    """The notebook runs as a uid of its own (of the runs' range, not root) and earns its point: 5/5."""
    folder, python = shared
    uids = run_uids()
    private = folder / "ca15-kit-nb"
    shutil.copytree(kit, private, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["chmod", "-R", "go-rwx", str(private)], check=True)  # root-only, as setup.sh makes it
    code = f"import os\ndef double(x):\n    return 2 * x if os.geteuid() in range({uids.start}, {uids.stop}) else -1\n"
    sub = _submission(tmp_path / "dora", code, ["print('the student cell')"])  # the kit's cell runs: double(21)
    out = tmp_path / "out"
    out.mkdir()
    config = _config(private, python=python, sandbox="user", sandbox_user=USER, workspace_root=folder,
                     run_notebook=True)  # fmt: skip
    grade_one(sub, out, config)
    results = json.loads((out / "dora" / "results.json").read_text())
    assert results["score"] == 5, (out / "dora" / "log.txt").read_text()[-3000:]
    assert "42" in (out / "dora" / "notebook.ipynb").read_text()  # double gives 42 only as a run's own uid


_NEIGHBOUR = """
import os, sys
pid = int(sys.argv[1])
report = []
try:
    os.kill(pid, 0)
    report.append("signalled")
except PermissionError:
    report.append("no-signal")
for path in (sys.argv[2], f"/proc/{pid}/environ"):
    try:
        os.listdir(path) if os.path.isdir(path) else open(path, "rb").read()
        report.append("read")
    except PermissionError:
        report.append("no-read")
print(os.getuid(), " ".join(report))
"""


def test_each_run_of_the_user_engine_has_its_own_uid_and_nothing_outlives_it(shared: tuple[Path, str]) -> None:
    """Two runs at once get two uids: neither can signal the other or read its folder; when a run ends, its
    daemon (own session) is killed and its file in /dev/shm removed."""
    from grader.judge.sandbox import Limits, WorkerSandbox, processes_of, run_limited

    folder, python = shared
    scratch = Path(tempfile.mkdtemp(prefix="ws-", dir=folder))
    scratch.chmod(0o711)
    sandbox = WorkerSandbox(engine="user", python=python, scratch=str(scratch), user=USER)
    daemon = ("import os, sys, time\nopen('/dev/shm/ca15-left-' + str(os.getuid()), 'w').write('x')\n"
              "if os.fork() == 0:\n    os.setsid()\n    time.sleep(120)\n    os._exit(0)\n"
              "print(os.getpid(), flush=True)\ntime.sleep(120)\n")  # fmt: skip
    empty = Path(tempfile.mkdtemp(prefix="root-", dir=folder))  # the "submission" each run gets a copy of
    base_a = sandbox.stage(empty)
    a = sandbox.command(base_a, lambda sub, tmp, out: [python, "-c", daemon])
    proc = subprocess.Popen(a.argv, cwd=a.cwd, env=a.env, stdout=subprocess.PIPE, text=True,
                            preexec_fn=_as_user(*a.drop_to))  # fmt: skip
    try:
        pid = int(proc.stdout.readline())
        base_b = sandbox.stage(empty)
        b = sandbox.command(base_b, lambda sub, tmp, out: [python, "-c", _NEIGHBOUR, str(pid), str(base_a)])
        try:
            seen = run_limited(b.argv, cwd=Path(b.cwd), env=b.env, limits=Limits(wall_seconds=60),
                               drop_to=b.drop_to, seccomp=b.seccomp)  # fmt: skip
        finally:
            b.finish()
        assert a.drop_to != b.drop_to and a.drop_to[0] != 0
        assert seen.output.split() == [str(b.drop_to[0]), "no-signal", "no-read", "no-read"], seen.output
        assert len(processes_of(a.drop_to[0])) == 2  # the run and its daemon, before the run ends
    finally:
        a.finish()
        proc.wait(timeout=30)
    assert processes_of(a.drop_to[0]) == []
    assert not Path(f"/dev/shm/ca15-left-{a.drop_to[0]}").exists()


def test_user_engine_refuses_a_kit_that_others_can_read(kit: Path, shared: tuple[Path, str], tmp_path: Path) -> None:  # noqa: F811
    """A batch with the user engine and a kit whose hidden tests others can read stops before grading,
    saying which folder and the chmod that fixes it."""
    from grader.pipeline.grade import grade_batch
    from grader.judge.sandbox import SandboxUnavailable

    folder, python = shared
    readable = folder / "ca15-kit-readable"
    shutil.copytree(kit, readable, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["chmod", "-R", "a+rX", str(readable)], check=True)
    sub = _submission(tmp_path / "erin", "def double(x):\n    return 2 * x\n")
    with pytest.raises(SandboxUnavailable, match=r"tests/hidden is readable by other accounts.*chmod -R go-rwx"):
        grade_batch([sub], tmp_path / "out", _config(readable, python=python, sandbox="user", sandbox_user=USER,
                                                     workspace_root=folder))  # fmt: skip
    assert not (tmp_path / "out" / "erin").exists()
