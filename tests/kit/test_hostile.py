"""Hostile submissions against the real kit: each is the skeleton plus an attack, graded in one batch with a
correct submission. Every attack must score exactly what the plain skeleton scores, the correct submission
must keep full marks, hidden test sources must never reach a student, the kit must be unchanged and no
process of the run may be left.

To keep the batch short the kit is the real harness, grader and tests restricted to two components: RunningStats
(public and hidden tests) and ReplayBuffer (hidden tests only); the attacks do not depend on which components run.

Every batch runs under two engines (the ``engine`` fixture): bubblewrap, and the "user" engine that Gradescope
falls back to where a container refuses namespaces (each run a uid of its own; the host made private as
setup.sh leaves it). Under the user engine the batch holds the attacks on the sandbox (:data:`SANDBOX_ATTACKS`);
the attacks on the judge/worker protocol and on the notebook driver's channel do not depend on the engine, and
are graded under bubblewrap only (which also runs where the user engine cannot: without root).
"""

from __future__ import annotations

import csv
import hashlib
import json
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from textwrap import dedent

import pytest

from grader.pipeline.grade import GradeConfig, grade_batch
from grader.judge.sandbox import Limits, check_bwrap, SandboxUnavailable
from tests.kit.procs import processes_under
from tests.kit.test_user_engine import shared  # noqa: F401 - the user engine's world-readable venv

REPO = Path(__file__).resolve().parents[2]
COMPONENT_FILES = ["test_running_stats.py"]
# test_hidden_replay_buffer.py: a component graded by hidden tests only in this kit, with quick tests whose
# probes' results the judge reads (the lie workers below answer every failing probe themselves)
HIDDEN_FILES = ["test_hidden_running_stats.py", "test_hidden_replay_buffer.py"]

pytestmark = pytest.mark.timeout(1500)
TIME_LIMIT = 12

# Appended to every module of the skeleton copy: wraps the module's functions and methods so that a TODO
# (NotImplementedError) triggers the attack instead.
HOOK = "\ntry:\n    import utils._attack as _ca15_attack\n    _ca15_attack.wrap(globals())\nexcept ImportError:\n    pass\n"

WRAPPER = '''
import functools, inspect, sys

def wrap(namespace):
    name = namespace.get("__name__")
    for key, obj in list(namespace.items()):
        if getattr(obj, "__module__", None) != name:
            continue
        if inspect.isfunction(obj):
            namespace[key] = _guard(obj)
        elif inspect.isclass(obj):
            for attr, member in list(vars(obj).items()):
                if inspect.isfunction(member) and attr != "__init__":
                    setattr(obj, attr, _guard(member))

def _guard(fn):
    @functools.wraps(fn)
    def inner(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NotImplementedError:
            return fallback(fn, args, kwargs)
    return inner
'''

LIE = '''
def _lie():
    worker = next((m for m in list(sys.modules.values()) if hasattr(m, "Dispatcher")), None)  # __main__
    if worker is None or getattr(worker.Dispatcher, "_lied", False):
        return
    original = worker.Dispatcher.execute
    def execute(self, op, *args):
        try:
            return original(self, op, *args)
        except Exception:
            if op == "run":
                return ANSWER
            raise
    worker.Dispatcher.execute = execute
    worker.Dispatcher._lied = True
_lie()

def fallback(fn, args, kwargs):
    raise NotImplementedError("lie")
'''

