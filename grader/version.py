"""The kit's version as staff see it in every results.json: the release and the commit it was built from.

``make gradescope`` stamps it into the autograder (``ca15-kit/VERSION``), where there is no ``.git``; a
checkout computes it from git. ``0.1.0+g21def59`` is commit 21def59; ``.dirty`` marks uncommitted changes.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from grader import __version__

VERSION_FILE = "VERSION"


@functools.cache
def kit_version(kit: Path) -> str:
    """``VERSION`` in ``kit`` when the kit is a build (the autograder), else the release plus the git commit."""
    stamped = kit / VERSION_FILE
    if stamped.is_file():
        return stamped.read_text(encoding="utf-8", errors="replace").strip()[:100] or __version__
    try:
        sha = subprocess.run(["git", "-C", str(kit), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(kit), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=30).stdout.strip()  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return __version__
    if not sha:
        return __version__
    return f"{__version__}+g{sha}" + (".dirty" if dirty else "")
