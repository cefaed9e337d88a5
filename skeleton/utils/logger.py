"""A small scalar logger: in memory, optionally mirrored to CSV and JSON-lines files. Pure Python.

Files written under ``log_dir`` (when given):
    ``<name>.csv``    long format, one row per scalar: ``step,name,value``
    ``<name>.jsonl``  one JSON object per ``log`` call: ``{"step": 10, "loss": 0.5, "return": 12.0}``

:meth:`Logger.load` reads either file back into a new (in-memory) Logger, so a run's curves can be
re-plotted later. Given code (no student task).
"""

from __future__ import annotations

import csv
import json
import math
import numbers
from pathlib import Path
from typing import Any

__all__ = ["Logger"]


def _to_float(name: str, value: Any) -> float:
    """A scalar (python/numpy number, 0-d or 1-element tensor/array) as float."""
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()
        except (ValueError, RuntimeError) as exc:
            raise ValueError(f"{name} must be a scalar, got an array/tensor with several elements") from exc
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    return float(value)


class Logger:
    """Record scalars per step; optionally write them to ``log_dir`` as CSV and JSON lines.

    Args:
        log_dir: folder for the files (created if needed); None keeps everything in memory.
        name: file stem of the files (``metrics`` -> ``metrics.csv``, ``metrics.jsonl``).
        verbose: print each ``log`` call.

    Example:
        >>> logger = Logger("runs/dyna")
        >>> logger.log(step=10, loss=0.5, episode_return=12.0)
        >>> steps, values = logger.get("loss")
    """

    def __init__(self, log_dir: str | Path | None = None, name: str = "metrics", verbose: bool = False) -> None:
        if not isinstance(name, str) or not name or "/" in name or "\\" in name:
            raise ValueError(f"name must be a non-empty file stem without slashes, got {name!r}")
        self.name = name
        self.verbose = bool(verbose)
        self.log_dir = None if log_dir is None else Path(log_dir)
        self._data: dict[str, tuple[list[int], list[float]]] = {}
        self._records: list[dict[str, float]] = []
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self.csv_path.write_text("step,name,value\n")
            self.jsonl_path.write_text("")

    # ------------------------------------------------------------------ paths
    @property
    def csv_path(self) -> Path | None:
        """Path of the CSV file, None without ``log_dir``."""
        return None if self.log_dir is None else self.log_dir / f"{self.name}.csv"

    @property
    def jsonl_path(self) -> Path | None:
        """Path of the JSON-lines file, None without ``log_dir``."""
        return None if self.log_dir is None else self.log_dir / f"{self.name}.jsonl"

    # ------------------------------------------------------------------ logging
    def log(self, step: int, **scalars: Any) -> None:
        """Record several scalars at one ``step``: ``logger.log(5, loss=0.1, reward=3.0)``."""
        if isinstance(step, bool) or not isinstance(step, numbers.Integral):
            raise ValueError(f"step must be an integer, got {step!r}")
        step = int(step)
        values = {k: _to_float(k, v) for k, v in scalars.items()}
        self._record(step, values)
        if self.log_dir is not None:
            with self.csv_path.open("a", newline="") as f:
                writer = csv.writer(f)
                for k, v in values.items():
                    writer.writerow([step, k, repr(v)])
            with self.jsonl_path.open("a") as f:
                f.write(json.dumps({"step": step, **values}, allow_nan=True) + "\n")
        if self.verbose:
            shown = "  ".join(f"{k}={v:.4g}" for k, v in values.items())
            print(f"[step {step}] {shown}")

    def log_scalar(self, name: str, value: Any, step: int) -> None:
        """Record one scalar: ``logger.log_scalar("loss", 0.1, step=5)``."""
        if not isinstance(name, str) or not name or name == "step":
            raise ValueError(f"name must be a non-empty string other than 'step', got {name!r}")
        self.log(step, **{name: value})

    def _record(self, step: int, values: dict[str, float]) -> None:
        for k, v in values.items():
            steps, vals = self._data.setdefault(k, ([], []))
            steps.append(step)
            vals.append(v)
        self._records.append({"step": step, **values})

    # ------------------------------------------------------------------ queries
    @property
    def names(self) -> list[str]:
        """Names logged so far, in order of first appearance."""
        return list(self._data)

    def get(self, name: str) -> tuple[list[int], list[float]]:
        """``(steps, values)`` of scalar ``name`` (copies), in logging order.

        Raises:
            KeyError: naming the scalars that exist.
        """
        if name not in self._data:
            raise KeyError(f"no scalar named {name!r} was logged; logged names: {self.names}")
        steps, values = self._data[name]
        return list(steps), list(values)

    def records(self) -> list[dict[str, float]]:
        """Every ``log`` call as ``{"step": ..., name: value, ...}``."""
        return [dict(r) for r in self._records]

    def summary(self) -> dict[str, dict[str, float]]:
        """Per scalar: ``count``, ``last``, ``mean``, ``std``, ``min``, ``max`` (NaNs ignored for the stats)."""
        out = {}
        for k, (_, vals) in self._data.items():
            finite = [v for v in vals if not math.isnan(v)]
            mean = sum(finite) / len(finite) if finite else math.nan
            var = sum((v - mean) ** 2 for v in finite) / len(finite) if finite else math.nan
            out[k] = {
                "count": float(len(vals)),
                "last": vals[-1],
                "mean": mean,
                "std": math.sqrt(var) if finite else math.nan,
                "min": min(finite) if finite else math.nan,
                "max": max(finite) if finite else math.nan,
            }
        return out

    def __len__(self) -> int:
        return len(self._records)

    def __repr__(self) -> str:
        return f"Logger(log_dir={str(self.log_dir) if self.log_dir else None!r}, names={self.names})"

    # ------------------------------------------------------------------ reload
    @classmethod
    def load(cls, path: str | Path) -> Logger:
        """A new in-memory Logger holding what a ``.jsonl`` or ``.csv`` file (or a ``log_dir``) recorded.

        Args:
            path: a ``.jsonl`` / ``.csv`` file written by a Logger, or its folder (``metrics.jsonl`` preferred).

        Raises:
            ValueError: if the path does not exist or is not a Logger file.
        """
        path = Path(path)
        if path.is_dir():
            candidates = sorted(path.glob("*.jsonl")) or sorted(path.glob("*.csv"))
            if not candidates:
                raise ValueError(f"path {str(path)!r} holds no .jsonl or .csv file written by a Logger")
            path = candidates[0]
        if not path.is_file():
            raise ValueError(f"path must be a Logger .jsonl/.csv file or folder, got {str(path)!r} (not found)")
        logger = cls(None, name=path.stem)
        if path.suffix == ".jsonl":
            for line in path.read_text().splitlines():
                if line.strip():
                    record = json.loads(line)
                    step = int(record.pop("step"))
                    logger._record(step, {k: float(v) for k, v in record.items()})
        elif path.suffix == ".csv":
            with path.open(newline="") as f:
                reader = csv.DictReader(f)
                if reader.fieldnames != ["step", "name", "value"]:
                    raise ValueError(f"{str(path)!r} is not a Logger CSV (header step,name,value)")
                last_step, group = None, {}
                for row in reader:
                    step = int(row["step"])
                    if step != last_step and group:
                        logger._record(last_step, group)
                        group = {}
                    if row["name"] in group:  # a second log call at the same step
                        logger._record(step, group)
                        group = {}
                    group[row["name"]] = float(row["value"])
                    last_step = step
                if group:
                    logger._record(last_step, group)
        else:
            raise ValueError(f"path must end in .jsonl or .csv, got {str(path)!r}")
        return logger
