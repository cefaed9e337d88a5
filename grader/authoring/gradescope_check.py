"""Gradescope for real: the autograder installed and run on a fresh OS image, inside the limits of the host.

    python -m grader.authoring.gradescope_check [--suites bookworm trixie] [--wheels DIR] [--work DIR] [--keep]
    make gradescope-check [SUITES="bookworm trixie"] [WHEELS=DIR]

For each Debian suite: a minimal root file system is built from Debian's archive (``mmdebstrap``, variant
minbase, as a base image is), ``build/autograder.zip`` is unpacked into its ``/autograder/source`` and
``setup.sh`` runs in it as root, as Gradescope's build does; then ``run_autograder`` grades the reference
submission (what ``make submit`` writes) and the untouched skeleton, each in a fresh cgroup of **1 CPU and
1.5 GiB** (no swap), in two kinds of container:

- ``refused``: Docker's defaults. Docker's capability set, a seccomp filter that refuses new namespaces and
  mounts (:mod:`grader.judge.seccomp`), ``/proc`` partly masked, ``/sys`` read-only: bubblewrap cannot start, and the
  kit must fall back to its ``user`` engine (``ca15-worker``).
- ``allowed``: namespaces allowed and ``/proc`` unmasked (``--privileged``, or ``--security-opt
  seccomp=unconfined --security-opt systempaths=unconfined``): the kit must use bubblewrap.

and one probe of the case between (``masked``: namespaces allowed, ``/proc`` masked): bubblewrap fails there,
and the kit must say what helps. Passes when setup succeeds, the reference gets full marks (notebook
included), the skeleton 0, and each results.json names the expected engine; prints the time, CPU time and
peak memory of every step. Needs root, bubblewrap and mmdebstrap (``apt-get install mmdebstrap``), minutes
and a few GB under ``--work``. torch comes from PyTorch's CPU index when this machine reaches it, else from
a local wheel folder (``--wheels``, or pip's configured ``find-links``), and the output says which.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from grader.pipeline.gradescope import build
from grader.judge.seccomp import DENY_MOUNTS, DENY_NAMESPACES, program

REPO = Path(__file__).resolve().parents[2]
MIRROR = "http://deb.debian.org/debian"
TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
CPU_QUOTA = 1.0
MEMORY_BYTES = 3 * 2**29  # 1.5 GiB
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Docker's default capability set (no CAP_SYS_ADMIN): what a Gradescope container most likely runs with.
DOCKER_CAPS = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
               "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
               "CAP_KILL", "CAP_AUDIT_WRITE")  # fmt: skip
MODES = {"refused": "user", "allowed": "bwrap"}  # container kind -> the engine the kit must pick there


class CheckError(RuntimeError):
    """The check cannot run here; the message says what to install or pass."""


# ---------------------------------------------------------------------------------------------- the cgroup
@dataclass
class Box:
    """A cgroup of ``cpus`` CPUs and ``memory`` bytes (no swap) for one step, on cgroup v1 or v2; the
    processes of the step join it before they exec, and :meth:`close` kills what is left and reads the
    step's CPU time and peak memory."""

    cpus: float = CPU_QUOTA
    memory: int = MEMORY_BYTES
    paths: dict[str, Path] = field(default_factory=dict)
    #: the largest anonymous + shared memory seen (sampled every 0.2 s): what the step itself held, without
    #: the page cache that the cgroup's own peak also counts (and would reclaim before killing anything)
    peak_resident: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def open(self) -> Box:
        name = f"ca15-gradescope-check-{os.getpid()}-{time.monotonic_ns()}"
        own = {}
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for c in controllers.split(",") if controllers else ["unified"]:
                own[c] = path.lstrip("/")
        if Path("/sys/fs/cgroup/cgroup.controllers").is_file():  # v2 only
            base = Path("/sys/fs/cgroup") / own.get("unified", "")
            parent = base.parent if (base / "cgroup.procs").read_text().strip() else base
            (parent / "cgroup.subtree_control").write_text("+cpu +memory")
            group = parent / name
            group.mkdir()
            (group / "cpu.max").write_text(f"{int(self.cpus * 100000)} 100000")
            (group / "memory.max").write_text(str(self.memory))
            (group / "memory.swap.max").write_text("0")
            self.paths = {"unified": group}
            return self
        for controller in ("memory", "cpu", "cpuacct"):
            root = Path("/sys/fs/cgroup") / controller
            if not root.is_dir():
                raise CheckError(f"no cgroup controller {controller!r} under /sys/fs/cgroup: cannot impose the limits")
            group = root / own.get(controller, "") / name
            group.mkdir()
            self.paths[controller] = group
        (self.paths["memory"] / "memory.limit_in_bytes").write_text(str(self.memory))
        if (self.paths["memory"] / "memory.memsw.limit_in_bytes").exists():
            (self.paths["memory"] / "memory.memsw.limit_in_bytes").write_text(str(self.memory))
        (self.paths["cpu"] / "cpu.cfs_period_us").write_text("100000")
        (self.paths["cpu"] / "cpu.cfs_quota_us").write_text(str(int(self.cpus * 100000)))
        return self

    def resident(self) -> int:
        """Anonymous plus shared (tmpfs, /dev/shm) memory of the group now, in bytes."""
        if "unified" in self.paths:
            stat = dict(line.split() for line in (self.paths["unified"] / "memory.stat").read_text().splitlines())
            return int(stat.get("anon", 0)) + int(stat.get("shmem", 0))
        stat = dict(line.split() for line in (self.paths["memory"] / "memory.stat").read_text().splitlines())
        return int(stat.get("total_rss", 0)) + int(stat.get("total_shmem", 0))

    def sample(self) -> None:
        """Track :attr:`peak_resident` in a thread until :meth:`close`."""

        def loop() -> None:
            while not self._stop.wait(0.2):
                try:
                    self.peak_resident = max(self.peak_resident, self.resident())
                except OSError:
                    return

        threading.Thread(target=loop, daemon=True).start()

    def join(self) -> None:
        """Move the calling process in (called in the child between fork and exec)."""
        for group in dict.fromkeys(self.paths.values()):
            (group / "cgroup.procs").write_text(str(os.getpid()))

    def usage(self) -> tuple[float, int, int]:
        """(CPU seconds, peak bytes, OOM kills) so far."""
        if "unified" in self.paths:
            g = self.paths["unified"]
            stat = dict(line.split() for line in (g / "cpu.stat").read_text().splitlines())
            events = dict(line.split() for line in (g / "memory.events").read_text().splitlines())
            peak = int((g / "memory.peak").read_text()) if (g / "memory.peak").exists() else -1
            return int(stat["usage_usec"]) / 1e6, peak, int(events.get("oom_kill", 0))
        cpu = int((self.paths["cpuacct"] / "cpuacct.usage").read_text()) / 1e9
        peak = int((self.paths["memory"] / "memory.max_usage_in_bytes").read_text())
        oom = dict(line.split() for line in (self.paths["memory"] / "memory.oom_control").read_text().splitlines())
        return cpu, peak, int(oom.get("oom_kill", 0))

    def close(self) -> None:
        self._stop.set()
        for group in dict.fromkeys(self.paths.values()):
            for _ in range(50):
                pids = (group / "cgroup.procs").read_text().split()
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(int(pid), 9)
                    except ProcessLookupError:
                        pass
                time.sleep(0.1)
            try:
                group.rmdir()
            except OSError:
                pass


