"""Gradescope's setup.sh (grader/gradescope.py) on its Ubuntu 22.04 and 24.04 base images: a supported Python.

The Python selection (``pick_python``) runs for real against stub ``python3``, ``apt-cache``, ``apt-get`` and
``add-apt-repository`` commands that play each image; nothing is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from grader.gradescope import SETUP_SH, SUPPORTED_PYTHONS

REPO = Path(__file__).resolve().parents[2]


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


def _pick(setup_sh: Path, tmp_path: Path, system: str, archive: list[str]) -> tuple[str, str]:
    """Run pick_python with python3 reporting ``system`` and apt offering the ``archive`` packages; returns the
    interpreter it picked and the log of apt commands."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    log = tmp_path / "apt.log"
    _stub(stubs, "python3", f"echo {system}")
    _stub(stubs, "apt-cache", f'case " {" ".join(archive)} " in *" $2 "*) exit 0 ;; *) exit 100 ;; esac')
    for cmd in ("apt-get", "add-apt-repository"):
        _stub(stubs, cmd, f'echo "{cmd} $*" >> {log}')
    bash = shutil.which("bash")
    proc = subprocess.run([bash, "-c", f'source "{setup_sh}" && pick_python'], capture_output=True, text=True,
                          env={"PATH": f"{stubs}:/usr/bin:/bin"}, timeout=30)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip(), log.read_text() if log.exists() else ""


def test_ubuntu_22_04_gets_python_3_11_from_the_archive(setup_sh: Path, tmp_path: Path) -> None:
    """22.04: python3 is 3.10 (unsupported); python3.11 and its venv come from the Ubuntu archive."""
    python, log = _pick(setup_sh, tmp_path, "3.10", ["python3.10-venv", "python3.11-venv"])
    assert python == "python3.11"
    assert "apt-get install -y -qq python3.11 python3.11-venv python3.11-dev" in log and "add-apt-repository" not in log


def test_ubuntu_24_04_uses_its_python_3_12(setup_sh: Path, tmp_path: Path) -> None:
    """24.04: the system's python3 is 3.12, supported: it is used (with its venv module), nothing else."""
    python, log = _pick(setup_sh, tmp_path, "3.12", ["python3.12-venv", "python3.13-venv"])
    assert python == "python3.12"
    assert "python3.12-venv" in log and "python3.11" not in log and "python3.13" not in log


def test_no_supported_python_in_the_archive_uses_deadsnakes(setup_sh: Path, tmp_path: Path) -> None:
    """An archive without any supported Python: the deadsnakes PPA's python3.11."""
    python, log = _pick(setup_sh, tmp_path, "3.10", ["python3.10-venv"])
    assert python == "python3.11"
    assert "add-apt-repository -y ppa:deadsnakes/ppa" in log and "python3.11-venv" in log


def test_setup_sh_keeps_bubblewrap_the_worker_user_and_the_venv() -> None:
    """The rest of the setup is unchanged: bubblewrap, the ca15-worker user, the pinned venv with CPU torch."""
    for needle in ("bubblewrap", "useradd --system", "ca15-worker", '"$python" -m venv /autograder/venv',
                   "download.pytorch.org/whl/cpu", "-c /autograder/source/ca15-kit/constraints.txt"):  # fmt: skip
        assert needle in SETUP_SH, needle
