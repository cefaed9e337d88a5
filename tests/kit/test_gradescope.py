"""Gradescope's setup.sh (grader/pipeline/gradescope.py): a final release of a supported Python, torch from a CPU-only
source, and a smoke test that fails the build when the environment cannot grade.

The Python selection (``pick_python``) runs for real against stub ``python3``/``python3.X``, ``apt-cache``,
``apt-get`` and ``add-apt-repository`` commands that answer with the version strings of the real archives:
Ubuntu 22.04 (python3 3.10.12; python3.11 3.11.0~rc1-1~22.04.1, a release candidate), Ubuntu 24.04 (3.12.3)
and Debian 12 (3.11.2). Nothing is installed. The fresh-image run of the whole setup.sh is ``make
gradescope-check`` (grader/authoring/gradescope_check.py), which needs minutes, root and a few GB: not part of make test.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from grader.pipeline.gradescope import SETUP_SH, SMOKE_COMPONENT, SMOKE_DIR, SUPPORTED_PYTHONS, build, smoke

REPO = Path(__file__).resolve().parents[2]

UBUNTU_22_04 = {"python3.10": "3.10.12-1~22.04.3", "python3.10-venv": "3.10.12-1~22.04.3",
                "python3.11": "3.11.0~rc1-1~22.04.1", "python3.11-venv": "3.11.0~rc1-1~22.04.1"}  # fmt: skip
UBUNTU_24_04 = {"python3.12": "3.12.3-1ubuntu0.8", "python3.12-venv": "3.12.3-1ubuntu0.8"}
DEBIAN_12 = {"python3.11": "3.11.2-6+deb12u6", "python3.11-venv": "3.11.2-6+deb12u6"}
DEADSNAKES = {"python3.11": "3.11.14-1+jammy1", "python3.11-venv": "3.11.14-1+jammy1"}


@pytest.fixture
def setup_sh(tmp_path: Path) -> Path:
    path = tmp_path / "setup.sh"
    path.write_text(SETUP_SH)
    return path


def test_setup_sh_is_valid_bash(setup_sh: Path) -> None:
    proc = subprocess.run(["bash", "-n", str(setup_sh)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_supported_pythons_follow_requires_python() -> None:
    """The oldest Python setup.sh installs is the oldest pyproject.toml allows; newer ones are consecutive."""
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    match = re.fullmatch(r">=\s*3\.(\d+)", requires)
    assert match, f"requires-python: expected '>=3.N', got {requires!r}"
    minors = [int(v.split(".")[1]) for v in SUPPORTED_PYTHONS]
    assert minors[0] == int(match.group(1)) and minors == list(range(minors[0], minors[0] + len(minors)))


def _stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def _report(debian_version: str) -> str:
    """What ``python3.X -c ...`` of setup.sh's check prints for the interpreter a Debian version installs:
    ``3.11 3.11.0 candidate`` for 3.11.0~rc1-1~22.04.1, ``3.12 3.12.3 final`` for 3.12.3-1ubuntu0.8."""
    upstream = debian_version.split(":")[-1].rsplit("-", 1)[0]
    full = upstream.split("~")[0]
    return f"{'.'.join(full.split('.')[:2])} {full} {'final' if '~' not in upstream else 'candidate'}"


def _case(table: dict[str, str]) -> str:
    return "".join(f"  {pkg}) v={version} ;;\n" for pkg, version in table.items())


def _pick(setup_sh: Path, tmp_path: Path, system: str, archive: dict[str, str], ppa: dict[str, str] | None = None,
          reports: dict[str, str] | None = None) -> subprocess.CompletedProcess:  # fmt: skip
    """Run pick_python on an image whose python3 is ``system`` and whose apt offers ``archive`` (and ``ppa`` once
    the deadsnakes PPA is added); each python3.X reports the version apt installed (or ``reports[name]``)."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    log = tmp_path / "apt.log"
    log.touch()
    ppa = ppa or {}
    _stub(stubs, "python3", f"echo {system}")
    _stub(stubs, "apt-cache", f'[ "$1" = policy ] || exit 0\nv=""\n'
                              f'if grep -q add-apt-repository {log}; then case "$2" in\n{_case(ppa)}esac; fi\n'
                              f'[ -n "$v" ] || case "$2" in\n{_case(archive)}esac\n'
                              f'echo "$2:"; echo "  Installed: (none)"; echo "  Candidate: ${{v:-(none)}}"')  # fmt: skip
    for cmd in ("apt-get", "add-apt-repository"):
        _stub(stubs, cmd, f'echo "{cmd} $*" >> {log}')
    for v in SUPPORTED_PYTHONS:
        name = f"python{v}"
        fixed = (reports or {}).get(name)
        now = _report(ppa[name]) if name in ppa else ""
        before = _report(archive[name]) if name in archive else ""
        body = f"echo '{fixed}'" if fixed else (
            f"if grep -q add-apt-repository {log}; then echo '{now or before}'; else echo '{before}'; fi")
        _stub(stubs, name, body)
    bash = shutil.which("bash")
    proc = subprocess.run([bash, "-c", f'source "{setup_sh}" && pick_python'], capture_output=True, text=True,
                          env={"PATH": f"{stubs}:/usr/bin:/bin"}, timeout=30)  # fmt: skip
    proc.apt_log = log.read_text()  # type: ignore[attr-defined]
    return proc