# ------------------------------------------------------------------------------------------- the container
@dataclass
class Step:
    """One command run in the container: its exit status and what it cost."""

    name: str
    returncode: int
    wall: float
    cpu: float
    peak_mib: float  # resident (anonymous + shared), sampled
    cache_peak_mib: float  # the cgroup's own peak, page cache included
    oom_kills: int
    log: Path

    def cost(self) -> str:
        return (f"{self.wall:.0f} s, CPU {self.cpu:.0f} s, peak {self.peak_mib:.0f} MiB resident "
                f"({self.cache_peak_mib:.0f} MiB with page cache)")


def container_argv(root: Path, mode: str, command: str, binds: dict[str, str], seccomp_fd: int | None) -> list[str]:
    """bubblewrap as a container runtime (run as root: no user namespace, real root inside) for ``mode``:
    ``refused`` (Docker's defaults), ``allowed`` (namespaces allowed, /proc unmasked) or ``masked``
    (namespaces allowed, /proc masked). bubblewrap's own ``--proc`` leaves /proc partly masked (read-only
    binds over /proc/sys and others), as Docker does; ``allowed`` mounts a fresh /proc over it first."""
    argv = ["bwrap", "--bind", str(root), "/", "--dev", "/dev", "--proc", "/proc", "--ro-bind", "/sys", "/sys",
            "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--hostname", "gradescope", "--die-with-parent",
            "--clearenv", "--setenv", "PATH", PATH, "--setenv", "HOME", "/root", "--setenv", "LANG", "C.UTF-8",
            "--chdir", "/"]  # fmt: skip
    for src, dst in binds.items():
        argv += ["--ro-bind", src, dst]
    if mode == "refused":
        argv += ["--cap-drop", "ALL"]
        for cap in DOCKER_CAPS:
            argv += ["--cap-add", cap]
        argv += ["--seccomp", str(seccomp_fd)]
    else:
        argv += ["--cap-add", "ALL"]
    if mode == "allowed":
        command = f"mount -t proc proc /proc && {command}"
    return [*argv, "/bin/bash", "-c", command]


