"""Benchmarks of the CA15 kit (`make bench`): speed and memory figures, never asserted in tests.

Each ``tests/bench/bench_*.py`` defines functions ``bench_<name>(impl) -> dict[str, float | str]``;
this runner loads the implementation root, calls every such function once and prints the figures.

    python tests/bench/run.py [--impl reference] [-k SUBSTRING]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))  # bench modules share `_timing`

from grader.sandboxed.impl import load_implementation, resolve_root  # noqa: E402


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(f"ca15_bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", default="reference", help="implementation root (default: reference)")
    parser.add_argument("-k", default="", help="only benchmarks whose name contains this")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1, as in grading)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        impl = load_implementation(resolve_root(args.impl, Path.cwd()))
    except ValueError as exc:
        parser.error(str(exc))
    print(f"ca15 bench: impl={impl.root} torch={torch.__version__} threads={torch.get_num_threads()}")
    failures = 0
    for path in sorted(HERE.glob("bench_*.py")):
        module = _load(path)
        for name in sorted(n for n in dir(module) if n.startswith("bench_")):
            if args.k not in name:
                continue
            start = time.perf_counter()
            try:
                figures = getattr(module, name)(impl)
            except Exception as exc:  # a benchmark's failure is reported, the others still run
                failures += 1
                print(f"\n[{name}] FAILED: {type(exc).__name__}: {exc}")
                continue
            print(f"\n[{name}]  ({time.perf_counter() - start:.1f} s)")
            for key, value in figures.items():
                shown = f"{value:.4g}" if isinstance(value, float) else str(value)
                print(f"  {key:<48} {shown}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
