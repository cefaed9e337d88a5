"""Gradescope autograder: ``ca15-grade gradescope build`` and the ``run`` step its ``run_autograder`` calls.

    ca15-grade gradescope build [--out autograder.zip]
    ca15-grade gradescope run [--root /autograder]

The zip holds ``setup.sh`` (for Gradescope's Ubuntu 22.04 or 24.04 base image: installs a supported Python,
3.11 to 3.13, with apt, and the pinned environment into ``/autograder/venv``), ``run_autograder``
(grades ``/autograder/submission`` into ``/autograder/results/results.json``) and ``ca15-kit/``: the grader,
the public and hidden tests, the harness, ``pyproject.toml`` and ``constraints.txt``. The reference solution
is not in it. ``run_autograder`` honours ``AUTOGRADER_ROOT`` and ``CA15_PYTHON`` so that it can be exercised
outside Gradescope (the kit's own test does), and ``run`` honours ``CA15_SANDBOX`` (``bwrap``, ``user`` or
``none``: the engine, instead of the first that works here) and ``CA15_SANDBOX_USER`` (the account of the
``user`` engine, instead of ``ca15-worker``) so that the kit's tests can grade with the engine Gradescope
falls back to (tests/kit/test_user_engine.py). Gradescope sets neither.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from grader.grade import GradeConfig, grade_one

REPO = Path(__file__).resolve().parent.parent

#: Python versions the kit runs on (pyproject.toml: requires-python >=3.11; torch 2.13 has CPU wheels up to 3.13).
SUPPORTED_PYTHONS = ("3.11", "3.12", "3.13")

SETUP_SH = """#!/usr/bin/env bash
# Gradescope setup (base image Ubuntu 22.04 or 24.04): a supported Python, the pinned grading environment (CPU
# build of torch) in /autograder/venv, bubblewrap, and the unprivileged user that runs submission code where the
# container allows no namespaces. The kit (tests, harness, grader) is made readable by root only: submission
# code never runs as root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUPPORTED_PYTHONS="@SUPPORTED@"

# The interpreter for the venv, printed on stdout: the system's python3 when it is a supported version (Ubuntu
# 24.04: 3.12), else the first supported python3.X the apt archive has (Ubuntu 22.04, whose python3 is 3.10:
# python3.11 from universe), else python3.11 from the deadsnakes PPA. Installs it with its venv module.
pick_python() {
    local system v
    system="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)"
    for v in $system $SUPPORTED_PYTHONS; do
        case " $SUPPORTED_PYTHONS " in *" $v "*) ;; *) continue ;; esac
        if apt-cache show "python$v-venv" >/dev/null 2>&1; then
            apt-get install -y -qq "python$v" "python$v-venv" "python$v-dev" >&2
            echo "python$v"
            return 0
        fi
    done
    echo "setup.sh: no Python of $SUPPORTED_PYTHONS in the apt archive (system python3: ${system:-none});" \\
        "adding the deadsnakes PPA for python3.11" >&2
    apt-get install -y -qq software-properties-common >&2
    add-apt-repository -y ppa:deadsnakes/ppa >&2
    apt-get update -qq >&2
    apt-get install -y -qq python3.11 python3.11-venv python3.11-dev >&2
    echo python3.11
}

main() {
    apt-get update -qq
    apt-get install -y -qq bubblewrap ca-certificates > /dev/null
    local python
    python="$(pick_python)"
    echo "setup.sh: grading with $("$python" --version 2>&1) ($(command -v "$python")) in /autograder/venv"
    "$python" -m venv /autograder/venv
    /autograder/venv/bin/pip install --quiet --upgrade pip
    /autograder/venv/bin/pip install --quiet --extra-index-url https://download.pytorch.org/whl/cpu \\
        -c /autograder/source/ca15-kit/constraints.txt '/autograder/source/ca15-kit[test]'
    id -u ca15-worker >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin ca15-worker
    chmod -R go-rwx /autograder/source
    chmod -R a+rX /autograder/venv
}

# Sourced (a test of pick_python), define only; run as a script, set up.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
""".replace("@SUPPORTED@", " ".join(SUPPORTED_PYTHONS))

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope entry point: grade /autograder/submission into /autograder/results/results.json.
set -uo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
PY="${CA15_PYTHON:-/autograder/venv/bin/python}"
cd "$(dirname "$0")/ca15-kit" || cd "$ROOT/source/ca15-kit"
exec "$PY" -m grader gradescope run --root "$ROOT"
"""

