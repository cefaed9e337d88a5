"""The grader's "user" sandbox engine, Gradescope's fallback where the container allows no namespaces: every
worker runs as an unprivileged account on the machine's own file system, and only the kit's mode keeps the
kit from it (setup.sh: ``chmod -R go-rwx /autograder/source``).

Here the engine runs its workers as ``nobody`` (``GradeConfig.sandbox_user``, ``$CA15_SANDBOX_USER``), not as
``ca15-worker``: a test creates no system account. ``nobody`` cannot start the kit's own interpreter where it
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

from grader.grade import grade_one
from grader.gradescope import build
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


def _snoop(uid: int, hidden: Path, kit_dir: Path) -> str:
    """A ``double`` that is right only when it runs as ``uid``, sees the kit's world-readable parent folder,
    and is refused (PermissionError, nothing else) both the hidden test file and the kit folder's listing."""
    return f"""
import os
def double(x):
    if (os.getuid(), os.geteuid()) != ({uid}, {uid}):
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
    """With the "user" engine the submission runs as nobody, scores 4/4, and can neither read nor list the kit."""
    folder, python = shared
    private = folder / "ca15-kit"
    shutil.copytree(kit, private, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["chmod", "-R", "a+rX", str(private)], check=True)  # readable by all, as a fresh checkout
    subprocess.run(["chmod", "-R", "go-rwx", str(private)], check=True)  # then root-only, as setup.sh makes it
    hidden = private / "tests" / "hidden" / "test_double_hidden.py"
    assert hidden.is_file()
    sub = _submission(tmp_path / "alice", _snoop(pwd.getpwnam(USER).pw_uid, hidden, private))
    out = tmp_path / "out"
    out.mkdir()
    grade_one(sub, out, _config(private, python=python, sandbox="user", sandbox_user=USER, workspace_root=folder))
    results = json.loads((out / "alice" / "results.json").read_text())
    assert results["score"] == 4 and len(results["tests"]) == 4, results  # 3 tests and the staff-only row
    assert "READ THE KIT" not in json.dumps(results)
    assert f"worker sandbox: user {USER} (no namespaces here)" in (out / "alice" / "log.txt").read_text()


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
    _submission(root / "submission", _snoop(pwd.getpwnam(USER).pw_uid, hidden, root / "source"))
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "CA15_PYTHON": python, "CA15_SANDBOX": "user",
           "CA15_SANDBOX_USER": USER, "TMPDIR": str(folder)}  # fmt: skip
    proc = subprocess.run([str(root / "source" / "run_autograder")], env=env, capture_output=True, text=True,
                          timeout=280)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((root / "results" / "results.json").read_text())
    assert results["score"] == 4 and len(results["tests"]) == 5, results  # 3 tests, the notebook (0), the staff row
    staff = results["tests"][-1]
    assert staff["visibility"] == "hidden" and "user as nobody" in staff["output"] and "seccomp NO" in staff["output"]
    assert results["extra_data"]["grader"]["sandbox"]["engine"] == "user"
    assert "READ THE KIT" not in json.dumps(results)


def test_user_engine_runs_the_notebook_as_its_own_account(kit: Path, shared: tuple[Path, str], tmp_path: Path) -> None:  # noqa: F811
    """With an account other than nobody (daemon) the notebook runs as that account and earns its point: 5/5."""
    folder, python = shared
    try:
        account = pwd.getpwnam("daemon")
    except KeyError:
        pytest.skip("no account 'daemon' on this machine")
    private = folder / "ca15-kit-nb"
    shutil.copytree(kit, private, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["chmod", "-R", "a+rX", str(private)], check=True)
    code = f"import os\ndef double(x):\n    return 2 * x if os.geteuid() == {account.pw_uid} else -1\n"
    sub = _submission(tmp_path / "dora", code, ["print('the student cell')"])  # the kit's cell runs: double(21)
    out = tmp_path / "out"
    out.mkdir()
    config = _config(private, python=python, sandbox="user", sandbox_user="daemon", workspace_root=folder,
                     run_notebook=True)  # fmt: skip
    grade_one(sub, out, config)
    results = json.loads((out / "dora" / "results.json").read_text())
    assert results["score"] == 5, (out / "dora" / "log.txt").read_text()[-3000:]
    assert "42" in (out / "dora" / "notebook.ipynb").read_text()  # double gives 42 only as that account