ATTACKS: dict[str, str] = {
    # Patch pytest's report objects and the kit's report plugin, as if this were the judge's process.
    "report_patch": '''
def _patch():
    try:
        import _pytest.reports, _pytest.runner
        original = _pytest.reports.TestReport.from_item_and_call
        def passed(item, call):
            report = original(item, call)
            report.outcome, report.longrepr = "passed", None
            return report
        _pytest.reports.TestReport.from_item_and_call = staticmethod(passed)
    except Exception:
        pass
    for name in ("grader.judge.pytest_report", "grader.judge.remote", "grader.sandboxed.codec"):
        try:
            module = __import__(name, fromlist=["x"])
            sys.modules[name] = module
            if hasattr(module, "_emit"):
                module._emit = lambda record: None
            if hasattr(module, "decode"):
                module.decode = lambda frame: {"ok": True}
        except Exception:
            pass
_patch()

def fallback(fn, args, kwargs):
    raise NotImplementedError("report_patch")
''',
    # Look for the report key and descriptors through /proc and write signed 'passed' records everywhere.
    "proc_snoop": '''
import hmac, hashlib, json, os, struct

def _secrets():
    found = {}
    for pid in ["self", str(os.getppid()), *[p for p in os.listdir("/proc") if p.isdigit()]]:
        try:
            for item in open(f"/proc/{pid}/environ", "rb").read().split(b"\\0"):
                if item.startswith(b"CA15_REPORT"):
                    key, _, value = item.decode().partition("=")
                    found[key] = value
        except OSError:
            pass
    return found

def _forge():
    key = _secrets().get("CA15_REPORT_KEY", "guess")
    body = json.dumps({"type": "test", "nodeid": "tests/components/x", "outcome": "passed"}, sort_keys=True)
    line = (hmac.new(key.encode(), body.encode(), hashlib.sha256).hexdigest() + " " + body + "\\n").encode()
    frame = json.dumps({"tree": {"t": "dict", "v": [["ok", True]]}, "blobs": []}).encode()
    reply = struct.pack(">Q", len(frame) + 4) + struct.pack(">I", len(frame)) + frame
    for pid in ["self", *[p for p in os.listdir("/proc") if p.isdigit()]]:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                with open(f"/proc/{pid}/fd/{fd}", "wb", buffering=0) as out:
                    out.write(line)
            except OSError:
                pass
    return reply

def fallback(fn, args, kwargs):
    _forge()
    raise NotImplementedError("proc_snoop")
''',
    # Read expected values out of the callers' frames.
    # (The submission's own frames are skipped: returning its own intermediate values is just a wrong answer.)
    "frame_peek": '''
import os
OWN = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

def fallback(fn, args, kwargs):
    frame = sys._getframe(1)
    while frame is not None:
        if not frame.f_code.co_filename.startswith(OWN):
            for name in ("expected", "want", "target", "truth", "reference", "wanted", "y"):
                if name in frame.f_locals and frame.f_locals[name] is not None:
                    return frame.f_locals[name]
        frame = frame.f_back
    for info in inspect.stack():
        if not info.filename.startswith(OWN) and "expected" in info.frame.f_locals:
            return info.frame.f_locals["expected"]
    raise NotImplementedError("frame_peek")
''',
    # Objects that claim to equal anything.
    "liar": '''
import numpy as np

class Liar(float):
    def __new__(cls):
        return float.__new__(cls, 0.0)
    def __eq__(self, other):
        return True
    __ne__ = lambda self, other: False
    __lt__ = __le__ = __gt__ = __ge__ = __eq__
    def __bool__(self):
        return True
    def __array__(self, dtype=None, copy=None):
        return np.zeros(1)
    def __getattr__(self, name):
        return Liar()
    def __call__(self, *args, **kwargs):
        return Liar()
    def __iter__(self):
        return iter([Liar(), Liar()])
    def __len__(self):
        return 2
    def __getitem__(self, key):
        return Liar()

class LiarObject:
    __eq__ = Liar.__eq__
    __bool__ = Liar.__bool__
    __array__ = Liar.__array__
    __getattr__ = Liar.__getattr__
    __call__ = Liar.__call__

def fallback(fn, args, kwargs):
    return LiarObject() if fn.__name__.startswith("_") else Liar()
''',
    # Find hidden tests on disk and show them to the student through a public test's message.
    "hidden_leak": '''
import os

_CACHE = []

def _leak():
    if not _CACHE:
        _CACHE.append(_walk())
    return _CACHE[0]

def _walk():
    import time
    found, deadline = [], time.monotonic() + 8  # the whole host is in sight under the user engine: be quick
    for top in ("/tmp", "/var/tmp", "/work", "/autograder", "/root", "/opt", "/"):
        for folder, dirs, files in os.walk(top):
            if time.monotonic() > deadline:
                return found or ["nothing found in time"]
            dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev", "usr", "lib")]
            for name in files:
                if name.startswith("test_hidden") or name in ("conftest.py", "gradebook.csv"):
                    try:
                        found.append(open(os.path.join(folder, name)).read())
                    except OSError:
                        pass
            if len(found) > 4:
                return found
    return found

def _payload():
    # Reports keep the last 6000 characters of a message: send the lines that matter (test names, asserts),
    # the hidden tests' first, short enough that both markers survive whatever else the walk found.
    texts = sorted(_leak(), key=lambda t: "def test_" not in t)
    lines = [l.strip() for t in texts for l in t.splitlines() if l.strip().startswith(("def test_", "assert "))]
    return "\\n".join(lines or texts)[:3000]

def fallback(fn, args, kwargs):
    raise ValueError("LEAK-BEGIN\\n" + _payload() + "\\nLEAK-END")
''',
    # Find another implementation root (the kit's reference/, a classmate's submission) and use it; read any
    # gradebook; overwrite any results, feedback or test file in reach.
    "escape": '''
import os

def _roots():
    import time
    own, deadline = os.path.dirname(os.path.dirname(os.path.abspath(__file__))), time.monotonic() + 8
    for top in ("/tmp", "/var/tmp", "/work", "/root", "/autograder", "/home", "/"):
        for folder, dirs, files in os.walk(top):
            if time.monotonic() > deadline:
                return
            dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev", "usr", "lib", ".git")]
            if "model_based_rl" in dirs and os.path.abspath(folder) != own:
                yield folder
            for name in files:
                if name in ("gradebook.csv", "results.json", "feedback.md") or name.startswith("test_"):
                    try:
                        with open(os.path.join(folder, name), "a") as fh:
                            fh.write("\\nTAMPERED\\n")
                    except OSError:
                        pass

_FOUND = []

def fallback(fn, args, kwargs):
    if not _FOUND:
        _FOUND.extend(list(_roots()) or [None])
    for root in _FOUND:
        if root is None:
            break
        sys.path.insert(0, root)
        for key in [k for k in sys.modules if k.split(".")[0] in ("model_based_rl", "utils", "planning")]:
            del sys.modules[key]
        module = __import__(fn.__module__, fromlist=["x"])
        target = getattr(module, fn.__qualname__.split(".")[0])
        for part in fn.__qualname__.split(".")[1:]:
            target = getattr(target, part)
        return target(*args, **kwargs)
    raise NotImplementedError("escape")
''',
    # Choose the worker's exit status (113), a number the student must never see again: it could carry bits
    # out of a hidden test (issue 22: "exit status 102, 103, 108, 114" in the notes).
    "exit_status": '''
import os

def fallback(fn, args, kwargs):
    os._exit(113)
''',
    # Terminal control sequences (clear screen, an OSC 52 clipboard write, BEL) and a lone surrogate in every
    # message: the records must stay inert text, and the surrogate must not crash the writing of feedback.
    "control_chars": '''
def fallback(fn, args, kwargs):
    raise ValueError("CTRL-MARKER \\x1b[2J\\x1b]52;c;SGFja2Vk\\x07\\x9b31m\\x07 lone \\ud800 surrogate")
''',
    # Answer every probe that fails with True, or with False, from inside the worker's dispatcher: a probe
    # that returned a verdict (a bool computed in the worker) would hand these the point.
    "lie_true": LIE.replace("ANSWER", "True"),
    "lie_false": LIE.replace("ANSWER", "False"),
    # Reach for the kernel surface that sandbox escapes go through: new user, mount and network namespaces, a
    # tmpfs mount, io_uring, keyctl; report what worked through the failure message.
    "kernel_surface": '''
import ctypes, errno, platform

def _try():
    libc = ctypes.CDLL(None, use_errno=True)
    nr = {"x86_64": (425, 250), "aarch64": (425, 219)}.get(platform.machine(), (425, 250))
    calls = [("unshare-user", lambda: libc.unshare(0x10000000)), ("unshare-mount", lambda: libc.unshare(0x00020000)),
             ("unshare-net", lambda: libc.unshare(0x40000000)),
             ("mount", lambda: libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)),
             ("io_uring", lambda: libc.syscall(nr[0], 1, 0)), ("keyctl", lambda: libc.syscall(nr[1], 0, 0, 0, 0, 0))]
    found = []
    for name, call in calls:
        rc = call()
        found.append(f"{name}=" + ("ok" if rc != -1 else errno.errorcode.get(ctypes.get_errno(), "?")))
    return " ".join(found)

def fallback(fn, args, kwargs):
    raise ValueError("SURFACE " + _try())
''',
    # Kill every process in sight (a classmate's included, if it were visible) and leave a daemon behind.
    "killer": '''
import os, signal, subprocess

def fallback(fn, args, kwargs):
    if os.fork() == 0:
        os.setsid()
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(900)", "CA15-DAEMON-MARKER"])
    for pid in [int(p) for p in os.listdir("/proc") if p.isdigit()]:
        if pid not in (os.getpid(), 1):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    raise NotImplementedError("killer")
''',
}