def test_ubuntu_22_04_refuses_the_release_candidate_and_gets_python_3_11_from_deadsnakes(setup_sh: Path, tmp_path: Path) -> None:
    """22.04: python3 is 3.10.12, the archive's python3.11 is 3.11.0~rc1: refused; deadsnakes' final 3.11 is used."""
    proc = _pick(setup_sh, tmp_path, "3.10", UBUNTU_22_04, DEADSNAKES)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "python3.11"
    assert "3.11.0~rc1-1~22.04.1 is a pre-release" in proc.stderr and "deadsnakes PPA" in proc.stderr
    assert "Python 3.11.14 (final)" in proc.stderr
    log = proc.apt_log.splitlines()  # type: ignore[attr-defined]
    ppa = log.index("add-apt-repository -y ppa:deadsnakes/ppa")
    installs = [i for i, line in enumerate(log) if "install -y -qq python3.11 " in line]
    assert installs and all(i > ppa for i in installs), "python3.11 must only be installed from the PPA"


def test_ubuntu_24_04_uses_its_final_python_3_12(setup_sh: Path, tmp_path: Path) -> None:
    """24.04: the system's python3 is 3.12.3, a final release: it is used with its venv module, nothing else."""
    proc = _pick(setup_sh, tmp_path, "3.12", UBUNTU_24_04)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "python3.12"
    log = proc.apt_log  # type: ignore[attr-defined]
    assert "python3.12-venv" in log and "python3.11" not in log and "add-apt-repository" not in log


def test_debian_12_uses_its_final_python_3_11(setup_sh: Path, tmp_path: Path) -> None:
    """Debian 12: python3.11 3.11.2-6+deb12u6 is a final release (a '+' revision is not a pre-release)."""
    proc = _pick(setup_sh, tmp_path, "3.11", DEBIAN_12)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "python3.11" and "add-apt-repository" not in proc.apt_log  # type: ignore[attr-defined]


def test_a_pre_release_from_the_ppa_too_fails_the_build(setup_sh: Path, tmp_path: Path) -> None:
    """When deadsnakes also offers only a pre-release, setup.sh stops with the version it refused."""
    proc = _pick(setup_sh, tmp_path, "3.10", UBUNTU_22_04, {"python3.11": "3.11.0~b5-1+jammy1"})
    assert proc.returncode != 0 and proc.stdout.strip() == ""
    assert "FAILED" in proc.stderr and "3.11.0~b5-1+jammy1" in proc.stderr and "not a final release" in proc.stderr


def test_an_interpreter_that_reports_a_pre_release_fails_the_build(setup_sh: Path, tmp_path: Path) -> None:
    """The version the interpreter reports is checked, not only apt's: a final package holding an rc fails."""
    proc = _pick(setup_sh, tmp_path, "3.11", DEBIAN_12, reports={"python3.11": "3.11 3.11.0 candidate"})
    assert proc.returncode != 0 and proc.stdout.strip() == ""
    assert "Python 3.11.0 candidate, a pre-release" in proc.stderr


@pytest.mark.parametrize(("version", "final"), [
    ("3.11.0~rc1-1~22.04.1", False), ("3.11.0~b5-1", False), ("3.12.0~a7", False), ("3.11.0rc1-1", False),
    ("3.10.12-1~22.04.3", True), ("3.12.3-1ubuntu0.8", True), ("3.11.2-6+deb12u6", True), ("1:3.11.9-1", True),
    ("3.11.14-1+jammy1", True), ("", False),
])  # fmt: skip
def test_is_final_release_reads_the_upstream_part_of_a_debian_version(setup_sh: Path, version: str, final: bool) -> None:
    """A final release is X.Y.Z once the epoch and the Debian revision are dropped; '~' and 'rc' mark pre-releases."""
    proc = subprocess.run(["bash", "-c", f'source "{setup_sh}" && is_final_release "{version}"'], capture_output=True)
    assert (proc.returncode == 0) is final


