"""Gradescope autograder: ``ca15-grade gradescope build`` and the ``run`` step its ``run_autograder`` calls.

    ca15-grade gradescope build [--out autograder.zip]
    ca15-grade gradescope run [--root /autograder]
    ca15-grade gradescope smoke           (setup.sh's last step: does this installation grade?)

The zip holds ``setup.sh`` (for Gradescope's Ubuntu 22.04 or 24.04 base image: installs a final release of a
supported Python, 3.11 to 3.13, with apt, the pinned environment with the CPU build of torch into
``/autograder/venv``, and ends with the smoke test), ``run_autograder`` (grades ``/autograder/submission``
into ``/autograder/results/results.json``) and ``ca15-kit/``: the grader, the public and hidden tests, the
harness, ``pyproject.toml``, ``constraints.txt``, ``VERSION`` (the kit's version, in every results.json) and
``smoke-submission/`` (the skeleton with the reference's RunningStats, the smoke test's submission: the only
reference code in the zip, readable by root only once set up), and ``notebooks/CA15.ipynb`` (whose cell ids
the notebook's credit checks). ``run_autograder`` honours ``AUTOGRADER_ROOT`` and ``CA15_PYTHON`` so that it
can be exercised outside Gradescope (the kit's own test does), and ``run`` honours ``CA15_SANDBOX`` (``bwrap``, ``user`` or
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

from grader.pipeline.grade import GradeConfig, grade_one
from grader.version import VERSION_FILE, kit_version

REPO = Path(__file__).resolve().parents[2]

#: Python versions the kit runs on (pyproject.toml: requires-python >=3.11; torch 2.13 has CPU wheels up to 3.13).
SUPPORTED_PYTHONS = ("3.11", "3.12", "3.13")

SETUP_SH = """#!/usr/bin/env bash
# Gradescope setup (base image Ubuntu 22.04 or 24.04; Debian 12 is checked by `make gradescope-check`): a final
# release of a supported Python (never a pre-release: Ubuntu 22.04's archive python3.11 is 3.11.0~rc1, on which
# torch fails), the pinned grading environment with the CPU build of torch in /autograder/venv, bubblewrap, the
# unprivileged user that runs submission code where the container allows no namespaces, and last a smoke test
# that grades one bundled component: an environment that cannot grade fails the build here, not the class.
# The kit is made readable by root only: submission code never runs as root.
#   CA15_WHEELS=DIR        install torch from the wheel folder DIR instead of PyTorch's CPU index
#   CA15_TORCH_INDEX=URL   another CPU-only index (default: PyTorch's)
set -euo pipefail
shopt -s inherit_errexit
export DEBIAN_FRONTEND=noninteractive
SUPPORTED_PYTHONS="@SUPPORTED@"
KIT="${CA15_KIT:-/autograder/source/ca15-kit}"
VENV="${CA15_VENV:-/autograder/venv}"
TORCH_INDEX="${CA15_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"

say() { echo "setup.sh: $*" >&2; }
die() { echo "setup.sh: FAILED: $*" >&2; exit 1; }

# The version apt would install for package $1 (its policy's candidate), empty when the archive has none.
candidate() {
    { apt-cache policy "$1" 2>/dev/null || true; } | awk '$1 == "Candidate:" && $2 != "(none)" { print $2 }'
}

# Whether a Debian package version ([epoch:]upstream[-revision]) is a final CPython release: its upstream part
# is exactly X.Y.Z. A '~' marks a pre-release (22.04's 3.11.0~rc1-1~22.04.1); 3.12.3-1ubuntu0.1 is final.
is_final_release() {
    local v="${1#*:}"
    v="${v%-*}"
    [[ "$v" =~ ^[0-9]+\\.[0-9]+\\.[0-9]+$ ]]
}

