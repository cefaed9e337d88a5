"""Execute an assignment notebook against an implementation root (used by the grader and ``make notebook``).

    python -m grader.notebook NOTEBOOK --impl ROOT --out EXECUTED.ipynb [--cell-timeout 120]

The notebook runs in a fresh kernel with ``CA15_IMPL=ROOT``, every cell even after an error (as a TA's
"Run All" would show), each cell limited to ``--cell-timeout`` seconds. The executed copy (outputs, figures,
errors) is written to ``--out``; a summary of the cells that raised goes to stdout. The grader runs this
inside its sandbox and then credits the executed notebook itself (:func:`credit`), reading it as data.
Exit status: 0 when no cell raised, 1 otherwise, 2 when the notebook
could not be read or ``--impl`` is not a folder (``--impl`` may be relative to the working folder or absolute).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def execute(path: Path, impl: Path, out: Path, cell_timeout: int = 120, stop_at_first_error: bool = False) -> dict:
    """Run ``path`` with ``CA15_IMPL=impl``; write the executed notebook to ``out``; return a summary dict
    ``{"cells": n_code_cells, "errors": [{"cell": i, "ename": ..., "evalue": ...}], "seconds": t}``.

    Every cell runs, also after an error (the grader reports each cell's error), unless
    ``stop_at_first_error``: then the cells after the first failing one are left unexecuted."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(path, as_version=4)
    os.environ["CA15_IMPL"] = str(impl)
    os.environ.setdefault("MPLBACKEND", "Agg")
    client = NotebookClient(
        nb,
        timeout=cell_timeout,
        kernel_name="python3",
        allow_errors=not stop_at_first_error,
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.monotonic()
    fatal = None
    try:
        client.execute()
    except CellExecutionError:  # stop_at_first_error: the failing cell's error output is in the notebook
        pass
    except (CellTimeoutError, DeadKernelError, RuntimeError) as exc:  # a hung cell or a killed kernel
        fatal = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    errors = []
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    for index, cell in enumerate(code_cells, start=1):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                errors.append({"cell": index, "ename": output.get("ename"), "evalue": output.get("evalue", "")[:500]})
                break
    if fatal:
        errors.append({"cell": None, "ename": "NotebookAborted", "evalue": fatal})
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)
    return {"cells": len(code_cells), "errors": errors, "seconds": round(time.monotonic() - start, 2)}


def credit(executed: dict, assignment: dict | None) -> dict:
    """What the grader credits, read from an executed notebook as data (the grader never trusts a summary
    written inside the sandbox): the assignment's code cells (by their stable ids, from the kit's
    ``CA15.ipynb``) must all be present, executed, and free of errors.

    Returns ``{"ran", "cells", "missing": [ids], "not_run": [labels], "errors": [{"cell", "ename",
    "evalue"}], "why"}``; a cell is labelled as the notebook shows it: ``[7] first line``.
    """
    cells = executed.get("cells") if isinstance(executed, dict) else None
    if not isinstance(cells, list):
        return {"ran": False, "why": "The executed notebook could not be read."}
    code = [c for c in cells if isinstance(c, dict) and c.get("cell_type") == "code"]
    wanted = [c.get("id") for c in (assignment or {}).get("cells", []) if c.get("cell_type") == "code"]
    present = {c.get("id") for c in code}
    missing = [i for i in wanted if i not in present]
    errors, not_run = [], []
    for cell in code:
        label = cell_label(cell)
        if cell.get("id") in wanted and cell.get("execution_count") is None:
            not_run.append(label)
        for output in cell.get("outputs") or []:
            if isinstance(output, dict) and output.get("output_type") == "error":
                errors.append({"cell": label, "ename": str(output.get("ename"))[:100],
                               "evalue": str(output.get("evalue", ""))[:500]})  # fmt: skip
                break
    summary = {"ran": True, "cells": len(code), "missing": missing, "not_run": not_run, "errors": errors}
    if wanted and len(missing) == len(wanted):
        summary["ran"] = False
        summary["why"] = (f"This is not the assignment's notebook: none of its {len(wanted)} code cells "
                          f"(ids {wanted[0]} ... {wanted[-1]}) is in it. Submit the CA15.ipynb you were given, "
                          "with your work in it.")  # fmt: skip
    return summary


def cell_label(cell: dict) -> str:
    """``[7] first line of the cell`` (``[ ]`` when it never ran), as Jupyter shows it."""
    source = cell.get("source", "")
    source = "".join(source) if isinstance(source, list) else str(source)
    first = next((line.strip() for line in source.splitlines() if line.strip()), "(empty cell)")
    count = cell.get("execution_count")
    return f"[{count if isinstance(count, int) else ' '}] {first[:80]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--impl", type=Path, required=True,
                        help="implementation root (CA15_IMPL), relative to the working folder or absolute")
    parser.add_argument("--out", type=Path, required=True, help="where to write the executed notebook")
    parser.add_argument("--cell-timeout", type=int, default=120, help="seconds per cell (default: 120)")
    args = parser.parse_args(argv)
    impl = args.impl.expanduser().resolve()  # relative to the working folder, or absolute
    if not impl.is_dir():
        parser.error(f"--impl: expected an implementation root (a folder holding model_based_rl/, planning/, ...), "
                     f"got {args.impl} ({impl} is not a folder)")  # fmt: skip
    try:
        summary = execute(args.notebook, impl, args.out, args.cell_timeout)
    except Exception as exc:  # noqa: BLE001 - unreadable notebook: report, do not crash the grader
        print(f"could not execute {args.notebook}: {type(exc).__name__}: {exc}")
        return 2
    for err in summary["errors"]:
        print(f"cell {err['cell']}: {err['ename']}: {err['evalue']}")
    print(f"{summary['cells']} code cells, {len(summary['errors'])} with errors, {summary['seconds']} s")
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