def _tree_hash(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}  # fmt: skip


@pytest.fixture(scope="module", params=["bwrap", "user"])
def engine(request: pytest.FixtureRequest) -> dict:
    """The worker sandbox every batch of this module is graded with: bubblewrap, or the "user" engine that
    Gradescope falls back to where a container allows no namespaces (GradeConfig fields, and how to run)."""
    if request.param == "bwrap":
        try:
            check_bwrap(str(Path(REPO / ".venv" / "bin" / "python")) if (REPO / ".venv").is_dir() else "python3")
        except SandboxUnavailable as exc:
            pytest.skip(f"bubblewrap is not usable here: {exc}")
        return {"name": "bwrap", "config": {}, "private_host": False}
    folder, python = request.getfixturevalue("shared")
    if shutil.which("unshare") is None:
        pytest.skip("the user engine's batch hides this checkout in a mount namespace: util-linux unshare is missing")
    workspaces = folder / "workspaces"
    workspaces.mkdir(exist_ok=True)
    return {"name": "user", "config": {"sandbox": "user", "sandbox_user": "nobody", "python": python,
                                       "workspace_root": workspaces}, "private_host": True, "folder": folder}  # fmt: skip


#: Folders a user-engine batch runs without (covered by an empty tmpfs), but for what it needs (:func:`_grade`):
#: the shared temporary folders, and every top-level folder but the system's own (other checkouts of the kit,
#: a TA's files: whatever this machine holds that a Gradescope container would not). /root stays (the kit's
#: own python lives there; it is 0700, so no run's uid can read it).
HOST_FOLDERS = ("/tmp", "/var/tmp")
SYSTEM_FOLDERS = frozenset({"bin", "boot", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "root", "run",
                            "sbin", "sys", "tmp", "usr", "var"})  # fmt: skip