def _install_torch(setup_sh: Path, tmp_path: Path, pip_exit: int, wheels: Path | None = None) -> subprocess.CompletedProcess:
    """install_torch with a stub pip (exit status ``pip_exit``) in a stub venv; the pip calls are logged."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    log = tmp_path / "pip.log"
    _stub(venv / "bin", "pip", f'echo "$*" >> {log}\nexit {pip_exit}')
    env = {"PATH": "/usr/bin:/bin", "CA15_KIT": str(REPO), "CA15_VENV": str(venv)}
    if wheels is not None:
        env["CA15_WHEELS"] = str(wheels)
    proc = subprocess.run(["bash", "-c", f'source "{setup_sh}" && install_torch'], capture_output=True, text=True,
                          env=env, timeout=30)  # fmt: skip
    proc.pip_log = log.read_text() if log.exists() else ""  # type: ignore[attr-defined]
    return proc


def test_torch_comes_from_the_cpu_index_alone(setup_sh: Path, tmp_path: Path) -> None:
    """torch is installed with PyTorch's CPU index as the only index (never PyPI's CUDA build), at the pin."""
    pin = next(line for line in (REPO / "constraints.txt").read_text().splitlines() if line.startswith("torch=="))
    proc = _install_torch(setup_sh, tmp_path, 0)
    assert proc.returncode == 0, proc.stderr
    call = proc.pip_log.strip()  # type: ignore[attr-defined]
    assert f"--index-url https://download.pytorch.org/whl/cpu --no-deps {pin}" in call
    assert "extra-index-url" not in call and "pypi" not in call


def test_an_unreachable_cpu_index_fails_the_build_instead_of_falling_back_to_pypi(setup_sh: Path, tmp_path: Path) -> None:
    """When pip cannot install torch from the CPU index, setup.sh stops and says why it does not use PyPI."""
    proc = _install_torch(setup_sh, tmp_path, 1)
    assert proc.returncode != 0
    assert "FAILED" in proc.stderr and "not falling back to PyPI" in proc.stderr and "CUDA build" in proc.stderr


def test_a_local_wheel_folder_is_used_without_any_index(setup_sh: Path, tmp_path: Path) -> None:
    """CA15_WHEELS: torch from that folder with --no-index, and the log says it came from there."""
    (tmp_path / "wheels").mkdir()
    proc = _install_torch(setup_sh, tmp_path, 0, tmp_path / "wheels")
    assert proc.returncode == 0, proc.stderr
    assert f"--no-index --find-links {tmp_path / 'wheels'}" in proc.pip_log  # type: ignore[attr-defined]
    assert "from the local wheel folder" in proc.stderr


def test_a_venv_without_torch_fails_the_smoke_test_naming_the_cause(setup_sh: Path, tmp_path: Path) -> None:
    """setup.sh's last step, against a venv that lacks torch: the build fails, and the message names torch."""
    venv = tmp_path / "venv"
    made = subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot make a venv here: {made.stderr.strip()[-300:]}")
    proc = subprocess.run(["bash", "-c", f'source "{setup_sh}" && smoke'], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "CA15_KIT": str(REPO), "CA15_VENV": str(venv)})  # fmt: skip
    assert proc.returncode != 0
    assert "No module named 'torch'" in proc.stderr and "the smoke test failed" in proc.stderr


def test_setup_sh_ends_with_the_smoke_test_after_the_kit_is_made_root_only() -> None:
    """main() installs bubblewrap, the ca15-worker user and the venv, then makes the kit root-only, then smokes."""
    body = SETUP_SH[SETUP_SH.index("main() {"):]
    order = ["bubblewrap", 'python="$(pick_python)"', '"$python" -m venv "$VENV"', "install_torch",
             '-c "$KIT/constraints.txt"', "useradd --system", "chmod -R go-rwx", "smoke"]  # fmt: skip
    positions = [body.index(needle) for needle in order]
    assert positions == sorted(positions), dict(zip(order, positions))


@pytest.fixture(scope="module")
def autograder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The unpacked autograder.zip of this kit (its ca15-kit folder)."""
    folder = tmp_path_factory.mktemp("autograder")
    zipfile.ZipFile(build(folder / "autograder.zip")).extractall(folder / "source")
    return folder / "source" / "ca15-kit"


def test_the_smoke_test_grades_the_bundled_component_in_full(autograder: Path) -> None:
    """The bundled smoke submission earns every point of its component in this environment: no problem."""
    lines: list[str] = []
    assert smoke(autograder, echo=lines.append) == []
    assert any(f"{SMOKE_COMPONENT} graded" in line for line in lines), lines


def test_the_smoke_test_fails_when_the_component_is_not_graded_in_full(autograder: Path, tmp_path: Path) -> None:
    """With the skeleton's RunningStats in the smoke submission, the smoke test names the component and score."""
    broken = tmp_path / "ca15-kit"
    shutil.copytree(autograder, broken)
    shutil.copy2(REPO / "skeleton" / "utils" / "running_stats.py", broken / SMOKE_DIR / "utils" / "running_stats.py")
    problems = smoke(broken, echo=lambda _: None)
    assert len(problems) == 1 and f"bundled {SMOKE_COMPONENT} submission scored 0/" in problems[0], problems


def test_the_autograder_records_its_version(autograder: Path) -> None:
    """ca15-kit/VERSION holds the kit's release and commit, which every results.json then carries."""
    version = (autograder / "VERSION").read_text().strip()
    release = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert re.fullmatch(re.escape(release) + r"(\+g[0-9a-f]{7,}(\.dirty)?)?", version), version
    assert json.loads((autograder / "notebooks" / "CA15.ipynb").read_text())["cells"], "the notebook's cell ids"