# What the interpreter $1 says of itself must agree: a supported X.Y, release level "final".
check_interpreter() {
    local report mm full level
    report="$("$1" -c 'import sys; v = sys.version_info; print("%d.%d %d.%d.%d %s" % (v[0], v[1], v[0], v[1], v[2], v[3]))' 2>&1)" \\
        || die "$1 does not run: $report"
    read -r mm full level <<<"$report"
    [[ " $SUPPORTED_PYTHONS " == *" $mm "* ]] || die "$1 is Python $full; the kit needs one of $SUPPORTED_PYTHONS"
    [[ "$level" == final ]] || die "$1 is Python $full $level, a pre-release: torch fails on it; refusing to build"
    say "Python $full ($level) at $(command -v "$1")"
}

# The interpreter for the venv, printed on stdout (everything else goes to stderr): the first supported
# python3.X, the system's own version first, whose archive package is a final release (Ubuntu 24.04: 3.12;
# Debian 12: 3.11), else python3.11 from the deadsnakes PPA (Ubuntu 22.04). Installs it with its venv module.
pick_python() {
    local system v version
    system="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)"
    for v in $system $SUPPORTED_PYTHONS; do
        case " $SUPPORTED_PYTHONS " in *" $v "*) ;; *) continue ;; esac
        version="$(candidate "python$v")"
        [[ -n "$version" && -n "$(candidate "python$v-venv")" ]] || continue
        if ! is_final_release "$version"; then
            say "not using the archive's python$v: its version $version is a pre-release"
            continue
        fi
        say "python$v $version from the apt archive"
        apt-get install -y -qq "python$v" "python$v-venv" "python$v-dev" >&2
        check_interpreter "python$v"
        echo "python$v"
        return 0
    done
    say "no final release of Python $SUPPORTED_PYTHONS in the apt archive (system python3: ${system:-none});" \\
        "adding the deadsnakes PPA for python3.11"
    apt-get install -y -qq software-properties-common >&2
    add-apt-repository -y ppa:deadsnakes/ppa >&2 || die "could not add the deadsnakes PPA (ppa:deadsnakes/ppa)"
    apt-get update -qq >&2
    version="$(candidate python3.11)"
    is_final_release "$version" || die "the deadsnakes PPA offers python3.11 '${version:-none}', not a final release"
    say "python3.11 $version from the deadsnakes PPA"
    apt-get install -y -qq python3.11 python3.11-venv python3.11-dev >&2
    check_interpreter python3.11
    echo python3.11
}

# torch alone, from a CPU-only source and never from PyPI (whose Linux torch is a multi-GB CUDA build): the
# exact pin of constraints.txt; its dependencies come with the kit's install below.
install_torch() {
    local pin
    pin="$(grep -E '^torch==' "$KIT/constraints.txt" | head -n 1 || true)"
    [[ -n "$pin" ]] || die "$KIT/constraints.txt pins no torch==X.Y.Z"
    if [[ -n "${CA15_WHEELS:-}" ]]; then
        say "installing $pin from the local wheel folder $CA15_WHEELS (CA15_WHEELS), not from an index"
        "$VENV/bin/pip" install --quiet --no-index --find-links "$CA15_WHEELS" --no-deps "$pin" \\
            || die "$pin: no CPU wheel for this Python in $CA15_WHEELS (CA15_WHEELS): $(ls "$CA15_WHEELS" | tr '\\n' ' ')"
    else
        say "installing $pin from PyTorch's CPU index $TORCH_INDEX (and nowhere else)"
        "$VENV/bin/pip" install --quiet --index-url "$TORCH_INDEX" --no-deps "$pin" \\
            || die "could not install $pin from PyTorch's CPU index $TORCH_INDEX; not falling back to PyPI, whose" \\
                   "torch is a multi-GB CUDA build. Let the build reach the index, or set CA15_WHEELS to a folder" \\
                   "holding the CPU wheel for this Python."
    fi
}

# Import torch, take one optimiser step, grade the bundled component: the build fails with the reason if not.
smoke() {
    say "smoke test: torch in $VENV, then one bundled component graded as a submission is"
    (cd "$KIT" && "$VENV/bin/python" -m grader gradescope smoke) \\
        || die "the smoke test failed (the reason is above): $VENV cannot grade, so this build must not be used"
}

