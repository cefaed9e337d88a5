"""The first stage of grading: a submission (a folder or a ``.zip``) copied into the grader's workspace as
regular files only, within size limits, and the implementation root and notebook found inside it.

Everything here reads the submission as data; nothing of it runs. Used by the grading pipeline
(:mod:`grader.pipeline.grade`) and by the TA's tools that read submissions again (similarity, LMS names).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import zipfile
from pathlib import Path

EXPECTED_PACKAGES = ("model_based_rl", "hierarchical_rl", "planning", "environments")
NOTEBOOK_NAME = "CA15.ipynb"
MAX_UNPACKED_BYTES = 200 * 2**20
MAX_ENTRIES = 20_000
#: Folders a submission may carry that are never part of it (environments, caches, version control).
SKIPPED_DIRS = {".venv", "venv", "env", ".git", "__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".hypothesis",
                "node_modules", "__MACOSX"}  # fmt: skip


class SubmissionError(Exception):
    """The submission cannot be graded at all (unreadable archive, no implementation root)."""


def submission_name(path: Path) -> str:
    """A file-system-safe name for a submission: its folder name or zip stem."""
    stem = path.name[:-4] if path.suffix.lower() == ".zip" else path.name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "submission"


def unpack(submission: Path, dest: Path) -> list[str]:
    """Copy a folder or extract a zip into ``dest``; returns what was left out and why.

    Only regular files and folders come in: links (symbolic and hard), FIFOs and devices are left out, as are
    environments and caches (``SKIPPED_DIRS``). Path escapes are refused, and so is a submission of more than
    ``MAX_UNPACKED_BYTES`` (counted as the bytes really written, whatever the archive's headers claim) or
    more than ``MAX_ENTRIES`` files.
    """
    if submission.is_dir():
        return _copy_folder(submission, dest)
    if submission.suffix.lower() != ".zip" or not submission.is_file():
        raise SubmissionError(f"expected a folder or a .zip file, got {submission}")
    left_out: list[str] = []
    try:
        with zipfile.ZipFile(submission) as archive:
            infos = [i for i in archive.infolist() if not SKIPPED_DIRS & set(Path(i.filename).parts)]
            if len(infos) > MAX_ENTRIES:
                raise SubmissionError(f"the archive holds {len(infos)} entries, more than the {MAX_ENTRIES} allowed")
            if sum(i.file_size for i in infos) > MAX_UNPACKED_BYTES:
                raise SubmissionError(f"the archive unpacks to more than {MAX_UNPACKED_BYTES >> 20} MiB")
            dest.mkdir(parents=True)
            budget = MAX_UNPACKED_BYTES
            for info in infos:
                target = (dest / info.filename).resolve()
                if not target.is_relative_to(dest.resolve()):
                    raise SubmissionError(f"the archive entry {info.filename!r} points outside the submission")
                if stat.S_ISLNK(info.external_attr >> 16):
                    left_out.append(f"{info.filename!r} (a link)")
                    continue
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(target, "wb") as out:
                    while chunk := src.read(1 << 20):
                        budget -= len(chunk)
                        if budget < 0:  # the headers lied: a zip bomb
                            raise SubmissionError(f"the archive unpacks to more than {MAX_UNPACKED_BYTES >> 20} MiB")
                        out.write(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
        raise SubmissionError(f"not a readable zip archive: {exc}") from exc
    return left_out


def _copy_folder(src: Path, dest: Path) -> list[str]:
    """Copy regular files only (never through a link: a hard link could name any file of the grader's)."""
    left_out: list[str] = []
    budget, count = MAX_UNPACKED_BYTES, 0
    for folder, dirs, files in os.walk(src):
        rel = Path(folder).relative_to(src)
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not (Path(folder) / d).is_symlink())
        (dest / rel).mkdir(parents=True, exist_ok=True)
        for name in sorted(files):
            path = Path(folder) / name
            info = path.lstat()
            if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
                left_out.append(f"{str(rel / name)!r} ({'a hard link' if stat.S_ISREG(info.st_mode) else 'not a regular file'})")
                continue
            if name.endswith(".pyc"):
                continue
            count += 1
            budget -= info.st_size
            if count > MAX_ENTRIES or budget < 0:
                raise SubmissionError(f"the submission is larger than {MAX_UNPACKED_BYTES >> 20} MiB or "
                                      f"{MAX_ENTRIES} files")  # fmt: skip
            with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NOFOLLOW)) as fh_in, \
                    open(dest / rel / name, "wb") as fh_out:  # fmt: skip
                shutil.copyfileobj(fh_in, fh_out)
    return left_out


def find_root(folder: Path) -> Path:
    """The implementation root inside a submission: the shallowest folder holding the expected packages."""
    candidates = [folder] + sorted(p for p in folder.rglob("*") if p.is_dir() and len(p.relative_to(folder).parts) <= 3)
    best = max(candidates, key=lambda d: (sum((d / n).is_dir() for n in EXPECTED_PACKAGES), -len(d.parts)))
    found = [n for n in EXPECTED_PACKAGES if (best / n).is_dir()]
    if not found:
        raise SubmissionError(
            f"no implementation root found: expected a folder holding {', '.join(EXPECTED_PACKAGES)} and utils "
            "at the top of the submission or in a folder inside it (`make submit` in the student release packs "
            "the contents of your skeleton/ with CA15.ipynb at the zip's top level)"
        )
    return best


def find_notebook(folder: Path) -> Path | None:
    """The submission's notebook: the shallowest ``CA15.ipynb`` (``make submit`` puts it at the top, next to the
    implementation folders; the release keeps it in ``notebooks/``), else the shallowest whose name matches
    ``ca15.ipynb`` in any case, else the only ``.ipynb``; None if there is none."""
    books = sorted((p for p in folder.rglob("*.ipynb") if not SKIPPED_DIRS & set(p.relative_to(folder).parts)),
                   key=lambda p: (len(p.relative_to(folder).parts), str(p)))  # fmt: skip
    for named in ([p for p in books if p.name == NOTEBOOK_NAME],
                  [p for p in books if p.name.lower() == NOTEBOOK_NAME.lower()]):  # fmt: skip
        if named:
            return named[0]
    return books[0] if len(books) == 1 else None
