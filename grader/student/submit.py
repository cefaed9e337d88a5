"""Pack a submission: ``make submit`` in the student release writes ``submission.zip``.

    python -m grader.student.submit [--impl skeleton] [--notebook notebooks/CA15.ipynb] [--out submission.zip]

The one submission layout that ``ca15-grade``, the Gradescope autograder and the bundled examples share (the
zip's top level, no enclosing folder)::

    model_based_rl/  hierarchical_rl/  planning/  environments/  utils/  ...   the contents of your implementation root
    CA15.ipynb                                                                  your notebook

Everything in the implementation root goes in except what is never part of a submission: environments,
caches and checkpoints (:data:`SKIPPED_DIRS`, the grader's own list), compiled files, links, and notebooks
(the one notebook is ``CA15.ipynb`` at the top). A missing folder or notebook is refused with a message
that names it and says what to do. Standard library only: it runs before ``make install`` too.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
import zipfile
from pathlib import Path

#: The packages the notebook and the grader import from an implementation root (``utils`` may be a module).
REQUIRED_PACKAGES = ("model_based_rl", "hierarchical_rl", "planning", "environments")
NOTEBOOK_NAME = "CA15.ipynb"
#: Never part of a submission; the same set as ``grader.pipeline.grade.SKIPPED_DIRS`` (a kit test keeps them equal).
SKIPPED_DIRS = {".venv", "venv", "env", ".git", "__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".hypothesis",
                "node_modules", "__MACOSX"}  # fmt: skip
SKIPPED_SUFFIXES = (".pyc", ".pyo", ".ipynb")
#: What the grader accepts (``grader.pipeline.unpack.MAX_UNPACKED_BYTES`` / ``MAX_ENTRIES``).
MAX_BYTES = 200 * 2**20
MAX_FILES = 20_000


class SubmitError(Exception):
    """The submission cannot be packed; the message names the missing or faulty file and what to do."""


def submission_files(impl: Path, notebook: Path) -> tuple[list[tuple[str, Path]], list[str]]:
    """The files of a submission as ``(name in the zip, path)`` pairs, sorted, and what was left out and why.

    Raises:
        SubmitError: ``impl`` is not an implementation root (a required package or ``utils`` is missing),
            ``notebook`` is missing or not a notebook, or the submission is larger than the grader accepts.
    """
    if not impl.is_dir():
        raise SubmitError(f"IMPL: expected your implementation root (the folder holding {', '.join(REQUIRED_PACKAGES)} "
                          f"and utils), got {impl}, which is not a folder; run `make submit` in the folder that "
                          "holds skeleton/, or pass IMPL=path/to/your/root")  # fmt: skip
    missing = [f"{impl / name}/" for name in REQUIRED_PACKAGES if not (impl / name).is_dir()]
    if not (impl / "utils").is_dir() and not (impl / "utils.py").is_file():
        missing.append(f"{impl / 'utils'}/ (or utils.py)")
    if missing:
        raise SubmitError(f"IMPL: {', '.join(missing)} missing from {impl}: the notebook and the grader import these "
                          "from your implementation root; restore them (a fresh copy is in the release you were "
                          "given) or pass IMPL=path/to/your/root")  # fmt: skip
    if not notebook.is_file():
        raise SubmitError(f"NOTEBOOK: {notebook} is missing: save your notebook there (Jupyter: File > Save) or pass "
                          f"NOTEBOOK=path/to/{NOTEBOOK_NAME}; it is submitted as {NOTEBOOK_NAME} next to your code")  # fmt: skip
    try:
        book = json.loads(notebook.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise SubmitError(f"NOTEBOOK: {notebook} is not a readable notebook ({exc}); open it in Jupyter and save "
                          "it again") from exc  # fmt: skip
    if not isinstance(book, dict) or "cells" not in book:
        raise SubmitError(f"NOTEBOOK: {notebook} is JSON but not a notebook (no 'cells'); pass the notebook you "
                          "worked in")  # fmt: skip
    files: list[tuple[str, Path]] = []
    left_out: list[str] = []
    size = notebook.stat().st_size
    for folder, dirs, names in os.walk(impl):
        here = Path(folder)
        rel = here.relative_to(impl)
        left_out += [f"{(rel / d).as_posix()}/ (a link)" for d in sorted(dirs) if (here / d).is_symlink()]
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not (here / d).is_symlink())
        for name in sorted(names):
            path = here / name
            arcname = (rel / name).as_posix()
            mode = path.lstat().st_mode
            if not stat.S_ISREG(mode):
                left_out.append(f"{arcname} ({'a link' if stat.S_ISLNK(mode) else 'not a regular file'})")
            elif name.endswith(SKIPPED_SUFFIXES):
                if name.endswith(".ipynb"):
                    left_out.append(f"{arcname} (notebooks come from NOTEBOOK, as {NOTEBOOK_NAME})")
            else:
                files.append((arcname, path))
                size += path.stat().st_size
    files.append((NOTEBOOK_NAME, notebook))
    if len(files) > MAX_FILES or size > MAX_BYTES:
        raise SubmitError(f"the submission would hold {len(files)} files, {size / 2**20:.1f} MiB; the grader accepts "
                          f"at most {MAX_FILES} files and {MAX_BYTES >> 20} MiB: remove data, checkpoints and "
                          f"outputs from {impl}")  # fmt: skip
    return sorted(files), left_out


def write_zip(files: list[tuple[str, Path]], out: Path) -> Path:
    """Write ``files`` (``(name in the zip, path)`` pairs) to the zip ``out`` (replaced). Returns ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for arcname, path in files:
            archive.write(path, arcname)
    os.replace(partial, out)
    return out


def write_folder(files: list[tuple[str, Path]], out: Path) -> Path:
    """Write ``files`` into the folder ``out`` with the zip's layout (for the bundled examples). Returns ``out``."""
    import shutil

    for arcname, path in files:
        (out / arcname).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, out / arcname)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Pack your submission: your implementation root and your notebook.")
    parser.add_argument("--impl", type=Path, default=Path("skeleton"), help="implementation root (default: skeleton)")
    parser.add_argument("--notebook", type=Path, default=Path("notebooks") / NOTEBOOK_NAME,
                        help=f"your notebook (default: notebooks/{NOTEBOOK_NAME})")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("submission.zip"), help="default: submission.zip")
    args = parser.parse_args(argv)
    if args.out.suffix.lower() != ".zip":
        parser.error(f"--out: expected a .zip file name, got {args.out}")
    try:
        files, left_out = submission_files(args.impl, args.notebook)
    except SubmitError as exc:
        print(f"make submit: not written: {exc}", file=sys.stderr)
        return 2
    write_zip(files, args.out)
    for entry in left_out:
        print(f"  left out: {entry}")
    print(f"wrote {args.out}: {len(files) - 1} files of {args.impl}/ and {args.notebook} as {NOTEBOOK_NAME}; "
          "upload this file")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
