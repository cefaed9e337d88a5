"""Which processes a test's run left: by command line or by working folder."""

from __future__ import annotations

import os
from pathlib import Path


def processes_under(folder: Path | str) -> list[str]:
    """``PID ARGS`` of every process but this one whose command line names ``folder`` or whose working folder
    lies in it. A forked judge (grader/judge/forkserver.py) has its fork server's command line: only its
    working folder (the run's workspace) tells that it belongs to the run."""
    folder = str(folder)
    found = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone meanwhile
            continue
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:  # gone meanwhile, or another account's (its command line still counts)
            cwd = ""
        if folder in args or cwd == folder or cwd.startswith(folder.rstrip("/") + "/"):
            found.append(f"{pid} {args}")
    return found
