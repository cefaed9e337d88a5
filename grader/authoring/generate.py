"""Generate the student skeleton from the reference solution (CONVENTIONS §2).

    python -m grader.authoring.generate            # reference/ -> skeleton/
    python -m grader.authoring.generate --check    # exit 1 (and list the files) when skeleton/ is out of date

Every solution region of a Python file in ``reference/``::

    # TODO(student): what to compute
    # BEGIN SOLUTION
    ...reference code...
    # END SOLUTION

becomes, at the indentation of its ``# BEGIN SOLUTION`` line::

    # TODO(student): what to compute
    raise NotImplementedError("<Qualified.name>: what to compute")

Everything else (docstrings, ``# TODO(student):`` lines, files without markers, non-Python files) is copied
byte for byte. The output is deterministic and regenerating is idempotent. A marker problem (unbalanced,
nested, outside a function, spanning two functions, without its TODO line) raises :class:`MarkerError`
naming the file and line, and nothing is written.
"""

from __future__ import annotations

import argparse
import ast
import filecmp
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BEGIN = "# BEGIN SOLUTION"
END = "# END SOLUTION"
TODO = "# TODO(student):"
IGNORED_DIRS = {"__pycache__", ".pytest_cache", ".hypothesis", ".ipynb_checkpoints"}
IGNORED_SUFFIXES = {".pyc", ".pyo"}


class MarkerError(ValueError):
    """A solution-marker problem at ``path:line``."""

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line


@dataclass(frozen=True)
class Region:
    """One solution region: 1-based line numbers of its markers, its function and TODO text."""

    path: str
    begin: int
    end: int
    qualname: str
    todo: str
    indent: str


def _function_spans(tree: ast.AST, lines: list[str]) -> list[tuple[int, int, str]]:
    """(def line, last line, qualified name) of every function.

    The last line extends over trailing comment and blank lines indented deeper than the ``def``, so a
    ``# END SOLUTION`` after a function's last statement still belongs to it.
    """
    spans: list[tuple[int, int, str]] = []

    def extended_end(node: ast.AST) -> int:
        end = node.end_lineno or node.lineno
        j = end
        while j < len(lines):
            text = lines[j]
            stripped = text.strip()
            if stripped and not stripped.startswith("#"):
                break
            if stripped and len(text) - len(text.lstrip()) <= node.col_offset:
                break
            j += 1
            if stripped:
                end = j
        return end

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                spans.append((child.lineno, extended_end(child), name))
                visit(child, f"{name}.<locals>.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return spans


def _enclosing_function(spans: list[tuple[int, int, str]], line: int) -> tuple[int, int, str] | None:
    inside = [s for s in spans if s[0] <= line <= s[1]]
    return max(inside, key=lambda s: s[0]) if inside else None


def find_regions(source: str, path: str = "<string>") -> list[Region]:
    """The solution regions of a Python source, validated.

    Raises:
        MarkerError: unbalanced, nested or misplaced markers, a region without its TODO line, or a file that
            does not parse.
    """
    lines = source.splitlines()
    markers = [(i + 1, line.strip()) for i, line in enumerate(lines) if line.strip() in (BEGIN, END)]
    for number, text in ((i + 1, line) for i, line in enumerate(lines)):
        stripped = text.strip()
        if stripped not in (BEGIN, END) and stripped.startswith("#") and (
            stripped.replace(" ", "").upper() in ("#BEGINSOLUTION", "#ENDSOLUTION")
        ):
            raise MarkerError(path, number, f"malformed marker {stripped!r}; write exactly {BEGIN!r} or {END!r}")
    if not markers:
        return []
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise MarkerError(path, exc.lineno or 0, f"cannot parse: {exc.msg}") from exc
    spans = _function_spans(tree, lines)
    regions: list[Region] = []
    open_at: int | None = None
    for number, text in markers:
        if text == BEGIN:
            if open_at is not None:
                raise MarkerError(path, number, f"nested {BEGIN!r}: the region opened at line {open_at} is not closed")
            open_at = number
            continue
        if open_at is None:
            raise MarkerError(path, number, f"{END!r} without a matching {BEGIN!r}")
        begin_line, indent = lines[open_at - 1], ""
        indent = begin_line[: len(begin_line) - len(begin_line.lstrip())]
        end_line = lines[number - 1]
        if end_line[: len(end_line) - len(end_line.lstrip())] != indent:
            raise MarkerError(path, number, f"{END!r} is not at the indentation of its {BEGIN!r} (line {open_at})")
        func = _enclosing_function(spans, open_at)
        if func is None:
            raise MarkerError(path, open_at, "solution region outside a function body; put markers inside a function")
        if _enclosing_function(spans, number) != func:
            raise MarkerError(path, open_at, f"solution region spans more than one function (ends at line {number})")
        todo_line = lines[open_at - 2].strip() if open_at >= 2 else ""
        if not todo_line.startswith(TODO) or not todo_line[len(TODO) :].strip():
            raise MarkerError(
                path, open_at, f"a solution region needs a '{TODO} <what to compute>' line directly above it"
            )
        regions.append(Region(path, open_at, number, func[2], todo_line[len(TODO) :].strip(), indent))
        open_at = None
    if open_at is not None:
        raise MarkerError(path, open_at, f"{BEGIN!r} is never closed by {END!r}")
    return regions


def _stub(region: Region) -> str:
    message = f"{region.qualname}: {region.todo}".replace("\\", "\\\\").replace('"', '\\"')
    return f'{region.indent}raise NotImplementedError("{message}")'


def strip_source(source: str, path: str = "<string>", only: Region | None = None) -> str:
    """``source`` with every solution region (or only ``only``) replaced by its ``NotImplementedError``."""
    regions = find_regions(source, path)
    if only is not None:
        regions = [r for r in regions if (r.begin, r.end) == (only.begin, only.end)]
    lines = source.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    for region in reversed(regions):
        lines[region.begin - 1 : region.end] = [_stub(region) + newline]
    return "".join(lines)


def _files(root: Path) -> list[Path]:
    """Files under ``root`` that belong to an implementation root, sorted, relative to ``root``."""
    out = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part in IGNORED_DIRS for part in rel.parts) or path.suffix in IGNORED_SUFFIXES:
            continue
        if path.is_file():
            out.append(rel)
    return out