KIT_README = "# ca15-kit (grading copy)\\n\\nThe CA15 grader, tests and pinned environment, as Gradescope runs them.\\n"


def build(out: Path, kit: Path = REPO) -> Path:
    """Write the Gradescope ``autograder.zip`` for ``kit`` to ``out``."""
    with tempfile.TemporaryDirectory(prefix="ca15-gradescope-") as tmp:
        stage = Path(tmp)
        dst = stage / "ca15-kit"
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(kit / "grader", dst / "grader", ignore=ignore)
        (dst / "tests").mkdir(parents=True)
        shutil.copy2(kit / "tests" / "conftest.py", dst / "tests" / "conftest.py")
        for name in ("components", "hidden"):
            if (kit / "tests" / name).is_dir():
                shutil.copytree(kit / "tests" / name, dst / "tests" / name, ignore=ignore)
        for name in ("pyproject.toml", "constraints.txt"):
            if (kit / name).is_file():
                shutil.copy2(kit / name, dst / name)
        (dst / "README.md").write_text(KIT_README)
        (stage / "setup.sh").write_text(SETUP_SH)
        (stage / "run_autograder").write_text(RUN_AUTOGRADER)
        out.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(stage.rglob("*")):
                if path.is_file():
                    info = zipfile.ZipInfo(str(path.relative_to(stage)))
                    executable = path.name in ("setup.sh", "run_autograder")
                    info.external_attr = (0o755 if executable else 0o644) << 16
                    info.compress_type = zipfile.ZIP_DEFLATED
                    archive.writestr(info, path.read_bytes())
    return out


#: Environment variables that pick the worker sandbox's engine and the "user" engine's account (for tests).
SANDBOX_ENV = "CA15_SANDBOX"
SANDBOX_USER_ENV = "CA15_SANDBOX_USER"
ENGINES = ("bwrap", "user", "none")


def choose_sandbox(python: str, user: str | None = None) -> str:
    """``$CA15_SANDBOX`` when set, else bubblewrap where the container allows it, else the unprivileged
    ``user`` (default: ``ca15-worker``, made by setup.sh) where it exists, else none."""
    import pwd

    from grader.sandbox import SANDBOX_USER, SandboxUnavailable, check_bwrap

    forced = os.environ.get(SANDBOX_ENV)
    if forced:
        if forced not in ENGINES:
            raise ValueError(f"{SANDBOX_ENV}={forced!r}: expected one of {', '.join(ENGINES)}")
        return forced
    try:
        check_bwrap(python)
        return "bwrap"
    except SandboxUnavailable:
        pass
    try:
        pwd.getpwnam(user or SANDBOX_USER)
        return "user"
    except KeyError:
        return "none"


def run(root: Path, config: GradeConfig | None = None) -> Path:
    """Grade ``root/submission`` and write ``root/results/results.json`` (Gradescope's contract), as root,
    after every sandboxed run of the submission is over."""
    config = config or GradeConfig(kit=Path.cwd())
    user = os.environ.get(SANDBOX_USER_ENV) or config.sandbox_user
    config = replace(config, sandbox=choose_sandbox(config.python, user), sandbox_user=user)
    results_dir = root / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ca15-gs-out-") as tmp:
        out = Path(tmp)
        try:
            grade_one(root / "submission", out, config)
            graded = out / "submission"
            shutil.copy2(graded / "results.json", results_dir / "results.json")
            for extra in ("feedback.md", "feedback.html", "notebook.ipynb"):
                if (graded / extra).is_file():
                    shutil.copy2(graded / extra, results_dir / extra)
        except Exception as exc:  # noqa: BLE001 - Gradescope must always get a results.json
            failure = {"score": 0, "output": f"The autograder failed: {type(exc).__name__}: {exc}", "tests": []}
            (results_dir / "results.json").write_text(json.dumps(failure, indent=2))
    return results_dir / "results.json"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ca15-grade gradescope", description="Gradescope autograder.")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write autograder.zip")
    b.add_argument("--out", type=Path, default=Path("autograder.zip"))
    r = sub.add_parser("run", help="grade /autograder/submission (what run_autograder calls)")
    r.add_argument("--root", type=Path, default=Path("/autograder"))
    args = parser.parse_args(argv)
    if args.command == "build":
        print(f"wrote {build(args.out)}")
        return 0
    kit = Path(__file__).resolve().parent.parent
    print(f"wrote {run(args.root, GradeConfig(kit=kit))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