def run_in(root: Path, mode: str, command: str, name: str, logs: Path, binds: dict[str, str] | None = None,
           timeout: float = 3600) -> Step:  # fmt: skip
    """Run ``command`` in a ``mode`` container on ``root``, in a fresh 1-CPU, 1.5 GiB cgroup."""
    box = Box().open()
    box.sample()
    log = logs / f"{name}.log"
    with tempfile.TemporaryFile() as filt, open(log, "wb") as out:
        fd = None
        if mode == "refused":
            filt.write(program(DENY_NAMESPACES + DENY_MOUNTS))
            filt.seek(0)
            fd = filt.fileno()
        argv = container_argv(root, mode, command, binds or {}, fd)
        start = time.monotonic()
        try:
            proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout,
                                  pass_fds=(fd,) if fd is not None else (), preexec_fn=box.join)  # fmt: skip
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = 124
        wall = time.monotonic() - start
    cpu, peak, oom = box.usage()
    box.close()
    return Step(name, code, wall, cpu, box.peak_resident / 2**20, peak / 2**20, oom, log)


def tail(path: Path, lines: int = 25) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# --------------------------------------------------------------------------------------------------- steps
def make_rootfs(suite: str, dest: Path, mirror: str, logs: Path) -> float:
    """A minimal Debian ``suite`` (minbase, plus ca-certificates) at ``dest``; returns the seconds it took."""
    tool = shutil.which("mmdebstrap")
    if tool is None:
        raise CheckError("mmdebstrap is not installed: apt-get install mmdebstrap (it builds the fresh image)")
    sources = [f"deb {mirror} {suite} main", f"deb {mirror} {suite}-updates main",
               f"deb {mirror.replace('/debian', '/debian-security')} {suite}-security main"]  # fmt: skip
    start = time.monotonic()
    with open(logs / f"{suite}-mmdebstrap.log", "wb") as out:
        proc = subprocess.run([tool, "--variant=minbase", "--include=ca-certificates", suite, str(dest), *sources],
                              stdout=out, stderr=subprocess.STDOUT, timeout=1800)  # fmt: skip
    if proc.returncode != 0:
        raise CheckError(f"mmdebstrap {suite} failed:\n{tail(logs / f'{suite}-mmdebstrap.log')}")
    shutil.copy2("/etc/resolv.conf", dest / "etc" / "resolv.conf")  # the build reaches the package indexes
    return time.monotonic() - start


def torch_source(wheels: Path | None, echo) -> Path | None:
    """The wheel folder setup.sh installs torch from, or None for PyTorch's CPU index (when reachable)."""
    if wheels is not None:
        echo(f"torch: from the local wheel folder {wheels} (--wheels), not from PyTorch's CPU index")
        return wheels
    try:
        urllib.request.urlopen(TORCH_INDEX + "/torch/", timeout=15).close()
        echo(f"torch: from PyTorch's CPU index {TORCH_INDEX}, as on Gradescope")
        return None
    except OSError as exc:
        reason = exc
    configured = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.find-links"],
                                capture_output=True, text=True).stdout.split()  # fmt: skip
    for folder in map(Path, configured):
        if folder.is_dir() and any(folder.glob("torch-*+cpu-*.whl")):
            echo(f"torch: PyTorch's CPU index {TORCH_INDEX} is unreachable from this machine ({reason}); using "
                 f"pip's local wheel folder {folder} (find-links) instead: CA15_WHEELS={folder} for setup.sh")  # fmt: skip
            return folder
    raise CheckError(f"PyTorch's CPU index {TORCH_INDEX} is unreachable ({reason}) and no local wheel folder "
                     "holds a CPU build of torch: pass --wheels DIR (make gradescope-check WHEELS=DIR)")  # fmt: skip