def _host_folders() -> list[Path]:
    """What :func:`_grade` covers under the user engine: :data:`HOST_FOLDERS` and every non-system top-level
    folder (then this checkout too, where no covered folder holds it)."""
    tops = [p for p in Path("/").iterdir() if p.is_dir() and not p.is_symlink() and p.name not in SYSTEM_FOLDERS]
    cover = [*[Path(f) for f in HOST_FOLDERS if Path(f).is_dir()], *sorted(tops)]
    if not any(REPO.is_relative_to(path) for path in cover):
        cover.append(REPO)
    return cover


def _grade(subs: Path, out: Path, config: GradeConfig, engine: dict) -> None:
    """grade_batch, two at a time. Under the user engine the host is made as a Gradescope container after
    setup.sh would be, whatever else this machine holds: in a private mount namespace, this checkout (readable
    by all, with its reference and hidden tests) and the shared folders (other tests' and other users' files)
    are covered by empty tmpfs, and only what the batch needs is put back: the kit's .venv, the kit copy,
    the submissions, the output folder and the user engine's world-readable folder (its venv, workspaces)."""
    submissions = sorted(subs.iterdir())
    if not engine["private_host"]:
        grade_batch(submissions, out, config, jobs=2, echo=lambda line: None)
        return
    script = ("import pickle, sys\n"  # the kit copy's grader, given the very config and submissions pickled
              f"sys.path.insert(0, {str(config.kit)!r})\n"
              "from grader.pipeline.grade import grade_batch\n"
              "config, submissions, out = pickle.load(sys.stdin.buffer)\n"
              "grade_batch(submissions, out, config, jobs=2, echo=lambda line: None)\n")
    keep = [REPO / ".venv", config.kit, subs, out, Path(engine["folder"])]
    cover = _host_folders()
    hold = Path(tempfile.mkdtemp(prefix="ca15-hold-", dir="/dev/shm"))
    lines = ["set -e"]
    lines += [f"mkdir {hold}/{i} && mount --bind {path} {hold}/{i}" for i, path in enumerate(keep)]
    lines += [f"mount -t tmpfs -o size=1m,mode={'1777' if str(path) in HOST_FOLDERS else '755'} tmpfs {path}"
              for path in cover]  # fmt: skip
    lines += [f"mkdir -p {path} && mount --bind {hold}/{i} {path}" for i, path in enumerate(keep)]
    lines.append('exec "$0" -c "$1"')
    try:
        proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(lines),
                               sys.executable, script], cwd="/", capture_output=True, timeout=1400,
                              input=pickle.dumps((config, submissions, out)))  # fmt: skip
    finally:
        for i in range(len(keep)):
            (hold / str(i)).rmdir()
        hold.rmdir()
    assert proc.returncode == 0, f"the user engine's batch failed:\n{proc.stdout[-3000:]!r}\n{proc.stderr[-3000:]!r}"


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory, engine: dict) -> Path:
    """The real harness, grader and tests for two components."""
    root = tmp_path_factory.mktemp("kit")
    (root / "tests" / "components").mkdir(parents=True)
    (root / "tests" / "hidden").mkdir()
    shutil.copy2(REPO / "tests" / "conftest.py", root / "tests" / "conftest.py")
    for name in COMPONENT_FILES:
        shutil.copy2(REPO / "tests" / "components" / name, root / "tests" / "components" / name)
    for name in HIDDEN_FILES:
        shutil.copy2(REPO / "tests" / "hidden" / name, root / "tests" / "hidden" / name)
    shutil.copytree(REPO / "grader", root / "grader", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "notebooks").mkdir()
    shutil.copy2(REPO / "notebooks" / "CA15.ipynb", root / "notebooks" / "CA15.ipynb")  # the assignment's cell ids
    # Each of these tests takes under 2.5 s against the reference, its worker's start included (none is a
    # convergence test); a worker or judge that stalls on an attack is stopped after 12 s instead of the real
    # kit's 120, keeping the batch short.
    pyproject = (REPO / "pyproject.toml").read_text()
    assert "timeout = 120" in pyproject, "the kit's per-test timeout moved: update the hostile kit"
    (root / "pyproject.toml").write_text(pyproject.replace("timeout = 120", f"timeout = {TIME_LIMIT}"))
    return root


