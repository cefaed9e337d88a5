"""Notebook credit: what the grader credits for the notebook, from the cell records the sandboxed driver
(``grader.sandboxed.notebook``) signed, and the submitted notebook read as data."""

from __future__ import annotations


def credit_run(records: list[dict], assignment: dict | None, submitted: dict | None) -> dict:
    """What the grader credits for the notebook, from facts the submission cannot touch: the assignment's code
    cells (the kit's own copy, by id) as executed against the submission's implementation, each with the
    ``execute_reply`` status the driver reported over the signed channel (``records``); and, read as data,
    whether the submitted notebook holds those cells (an unrelated notebook earns nothing). Cells a student
    adds never run, so they cannot change any cell's credit.

    Returns ``{"ran", "cells", "missing": [ids], "not_run": [labels], "errors": [{"cell", "ename",
    "evalue"}], "why"}``; a cell is labelled as Jupyter shows it: ``[7] first line``.
    """
    cells = submitted.get("cells") if isinstance(submitted, dict) else None
    if not isinstance(cells, list):
        return {"ran": False, "why": "The submitted notebook could not be read."}
    code = [c for c in (assignment or {}).get("cells", []) if c.get("cell_type") == "code"]
    present = {c.get("id") for c in cells if isinstance(c, dict)}
    missing = [c.get("id") for c in code if c.get("id") not in present]
    if code and len(missing) == len(code):
        return {"ran": False, "missing": missing,
                "why": (f"This is not the assignment's notebook: none of its {len(code)} code cells (ids "
                        f"{code[0].get('id')} ... {code[-1].get('id')}) is in it. Submit the CA15.ipynb you were "
                        "given, with your work in it.")}  # fmt: skip
    seen = {r.get("id"): r for r in records if r.get("type") == "cell"}
    errors, not_run = [], []
    for cell in code:
        record = seen.get(cell.get("id"))
        label = cell_label({**cell, "execution_count": (record or {}).get("execution_count")})
        if record is None:
            not_run.append(label)
        elif record.get("status") != "ok":
            errors.append({"cell": label, "ename": str(record.get("ename") or record.get("status"))[:100],
                           "evalue": str(record.get("evalue", ""))[:500]})  # fmt: skip
    return {"ran": bool(seen), "cells": len(code), "missing": missing, "not_run": not_run, "errors": errors,
            **({} if seen else {"why": "The notebook run stopped before its first cell ran."})}  # fmt: skip


def cell_label(cell: dict) -> str:
    """``[7] first line of the cell`` (``[ ]`` when it never ran), as Jupyter shows it."""
    source = cell.get("source", "")
    source = "".join(source) if isinstance(source, list) else str(source)
    first = next((line.strip() for line in source.splitlines() if line.strip()), "(empty cell)")
    count = cell.get("execution_count")
    return f"[{count if isinstance(count, int) else ' '}] {first[:80]}"