def all_regions(src: Path) -> list[Region]:
    """Every solution region under ``src`` (paths relative to ``src``), in file and line order."""
    regions = []
    for rel in _files(src):
        if rel.suffix == ".py":
            regions += find_regions((src / rel).read_text(encoding="utf-8"), str(rel))
    return regions


def build(src: Path, dst: Path) -> None:
    """Write the skeleton of ``src`` into ``dst`` (replaced wholesale, atomically: built beside it first)."""
    rendered: dict[Path, bytes] = {}
    for rel in _files(src):
        data = (src / rel).read_bytes()
        if rel.suffix == ".py":
            data = strip_source(data.decode("utf-8"), str(rel)).encode("utf-8")
        rendered[rel] = data  # every marker error surfaces here, before anything is written
    dst.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dst.name}-", dir=dst.parent))
    try:
        for rel, data in rendered.items():
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            (staging / rel).write_bytes(data)
            shutil.copymode(src / rel, staging / rel)
        if dst.exists():
            old = dst.with_name(f".{dst.name}-old")
            shutil.rmtree(old, ignore_errors=True)
            dst.rename(old)
            staging.rename(dst)
            shutil.rmtree(old)
        else:
            staging.rename(dst)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def differences(src: Path, dst: Path) -> list[str]:
    """How ``dst`` differs from the skeleton of ``src`` (empty when up to date)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "skeleton"
        build(src, fresh)
        want = set(_files(fresh))
        have = set(_files(dst)) if dst.is_dir() else set()
        out = [f"missing: {p}" for p in sorted(want - have)]
        out += [f"extra: {p}" for p in sorted(have - want)]
        out += [
            f"differs: {p}" for p in sorted(want & have) if not filecmp.cmp(fresh / p, dst / p, shallow=False)
        ]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate skeleton/ from reference/ (CONVENTIONS §2).")
    parser.add_argument("--src", type=Path, default=REPO / "reference", help="reference root (default: reference/)")
    parser.add_argument("--dst", type=Path, default=REPO / "skeleton", help="skeleton root (default: skeleton/)")
    parser.add_argument("--check", action="store_true", help="only check that --dst is up to date")
    parser.add_argument("--list", action="store_true", help="list the solution regions")
    args = parser.parse_args(argv)
    if not args.src.is_dir():
        parser.error(f"--src: expected the reference folder, got {str(args.src)!r}, which does not exist")
    try:
        if args.list:
            for r in all_regions(args.src):
                print(f"{r.path}:{r.begin}-{r.end}  {r.qualname}: {r.todo}")
            return 0
        if args.check:
            diff = differences(args.src, args.dst)
            for line in diff:
                print(line)
            if diff:
                print(f"{args.dst} is out of date with {args.src}: run `make skeleton` and commit", file=sys.stderr)
                return 1
            print(f"{args.dst} is up to date")
            return 0
        build(args.src, args.dst)
    except MarkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.dst} from {args.src} ({len(all_regions(args.src))} solution regions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