main() {
    local start=$SECONDS python
    apt-get update -qq
    apt-get install -y -qq bubblewrap ca-certificates > /dev/null
    python="$(pick_python)"
    say "grading with $("$python" --version 2>&1) ($(command -v "$python")) in $VENV"
    "$python" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
    install_torch
    "$VENV/bin/pip" install --quiet -c "$KIT/constraints.txt" "$KIT[test]"
    id -u ca15-worker >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin ca15-worker
    chmod -R go-rwx "$(dirname "$KIT")"
    chmod -R a+rX "$VENV"
    smoke
    say "done in $((SECONDS - start)) s"
}

# Sourced (a test of pick_python), define only; run as a script, set up.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
""".replace("@SUPPORTED@", " ".join(SUPPORTED_PYTHONS))

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope entry point: grade /autograder/submission into /autograder/results/results.json. Gradescope runs a
# copy of this file as /autograder/run_autograder; the kit stays in /autograder/source/ca15-kit.
set -uo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
PY="${CA15_PYTHON:-/autograder/venv/bin/python}"
KIT="$ROOT/source/ca15-kit"
[[ -d "$KIT" ]] || KIT="$(dirname "$0")/ca15-kit"
cd "$KIT" || exit 1
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
        for name in ("pyproject.toml", "constraints.txt", "notebooks/CA15.ipynb"):  # the notebook: its cell ids
            if (kit / name).is_file():
                (dst / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(kit / name, dst / name)
        (dst / "README.md").write_text(KIT_README)
        (dst / VERSION_FILE).write_text(kit_version(kit) + "\n")
        smoke_submission(kit, dst / SMOKE_DIR)
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


#: The smoke test of setup.sh grades this component of a bundled submission: the untouched skeleton with the
#: reference's files of the component (the only reference code in the autograder, readable by root only).
#: RunningStats is the cheapest component to grade (about 10 s); it still runs the judge, a sandboxed worker
#: with torch, and the public and hidden tests.
SMOKE_COMPONENT = "RunningStats"
SMOKE_FILES = ("utils/running_stats.py",)
SMOKE_TESTS = ("running_stats",)
SMOKE_DIR = "smoke-submission"


def smoke_submission(kit: Path, dest: Path) -> Path:
    """The smoke test's submission at ``dest``: the generated skeleton, with :data:`SMOKE_FILES` from the
    reference."""
    from grader.authoring.generate import build as build_skeleton

    build_skeleton(kit / "reference", dest)
    for rel in SMOKE_FILES:
        if (kit / "reference" / rel).is_file():  # a miniature kit of the kit's own tests has other components
            shutil.copy2(kit / "reference" / rel, dest / rel)
    return dest


#: A torch check run in a fresh interpreter: the CPU build, and one optimiser step (torch.optim imports
#: torch._dynamo, which is where Python 3.11.0rc1 broke: no sys.get_int_max_str_digits).
TORCH_PROBE = """
import json, torch
model = torch.nn.Linear(3, 1)
opt = torch.optim.Adam(model.parameters(), lr=0.1)
loss = model(torch.ones(4, 3)).pow(2).mean()
loss.backward()
opt.step()
print(json.dumps({"torch": torch.__version__, "cuda": torch.version.cuda, "finite": bool(torch.isfinite(model.weight).all())}))
"""


def smoke(kit: Path, python: str = sys.executable, echo=print) -> list[str]:
    """What keeps this installation from grading: [] when it grades. Checks, in order, that ``python`` is a
    final release, that torch is the CPU build and takes an optimiser step, that no CUDA package is
    installed, and that the bundled smoke submission gets full marks on :data:`SMOKE_COMPONENT` with the
    sandbox engine ``run_autograder`` would pick (public and hidden tests; no notebook)."""
    import subprocess
    import time
    from importlib import metadata

    report = subprocess.run([python, "-c", "import sys, json; print(json.dumps(list(sys.version_info)))"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    if report.returncode != 0:
        return [f"{python} does not run: {report.stderr.strip()[-500:]}"]
    major, minor, micro, level, _ = json.loads(report.stdout)
    if level != "final":
        return [f"{python} is Python {major}.{minor}.{micro} {level}, a pre-release: torch fails on it"]
    echo(f"smoke: Python {major}.{minor}.{micro} ({python})")
    probe = subprocess.run([python, "-c", TORCH_PROBE], capture_output=True, text=True, timeout=600, cwd="/")
    if probe.returncode != 0:
        lines = probe.stderr.strip().splitlines()
        return [f"torch does not work in {python}: {lines[-1] if lines else f'exit status {probe.returncode}'}"]
    facts = json.loads(probe.stdout.strip().splitlines()[-1])
    if facts["cuda"] is not None:
        return [f"torch {facts['torch']} is a CUDA build (CUDA {facts['cuda']}); the kit grades with the CPU build"]
    if not facts["finite"]:
        return [f"torch {facts['torch']}: one Adam step gave non-finite weights"]
    cuda = sorted(d.metadata["Name"] for d in metadata.distributions() if d.metadata["Name"].lower().startswith("nvidia-"))
    if cuda:
        return [f"CUDA packages are installed beside the CPU build of torch: {', '.join(cuda)}"]
    echo(f"smoke: torch {facts['torch']} (CPU build): one Adam step")
    user = os.environ.get(SANDBOX_USER_ENV) or GradeConfig.sandbox_user
    engine = choose_sandbox(python, user)
    config = GradeConfig(kit=kit, python=python, run_notebook=False, only=SMOKE_TESTS, sandbox=engine, sandbox_user=user)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ca15-smoke-") as tmp:
        row = grade_one(kit / SMOKE_DIR, Path(tmp), config)
        results = json.loads((Path(tmp) / SMOKE_DIR / "results.json").read_text())
    failed = [t["name"] for t in results["tests"] if t["max_score"] and t["status"] != "passed"]
    if row["score"] != row["max_score"] or not row["max_score"] or failed:
        return [f"the bundled {SMOKE_COMPONENT} submission scored {row['score']}/{row['max_score']} with the "
                f"{engine} engine (status {row['status']!r}); failed: {'; '.join(failed) or 'none'}. "
                f"{results.get('output', '')[:1000]}"]  # fmt: skip
    echo(f"smoke: {SMOKE_COMPONENT} graded {row['score']}/{row['max_score']} with the {engine} engine in "
         f"{time.monotonic() - start:.0f} s ({results['extra_data']['grader']['summary']})")  # fmt: skip
    return []


#: Environment variables that pick the worker sandbox's engine and the "user" engine's account (for tests).
SANDBOX_ENV = "CA15_SANDBOX"
SANDBOX_USER_ENV = "CA15_SANDBOX_USER"
ENGINES = ("bwrap", "user", "none")


def choose_sandbox(python: str, user: str | None = None) -> str:
    """``$CA15_SANDBOX`` when set, else bubblewrap where the container allows it, else the unprivileged
    ``user`` (default: ``ca15-worker``, made by setup.sh) where it exists, else none."""
    import pwd

    from grader.judge.sandbox import SANDBOX_USER, SandboxUnavailable, check_bwrap

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
            if config.sandbox == "user":
                from grader.judge.sandbox import check_kit_private

                check_kit_private(config.kit)  # fail closed: a readable kit would be every submission's
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
    sub.add_parser("smoke", help="check that this installation grades (what setup.sh runs last)")
    args = parser.parse_args(argv)
    if args.command == "build":
        print(f"wrote {build(args.out)}")
        return 0
    kit = Path(__file__).resolve().parents[2]
    if args.command == "smoke":
        problems = smoke(kit)
        for problem in problems:
            print(f"smoke test FAILED: {problem}", file=sys.stderr)
        return 1 if problems else 0
    print(f"wrote {run(args.root, GradeConfig(kit=kit))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