def host_ca_bundle(given: Path | None, echo) -> Path | None:
    """The CA bundle pip must trust in the image, when this machine reaches PyPI through a TLS proxy whose
    certificate only the host trusts (``--ca-bundle``, else ``$PIP_CERT`` or pip's ``global.cert``); None when
    the image's own ca-certificates suffice, as on Gradescope."""
    if given is None:
        configured = os.environ.get("PIP_CERT") or subprocess.run(
            [sys.executable, "-m", "pip", "config", "get", "global.cert"], capture_output=True, text=True).stdout.strip()
        given = Path(configured) if configured else None
    if given is None:
        return None
    if not given.is_file():
        raise CheckError(f"--ca-bundle: expected a PEM file, got {given} (not a file)")
    echo(f"pip in the image trusts this machine's CA bundle {given} (PIP_CERT), as this machine's own pip does")
    return given


def place_submission(root: Path, submission: Path) -> None:
    """Gradescope's contract: the submission unpacked in /autograder/submission, an empty results folder."""
    for sub in ("submission", "results"):
        shutil.rmtree(root / "autograder" / sub, ignore_errors=True)
        (root / "autograder" / sub).mkdir(parents=True)
    if submission.suffix == ".zip":
        with zipfile.ZipFile(submission) as archive:
            archive.extractall(root / "autograder" / "submission")
    else:
        shutil.copytree(submission, root / "autograder" / "submission", dirs_exist_ok=True)


def verdict(results: dict, expect_full: bool, engine: str) -> list[str]:
    """What is wrong with one results.json: the score, the notebook's points, the engine it names."""
    problems = []
    tests = results.get("tests", [])
    maximum = sum(t.get("max_score", 0) for t in tests)
    notebook = next((t for t in tests if t.get("name", "").startswith("Notebook")), None)
    want = maximum if expect_full else 0
    if results.get("score") != want or not maximum:
        problems.append(f"score {results.get('score')}/{maximum}, expected {want}")
    if notebook is None or notebook.get("score") != (notebook or {}).get("max_score", 0) * expect_full:
        problems.append(f"notebook {notebook and notebook.get('score')}/{notebook and notebook.get('max_score')}")
    got = results.get("extra_data", {}).get("grader", {}).get("sandbox", {}).get("engine")
    if got != engine:
        problems.append(f"engine {got!r}, expected {engine!r}")
    status = results.get("extra_data", {}).get("status", "")
    if engine == "user" and "as a uid of its own per run" not in status:
        problems.append(f"status {status!r} does not name the user engine")
    return problems