#: Attacks on the sandbox itself (reading, signalling, escaping, the kernel's surface): graded under every
#: engine. The others attack the judge/worker protocol and the reports, which are the same whatever starts the
#: worker: graded under bubblewrap only, to keep the suite short.
SANDBOX_ATTACKS = ("proc_snoop", "hidden_leak", "escape", "kernel_surface", "killer")


def _needs(batch: dict, attack: str) -> None:
    """Skip a check of ``attack`` in a batch that did not grade it (a protocol attack under the user engine)."""
    if attack not in batch["rows"]:
        pytest.skip(f"{attack} attacks the judge/worker protocol, not the sandbox: graded under bubblewrap only")


#: Attacks that are files of the submission rather than code: each is made by its function in the copy.
FORGED_NAME = "x\n\n**Score: 262 / 262**\n"
ATTACK_FILES = {
    # A link (left out of every submission) whose name forges lines of the student's feedback.
    "forged_name": lambda dest: _link(dest / FORGED_NAME, "/etc/passwd"),
}


def _link(path: Path, target: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)  # "... 262 / 262": the slash makes a folder
    path.symlink_to(target)


def _hostile(dest: Path, attack: str) -> Path:
    shutil.copytree(REPO / "skeleton", dest, ignore=shutil.ignore_patterns("__pycache__"))
    if attack in ATTACK_FILES:
        ATTACK_FILES[attack](dest)
        return dest
    (dest / "utils" / "_attack.py").write_text(WRAPPER + dedent(ATTACKS[attack]))
    for module in dest.rglob("*.py"):
        if module.name != "_attack.py":
            module.write_text(module.read_text() + HOOK)
    return dest


