"""Run the seed notebook's code cells (``notebooks/seed_cells.py``) against an implementation root.

    python -m grader.authoring.seed_cells [--impl reference] [--cells 1-6] [--quiet]

Cells run in order in one namespace, as in a notebook; each cell's output is printed under a header, an
error is reported with its traceback and the run goes on with the next cell (as "Run All" with errors
allowed would). Exit status: 0 when every selected cell ran, 1 otherwise. The root is passed to the cells
through ``CA15_IMPL``, as the grader does.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from grader.sandboxed.impl import resolve_root

REPO = Path(__file__).resolve().parents[2]
SEED_CELLS = REPO / "notebooks" / "seed_cells.py"
_CELL = re.compile(r"^# %% \[cell (\d+)\]\s*$", re.MULTILINE)


@dataclass
class CellResult:
    """What one cell did: its number, printed output, error (traceback text or None) and seconds."""

    number: int
    output: str
    error: str | None
    seconds: float


def parse_cells(text: str) -> dict[int, str]:
    """Cell number -> code, from a file whose cells start with ``# %% [cell N]`` lines."""
    pieces = _CELL.split(text)
    return {int(pieces[i]): pieces[i + 1].strip("\n") + "\n" for i in range(1, len(pieces), 2)}


def parse_selection(spec: str, available: list[int]) -> list[int]:
    """``"1-6,11"`` -> ``[1, 2, 3, 4, 5, 6, 11]`` (only cells that exist); ``"all"`` -> every cell."""
    if spec == "all":
        return sorted(available)
    chosen: set[int] = set()
    for part in spec.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise ValueError(f"--cells: expected numbers and ranges like '1-6,11', got {spec!r}")
        low = int(match.group(1))
        high = int(match.group(2) or low)
        chosen.update(range(low, high + 1))
    missing = sorted(chosen - set(available))
    if missing:
        raise ValueError(f"--cells: cells {missing} do not exist (the seed has cells {sorted(available)})")
    return sorted(chosen)


def run_cells(impl_root: Path, cells: list[int], echo: bool = True) -> list[CellResult]:
    """Execute the selected cells in one namespace (cells before the first selected one run too, silently
    unless they fail: later cells need their definitions)."""
    os.environ["CA15_IMPL"] = str(impl_root)
    code = parse_cells(SEED_CELLS.read_text())
    namespace: dict[str, object] = {"__name__": "__main__"}
    results = []
    for number in sorted(n for n in code if n <= max(cells)):
        buffer = io.StringIO()
        start = time.perf_counter()
        error = None
        with contextlib.redirect_stdout(buffer):
            try:
                exec(compile(code[number], f"<seed cell {number}>", "exec"), namespace)
            except BaseException:  # noqa: BLE001 - a cell's failure (even SystemExit) is recorded
                error = traceback.format_exc()
        result = CellResult(number, buffer.getvalue(), error, time.perf_counter() - start)
        if number in cells or error:
            results.append(result)
            if echo:
                status = "ERROR" if error else "ok"
                print(f"----- cell {number} ({status}, {result.seconds:.2f} s) -----")
                print(result.output, end="")
                if error:
                    print(error, end="")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", default="reference", help="implementation root (default: reference)")
    parser.add_argument("--cells", default="all", help="cells to run, e.g. '1-6,11' (default: all)")
    args = parser.parse_args(argv)
    try:
        root = resolve_root(args.impl, Path.cwd())
        cells = parse_selection(args.cells, list(parse_cells(SEED_CELLS.read_text())))
    except ValueError as exc:
        parser.error(str(exc))
    results = run_cells(root, cells)
    failed = [r.number for r in results if r.error]
    print(f"===== {len(results) - len(failed)}/{len(results)} cells ran; failed: {failed or 'none'} =====")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