def check_suite(suite: str, work: Path, zip_path: Path, submissions: dict[str, Path], wheels: Path | None,
                ca_bundle: Path | None, modes: list[str], mirror: str, echo) -> list[str]:  # fmt: skip
    """Every step for one suite; returns the failures (empty when it passes)."""
    root, logs = work / suite / "root", work / suite / "logs"
    shutil.rmtree(work / suite, ignore_errors=True)
    logs.mkdir(parents=True)
    echo(f"[{suite}] root file system from {mirror}: {make_rootfs(suite, root, mirror, logs):.0f} s")
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(root / "autograder" / "source")
    for script in ("setup.sh", "run_autograder"):
        (root / "autograder" / "source" / script).chmod(0o755)
    shutil.copy2(root / "autograder" / "source" / "run_autograder", root / "autograder" / "run_autograder")
    binds, env = {}, ""
    if wheels is not None:
        binds[str(wheels)] = "/wheels"
        env = "CA15_WHEELS=/wheels "
    if ca_bundle is not None:
        binds[str(ca_bundle)] = "/etc/ssl/ca15-host-bundle.pem"
        env += "PIP_CERT=/etc/ssl/ca15-host-bundle.pem "
    setup = run_in(root, "refused", f"{env}bash /autograder/source/setup.sh", f"{suite}-setup", logs, binds)
    echo(f"[{suite}] setup.sh: exit {setup.returncode}; {setup.cost()}")
    if setup.returncode != 0:
        return [f"{suite}: setup.sh failed (exit {setup.returncode}):\n{tail(setup.log)}"]
    for line in setup.log.read_text(errors="replace").splitlines():
        if line.startswith(("setup.sh: Python", "setup.sh: python", "smoke:")):
            echo(f"[{suite}]   {line}")
    failures = []
    probe = run_in(root, "masked", "cd /autograder/source/ca15-kit && /autograder/venv/bin/python -c "
                   "'from grader.judge.sandbox import check_bwrap; check_bwrap(\"/autograder/venv/bin/python\")'",
                   f"{suite}-masked-probe", logs)  # fmt: skip
    advice = probe.log.read_text(errors="replace")
    ok = probe.returncode != 0 and "systempaths=unconfined" in advice
    echo(f"[{suite}] masked /proc, namespaces allowed: bubblewrap {'refused' if probe.returncode else 'STARTED'}; "
         f"advice names systempaths=unconfined: {'yes' if 'systempaths=unconfined' in advice else 'NO'}")  # fmt: skip
    if not ok:
        failures.append(f"{suite}: masked /proc probe:\n{tail(probe.log)}")
    for mode in modes:
        for label, submission in submissions.items():
            place_submission(root, submission)
            step = run_in(root, mode, "/autograder/run_autograder", f"{suite}-{mode}-{label}", logs)
            results_path = root / "autograder" / "results" / "results.json"
            results = json.loads(results_path.read_text()) if results_path.is_file() else {}
            tests = results.get("tests", [])
            nb = next((t for t in tests if t.get("name", "").startswith("Notebook")), {})
            problems = verdict(results, label == "reference", MODES[mode])
            if step.returncode != 0:
                problems.append(f"run_autograder exit {step.returncode}")
            if step.oom_kills:
                problems.append(f"{step.oom_kills} processes killed for memory")
            engine = results.get("extra_data", {}).get("grader", {}).get("sandbox", {}).get("engine")
            echo(f"[{suite}] {mode:8} {label:10} {results.get('score')}/{sum(t.get('max_score', 0) for t in tests)} "
                 f"(notebook {nb.get('score')}/{nb.get('max_score')}), engine {engine}; {step.cost()}"
                 f"{'  FAIL: ' + '; '.join(problems) if problems else ''}")  # fmt: skip
            shutil.copy2(results_path, logs / f"{suite}-{mode}-{label}.results.json") if results_path.is_file() else None
            if problems:
                failures.append(f"{suite} {mode} {label}: {'; '.join(problems)}\n{tail(step.log)}")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader.authoring.gradescope_check", description=__doc__.splitlines()[0])
    parser.add_argument("--suites", nargs="+", default=["bookworm"], help="Debian suites (default: bookworm)")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--wheels", type=Path, default=None, help="a folder holding the CPU wheel of torch")
    parser.add_argument("--ca-bundle", type=Path, default=None,
                        help="CA bundle for pip in the image (default: $PIP_CERT or pip's global.cert, if set)")
    parser.add_argument("--mirror", default=MIRROR, help=f"Debian mirror (default: {MIRROR})")
    parser.add_argument("--work", type=Path, default=Path("/var/tmp/ca15-gradescope-check"),
                        help="where the images are built (a few GB; default /var/tmp/ca15-gradescope-check)")
    parser.add_argument("--keep", action="store_true", help="keep the images afterwards (the logs are kept)")
    args = parser.parse_args(argv)
    echo = lambda text: print(text, flush=True)  # noqa: E731
    if os.geteuid() != 0:
        print("gradescope-check: needs root (it builds an image and runs setup.sh in it as root)", file=sys.stderr)
        return 2
    if shutil.which("bwrap") is None:
        print("gradescope-check: bubblewrap runs the containers: apt-get install bubblewrap", file=sys.stderr)
        return 2
    if args.wheels is not None and not args.wheels.is_dir():
        parser.error(f"--wheels: expected a folder of wheels, got {args.wheels} (not a folder)")
    start = time.monotonic()
    try:
        wheels = torch_source(args.wheels, echo)
        ca_bundle = host_ca_bundle(args.ca_bundle, echo)
        args.work.mkdir(parents=True, exist_ok=True)
        zip_path = build(args.work / "autograder.zip")
        echo(f"autograder: {zip_path} ({zip_path.stat().st_size >> 10} KiB)")
        from grader.authoring.examples import make_examples

        made = make_examples(args.work / "submissions")
        submissions = {"reference": made[0], "skeleton": made[1]}
        failures = []
        for suite in args.suites:
            try:
                failures += check_suite(suite, args.work, zip_path, submissions, wheels, ca_bundle, args.modes,
                                        args.mirror, echo)  # fmt: skip
            finally:
                if not args.keep:
                    shutil.rmtree(args.work / suite / "root", ignore_errors=True)
    except CheckError as exc:
        print(f"gradescope-check: {exc}", file=sys.stderr)
        return 2
    echo(f"logs: {args.work}/<suite>/logs; {time.monotonic() - start:.0f} s in all")
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    echo("gradescope-check: " + ("FAILED" if failures else f"passed ({', '.join(args.suites)}; {', '.join(args.modes)})"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