@pytest.fixture(scope="module")
def batch(kit: Path, engine: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Grade reference, skeleton and every attack in one batch (two at a time)."""
    subs = tmp_path_factory.mktemp("subs")
    shutil.copytree(REPO / "reference", subs / "correct", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "skeleton", subs / "skeleton", ignore=shutil.ignore_patterns("__pycache__"))
    for attack in [*ATTACKS, *ATTACK_FILES]:
        if engine["name"] == "bwrap" or attack in SANDBOX_ATTACKS:
            _hostile(subs / attack, attack)
    before = _tree_hash(kit)
    out = tmp_path_factory.mktemp("out")
    limits = Limits(wall_seconds=900, cpu_seconds=1800)
    workspaces = tmp_path_factory.mktemp("workspaces")
    # An attack that kills or corrupts its worker in every test (exit_status, proc_snoop) is given 2 workers per
    # phase instead of 25, so that it meets a replaced worker once: what it attacks is the same in each, and the
    # cap itself has its own test (test_grader.py: "had to be replaced too often"); 25 made each such submission
    # take 150 s, 3 took about 2 s more per phase than 2.
    config = GradeConfig(kit=kit, run_notebook=False, test_limits=limits, worker_limits=limits, max_fresh_workers=2,
                         **{"workspace_root": workspaces, **engine["config"]})  # fmt: skip
    workspaces = config.workspace_root
    _grade(subs, out, config, engine)
    rows = {r["submission"]: r for r in csv.DictReader((out / "gradebook.csv").open())}
    ps = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout
    left = processes_under(workspaces) + [line for line in ps.splitlines() if "CA15-DAEMON-MARKER" in line]
    after = _tree_hash(kit)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    return {"rows": rows, "out": out, "kit_changed": changed, "kit": kit, "left": left}


def test_correct_submission_keeps_full_marks(batch: dict) -> None:
    """The correct submission graded beside the attacks earns every point."""
    row = batch["rows"]["correct"]
    assert int(row["score"]) == int(row["max_score"]) > 0, row


def test_skeleton_scores_nothing(batch: dict) -> None:
    """The untouched skeleton earns no point on these components."""
    assert int(batch["rows"]["skeleton"]["score"]) == 0


@pytest.mark.parametrize("attack", sorted([*ATTACKS, *ATTACK_FILES]))
def test_attack_scores_what_the_skeleton_scores(batch: dict, attack: str) -> None:
    """Each attack built on the skeleton earns exactly the skeleton's score, component by component."""
    _needs(batch, attack)
    row, base = batch["rows"][attack], batch["rows"]["skeleton"]
    assert row["status"] == base["status"] and row["status"].startswith("graded"), row
    for column in base:
        if column not in ("submission", "status"):
            assert row[column] == base[column], f"{attack}: {column} {row[column]} vs skeleton {base[column]}"


def test_hidden_sources_never_reach_the_student(batch: dict) -> None:
    """No line of a hidden test's source appears in what the leaking submission's student sees."""
    results = json.loads((batch["out"] / "hidden_leak" / "results.json").read_text())
    visible = "\n".join(t["output"] for t in results["tests"] if t.get("visibility") == "visible")
    visible += (batch["out"] / "hidden_leak" / "feedback.md").read_text()
    assert "TAMPERED" not in (batch["out"] / "gradebook.csv").read_text()
    assert "LEAK-BEGIN" in visible, "the attack did not run: the test proves nothing"
    public = "\n".join((batch["kit"] / "tests" / "components" / name).read_text() for name in COMPONENT_FILES)
    for name in HIDDEN_FILES:
        for line in (batch["kit"] / "tests" / "hidden" / name).read_text().splitlines():
            if len(line.strip()) > 25 and line.strip() not in public:  # a public test's text is no secret
                assert line.strip() not in visible, f"hidden source reached the student: {line.strip()!r}"


def test_kit_is_unchanged_and_no_process_is_left(batch: dict) -> None:
    """The attacks changed no file of the kit and left no worker, sandbox or daemon running."""
    assert batch["kit_changed"] == []
    assert batch["left"] == []


def _student_text(batch: dict, name: str) -> tuple[dict, str]:
    """results.json of submission ``name`` and all the student sees: the notes, the visible rows, feedback."""
    results = json.loads((batch["out"] / name / "results.json").read_text())
    visible = [results["output"]] + [t["output"] for t in results["tests"] if t.get("visibility") == "visible"]
    for page in ("feedback.md", "feedback.html"):
        visible.append((batch["out"] / name / page).read_text())
    return results, "\n".join(visible)


def test_notes_name_no_number_the_worker_chose_and_count_public_tests_only(batch: dict) -> None:
    """A worker that exits 113 on every call: the notes say the worker crashed, never '113', and count public tests."""
    _needs(batch, "exit_status")
    results, _ = _student_text(batch, "exit_status")
    notes = results["output"]
    assert "crashed" in notes, "the attack did not run: the test proves nothing"
    assert "113" not in notes
    public = sum(1 for t in results["tests"] if t.get("visibility") == "visible" and "WorkerLost" in t["output"])
    assert f"In {public} public test(s)" in notes, notes


def test_control_characters_and_lone_surrogates_stay_inert(batch: dict) -> None:
    """ESC, BEL, C1 controls and a lone surrogate in messages: graded as usual, and no output holds them raw."""
    _needs(batch, "control_chars")
    results, visible = _student_text(batch, "control_chars")
    assert results["tests"] and "CTRL-MARKER" in visible, "the attack did not run: the test proves nothing"
    for name in ("results.json", "feedback.md", "feedback.html", "failures.txt", "log.txt"):
        raw = (batch["out"] / "control_chars" / name).read_bytes()
        text = raw.decode("utf-8")  # valid UTF-8 throughout: no lone surrogate was written
        assert not any(ch in text for ch in "\x1b\x07\x9b"), f"{name} holds a raw control character"


def test_a_file_name_cannot_forge_lines_of_the_feedback(batch: dict) -> None:
    """A left-out link named with newlines and a fake score: its name is quoted, on one line, never a score line."""
    _needs(batch, "forged_name")
    results, visible = _student_text(batch, "forged_name")
    assert repr(FORGED_NAME) in results["output"], results["output"]
    for line in visible.splitlines():
        assert not line.lstrip("> ").startswith("**Score: 262"), line


def test_the_sandbox_refuses_namespaces_mounts_io_uring_and_keyctl(batch: dict) -> None:
    """From inside a worker, new namespaces, a mount, io_uring and keyctl all fail (seccomp, --disable-userns)."""
    _, visible = _student_text(batch, "kernel_surface")
    reports = [line[line.index("SURFACE "):] for line in visible.splitlines() if "SURFACE " in line]
    assert reports, "the attack did not run: the test proves nothing"
    outcomes = [re.findall(r"=(E[A-Z]+|ok)\b", r) for r in reports]
    assert any(len(o) == 6 for o in outcomes), reports  # one whole report (summaries may cut the message)
    assert all(set(o) <= {"EPERM"} for o in outcomes), reports


# ------------------------------------------------------------------------------------ the notebook's kernel
#: Cells an attacker adds at the top of the untouched skeleton's notebook; the assignment's cells stay as given.
NOTEBOOK_ATTACKS = {
    # IPython's custom exception handler: a failing cell then leaves no error output behind.
    "nb_custom_exc": ["get_ipython().set_custom_exc((BaseException,), lambda *args, **kwargs: None)"],
    # A daemon in its own session that waits for the executed notebook and replaces it with a clean one.
    "nb_rewrite": [dedent('''
        import glob, json, os, sys, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                deadline = time.time() + 600
                while time.time() < deadline:
                    for path in glob.glob("/out/*.ipynb") + glob.glob("/tmp/*.ipynb") + glob.glob(os.getcwd() + "/*.ipynb"):
                        try:
                            book = json.load(open(path))
                            for n, cell in enumerate(c for c in book["cells"] if c["cell_type"] == "code"):
                                cell["outputs"], cell["execution_count"] = [], n + 1
                            json.dump(book, open(path, "w"))
                        except Exception:
                            pass
                    time.sleep(0.05)
            os._exit(0)
    ''')],
    # Read the driver's report key from /proc and sign 'ok' for every cell, as the driver would.
    "nb_forge": [dedent('''
        import glob, hashlib, hmac, json, os
        found = {}
        for path in glob.glob("/proc/[0-9]*/environ"):
            try:
                for item in open(path, "rb").read().split(b"\\0"):
                    if item.startswith(b"CA15_REPORT"):
                        key, _, value = item.decode().partition("=")
                        found[key] = value
            except OSError:
                pass
        ids = [c["id"] for c in json.load(open(glob.glob("*.ipynb")[0]))["cells"]]
        for fd_path in glob.glob("/proc/[0-9]*/fd/*"):
            try:
                with open(fd_path, "wb", buffering=0) as out:
                    for i in ids:
                        body = json.dumps({"type": "cell", "id": i, "status": "ok"}, sort_keys=True)
                        sig = hmac.new(found.get("CA15_REPORT_KEY", "x").encode(), body.encode(), hashlib.sha256).hexdigest()
                        out.write((sig + " " + body + "\\n").encode())
            except OSError:
                pass
    ''')],
}


@pytest.fixture(scope="module")
def notebook_batch(kit: Path, engine: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Each notebook attack (the untouched skeleton, its notebook with the attack's cells added), graded with the
    notebook. No untouched-skeleton control is graded beside them: its notebook earns 0 as each attack must, so it
    could tell nothing apart (the positive control, a clean notebook earning its points under each engine, is
    tests/kit/test_grader.py and test_user_engine.py).

    Graded under bubblewrap only. What these attacks aim at is the same code under every engine: the driver's
    signed channel (its key in a memfd), the driver made non-dumpable before its kernel starts (so no process of
    the run, whatever else it can see in /proc, reads the driver's descriptors), and credit taken from the
    ``execute_reply`` statuses the driver saw, never from a file the kernel can rewrite. What differs under the
    user engine (the host's processes in sight, other runs' accounts, a daemon cleared by its account) is what
    the sandbox attacks of :func:`batch` attack there (proc_snoop, killer)."""
    if engine["name"] != "bwrap":
        pytest.skip("the notebook attacks aim at the driver's channel, the same under every engine: graded under "
                    "bubblewrap only")
    import nbformat

    subs = tmp_path_factory.mktemp("nb-subs")
    assignment = nbformat.read(REPO / "notebooks" / "CA15.ipynb", as_version=4)
    for name, added in NOTEBOOK_ATTACKS.items():
        shutil.copytree(REPO / "skeleton", subs / name, ignore=shutil.ignore_patterns("__pycache__"))
        book = nbformat.from_dict(json.loads(json.dumps(assignment)))
        book.cells = [nbformat.v4.new_code_cell(src, id=f"added-{i}") for i, src in enumerate(added)] + book.cells
        nbformat.write(book, subs / name / "CA15.ipynb")
    out = tmp_path_factory.mktemp("nb-out")
    limits = Limits(wall_seconds=900, cpu_seconds=1800)
    config = GradeConfig(kit=kit, run_notebook=True, include_hidden=False, test_limits=limits, worker_limits=limits,
                         notebook_limits=limits, cell_timeout=60, only=("running_stats",), max_fresh_workers=2,  # the notebook is
                         **engine["config"])  # what these attacks are about: one small test file suffices  # fmt: skip
    _grade(subs, out, config, engine)
    return {"out": out}


@pytest.mark.parametrize("attack", sorted(NOTEBOOK_ATTACKS))
def test_cells_added_to_the_skeletons_notebook_earn_no_notebook_point(notebook_batch: dict, attack: str) -> None:
    """The untouched skeleton's notebook earns 0 notebook points, whatever cells are added before the assignment's."""
    results = json.loads((notebook_batch["out"] / attack / "results.json").read_text())
    row = next(t for t in results["tests"] if t["name"].startswith("Notebook"))
    assert row["score"] == 0, f"{attack}: notebook {row['score']}/{row['max_score']}: {row['output'][:500]}"
