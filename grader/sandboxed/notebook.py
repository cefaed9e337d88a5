"""Execute an assignment notebook against an implementation root (used by the grader and ``make notebook``).

    python -m grader.sandboxed.notebook NOTEBOOK --impl ROOT --out EXECUTED.ipynb [--cell-timeout 120] [--budget grading]

The notebook runs in a fresh kernel with ``CA15_IMPL=ROOT`` and ``CA15_BUDGET`` (``full``, or ``grading``: the
grader's run, where each experiment cell trains on its small grading budget), every cell even after an error
(as a TA's "Run All" would show), each cell limited to ``--cell-timeout`` seconds. The executed copy (outputs, figures,
errors) is written to ``--out``; a summary of the cells that raised goes to stdout. The grader runs this
inside its sandbox on the kit's own copy of the assignment notebook, and credits each cell from the
``execute_reply`` status this driver reports over the grader's signed channel
(:func:`grader.pipeline.notebook_credit.credit_run`).
Exit status: 0 when no cell raised, 1 otherwise, 2 when the notebook
could not be read or ``--impl`` is not a folder (``--impl`` may be relative to the working folder or absolute).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


BUDGETS = ("full", "grading")


def execute(path: Path, impl: Path, out: Path, cell_timeout: int = 120, stop_at_first_error: bool = False,
            report=None, budget: str = "full") -> dict:  # fmt: skip
    """Run ``path`` with ``CA15_IMPL=impl`` and ``CA15_BUDGET=budget`` (one of :data:`BUDGETS`); write the
    executed notebook to ``out``; return a summary dict
    ``{"cells": n_code_cells, "errors": [{"cell": i, "ename": ..., "evalue": ...}], "seconds": t}``.

    Every cell runs, also after an error (the grader reports each cell's error), unless
    ``stop_at_first_error``: then the cells after the first failing one are left unexecuted. ``report``
    (the grader's signed channel) receives, per executed code cell, the status of the kernel's
    ``execute_reply`` as this driver saw it: ``{"type": "cell", "id", "status", "execution_count", "ename",
    "evalue"}``, the facts the grader credits (an error output hidden in the kernel still replies "error")."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    if budget not in BUDGETS:
        raise ValueError(f"budget: expected one of {BUDGETS}, got {budget!r}")
    nb = nbformat.read(path, as_version=4)
    os.environ["CA15_IMPL"] = str(impl)
    os.environ["CA15_BUDGET"] = budget
    os.environ.setdefault("MPLBACKEND", "Agg")
    client = NotebookClient(
        nb,
        timeout=cell_timeout,
        kernel_name="python3",
        allow_errors=not stop_at_first_error,
        resources={"metadata": {"path": str(path.parent)}},
    )
    if report is not None:
        def executed(cell, cell_index, execute_reply) -> None:  # nbclient's hook, in this driver's process
            content = (execute_reply or {}).get("content", {}) if isinstance(execute_reply, dict) else {}
            report({"type": "cell", "id": str(cell.get("id")), "status": str(content.get("status")),
                    "execution_count": content.get("execution_count"), "ename": str(content.get("ename", ""))[:100],
                    "evalue": str(content.get("evalue", ""))[:500]})  # fmt: skip

        client.on_cell_executed = executed
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


def _driver_channel():
    """The grader's report channel (when this driver runs under it), made unreachable for the kernel it is
    about to start: the key and descriptor leave the environment, the descriptor is close-on-exec, and this
    process becomes non-dumpable, so that a process of the same account (the kernel, a daemon it forks)
    can read neither its /proc environ, memory nor descriptors."""
    from grader.sandboxed.channel import child_channel

    emit = child_channel()
    if emit is not None:
        import ctypes

        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    return emit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--impl", type=Path, required=True,
                        help="implementation root (CA15_IMPL), relative to the working folder or absolute")
    parser.add_argument("--out", type=Path, required=True, help="where to write the executed notebook")
    parser.add_argument("--cell-timeout", type=int, default=120, help="seconds per cell (default: 120)")
    parser.add_argument("--budget", choices=BUDGETS, default="full",
                        help="CA15_BUDGET for the notebook: its full training budgets (default), or the grader's "
                             "small ones (every cell still runs)")
    args = parser.parse_args(argv)
    impl = args.impl.expanduser().resolve()  # relative to the working folder, or absolute
    if not impl.is_dir():
        parser.error(f"--impl: expected an implementation root (a folder holding model_based_rl/, planning/, ...), "
                     f"got {args.impl} ({impl} is not a folder)")  # fmt: skip
    report = _driver_channel()
    try:
        summary = execute(args.notebook, impl, args.out, args.cell_timeout, report=report, budget=args.budget)
    except Exception as exc:  # noqa: BLE001 - unreadable notebook: report, do not crash the grader
        print(f"could not execute {args.notebook}: {type(exc).__name__}: {exc}")
        return 2
    for err in summary["errors"]:
        print(f"cell {err['cell']}: {err['ename']}: {err['evalue']}")
    print(f"{summary['cells']} code cells, {len(summary['errors'])} with errors, {summary['seconds']} s")
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
