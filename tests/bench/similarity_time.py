"""Wall time of ``ca15-grade similarity OUT`` on a class of 50 submissions (issue 24: under 60 s on 2 cores).

    python tests/bench/similarity_time.py [--submissions 50] [--seed 0] [--keep DIR]

Builds N submissions (every file with solution regions, and the notebook), each as a student would fill the
skeleton: every solution region of ``reference/`` (all components) either left as its stub (not started,
10 %) or filled with the reference's code, its local variables renamed at random and now and then an extra
statement added; the regions of
``RunningStats`` and ``ModelBasedValueExpansion`` take one of the five hand-written implementations of
``tests/kit/similarity_data`` instead (three independent ones, two disguised copies), renamed the same way.
Each notebook is the released one with a few cells edited and two cells of the student's own. Since every
student's code comes from the same few sources, nearly every pair shares code: the slow case for the report
(copydetect compares each such pair in full).

Each submission's ``student-code.json`` is extracted as grading does (``grader.pipeline.similarity.student_code``),
beside a stub ``results.json``, in an output folder; then ``similarity_report`` runs on it, timed from a cold
handout (as a fresh ``ca15-grade similarity OUT`` process). Prints the extraction time, the report's wall
time and CPU-seconds (a busy machine stretches the first), the pairs compared and the pairs that share code.
"""

from __future__ import annotations

import argparse
import ast
import copy
import csv
import json
import random
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from grader.pipeline import similarity  # noqa: E402
from grader.authoring.generate import _stub, all_regions, find_regions  # noqa: E402
from grader.pipeline.similarity import STUDENT_CODE, component_text, similarity_report, student_code  # noqa: E402

DATA = REPO / "tests" / "kit" / "similarity_data"
#: similarity_data folder -> its hand-written implementations (b_disguised_*: copies of b in disguise)
FIXTURES = ("running_stats", "mve")
VARIANTS = ("a", "b", "c", "b_disguised_1", "b_disguised_2")
NOT_STARTED = 0.10  # share of regions left as their stub
RENAME = 0.6  # chance that a local name of a region is renamed
EXTRA = 0.15  # chance that a region gets an extra statement
EXTRAS = ("eps = 1e-08", "debug = False", "assert True", "_checked = 0")
NAMES = ("tmp", "val", "res", "out", "acc", "buf", "cur", "nxt", "item", "data", "x", "y", "z", "t", "k")
_ASSIGNED = re.compile(r"^\s*([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s*(?:[-+*/]?=)(?!=)", re.M)
_FOR = re.compile(r"^\s*for\s+([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s+in\b", re.M)


def read_regions(path: Path) -> dict[str, str]:
    """A ``.regions`` fixture as {qualname: body at column 0} (``# @move-to-end`` lines ignored)."""
    regions: dict[str, list[str]] = {}
    current = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# @region "):
            current = regions.setdefault(line.split(maxsplit=2)[2].strip(), [])
        elif line.startswith("# @"):
            current = None
        elif current is not None:
            current.append(line)
    return {name: "\n".join(body) for name, body in regions.items()}


def perturb(body: list[str], rng: random.Random) -> list[str]:
    """A region's lines with some of its local names renamed and, now and then, an extra statement."""
    text = "\n".join(body)
    found = [*_ASSIGNED.finditer(text), *_FOR.finditer(text)]
    names = {n.strip() for m in found for n in m.group(1).split(",")}
    for name in sorted(names - {"self", "_"}):
        if rng.random() < RENAME:
            new = f"{rng.choice(NAMES)}_{rng.randrange(100)}"
            text = re.sub(rf"(?<![\w.]){re.escape(name)}\b(?!\s*=[^=])", new, text)
            text = re.sub(rf"^(\s*){re.escape(name)}\b", rf"\g<1>{new}", text, flags=re.M)
    lines = text.splitlines()
    if rng.random() < EXTRA and lines:
        first = next((line for line in lines if line.strip()), "")
        lines.insert(0, first[: len(first) - len(first.lstrip())] + rng.choice(EXTRAS))
    return lines


def fill_file(source: str, path: str, rng: random.Random, fixtures: dict[str, str]) -> str:
    """``source`` (a reference file) as a student's: each region a stub, a fixture's body or the reference's
    code, perturbed; the markers gone."""
    regions = find_regions(source, path)
    lines = source.splitlines()
    for region in reversed(regions):
        if rng.random() < NOT_STARTED:
            lines[region.begin - 1 : region.end] = [_stub(region)]
            continue
        if region.qualname in fixtures:
            body = [region.indent + x if x.strip() else "" for x in fixtures[region.qualname].splitlines()]
        else:
            body = lines[region.begin : region.end - 1]
        lines[region.begin - 1 : region.end] = perturb(body, rng)
    return "\n".join(lines) + "\n"


def notebook(released: dict, rng: random.Random, index: int) -> dict:
    """The released notebook with three code cells edited (a number changed, a line added) and two cells of
    the student's own appended."""
    book = copy.deepcopy(released)
    code = [c for c in book["cells"] if c["cell_type"] == "code"]
    for cell in rng.sample(code, k=min(3, len(code))):
        source = "".join(cell["source"])
        source = re.sub(r"\b\d+\b", lambda m: str(int(m.group()) + rng.randrange(1, 5)), source, count=1)
        cell["source"] = source + f"\nprint('run {index}', {rng.randrange(1000)})\n"
    own = [
        f"results_{index} = []\nfor seed in range({rng.randrange(2, 6)}):\n    set_seed(seed)\n"
        f"    results_{index}.append(seed * {rng.random():.3f})\n"
        f"print(sum(results_{index}) / len(results_{index}))\n",
        f"import matplotlib.pyplot as plt\nfig, ax = plt.subplots(figsize=({rng.randrange(4, 9)}, 3))\n"
        f"ax.plot(range({rng.randrange(10, 50)}))\nax.set_title('my experiment {index}')\nplt.show()\n",
    ]
    for source in own:
        book["cells"].append({"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                              "id": f"own-{index}-{len(book['cells'])}", "source": source})  # fmt: skip
    return book


def build(out: Path, subs: Path, count: int, seed: int) -> None:
    """``count`` submissions under ``subs`` and their ``student-code.json`` (and a stub results.json) in
    ``out``."""
    sources = {rel: (REPO / "reference" / rel).read_text(encoding="utf-8")
               for rel in sorted({r.path for r in all_regions(REPO / "reference")})}  # fmt: skip
    fixtures = {(key, v): read_regions(DATA / key / f"{v}.regions") for key in FIXTURES for v in VARIANTS}
    released = json.loads((REPO / "notebooks" / "CA15.ipynb").read_text(encoding="utf-8"))
    for i in range(count):
        rng = random.Random(seed * 100_003 + i)
        name = f"student{i:03d}"
        root = subs / name
        chosen: dict[str, str] = {}
        for key in FIXTURES:
            chosen |= fixtures[(key, rng.choice(VARIANTS))]
        for rel, source in sources.items():
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            text = fill_file(source, rel, rng, chosen)
            try:
                ast.parse(text)
            except SyntaxError as exc:  # the report would compare it line by line: not what students send
                raise SystemExit(f"{name}/{rel}: the perturbed file does not parse: {exc}") from exc
            target.write_text(text, encoding="utf-8")
        (root / "CA15.ipynb").write_text(json.dumps(notebook(released, rng, i)), encoding="utf-8")
        doc = student_code(root, root / "CA15.ipynb", REPO)
        if doc["errors"]:
            raise SystemExit(f"{name}: the extraction reported problems: {doc['errors']}")
        (out / name).mkdir(parents=True)
        (out / name / STUDENT_CODE).write_text(json.dumps(doc, indent=1), encoding="utf-8")
        stub = {"score": 0, "tests": [], "extra_data": {"status": "graded"}}  # collect() reads graded folders
        (out / name / "results.json").write_text(json.dumps(stub))


def pairs_compared(out: Path) -> tuple[int, int]:
    """Components with code and the pairs the report compares (two submissions with code for a component)."""
    per_component: dict[str, int] = {}
    for path in out.glob(f"*/{STUDENT_CODE}"):
        for component, runs in json.loads(path.read_text(encoding="utf-8"))["components"].items():
            if component_text(runs).strip():
                per_component[component] = per_component.get(component, 0) + 1
    return len(per_component), sum(n * (n - 1) // 2 for n in per_component.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=50, help="how many submissions (default: 50)")
    parser.add_argument("--seed", type=int, default=0, help="varies the submissions (default: 0)")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="build the output folder here (a new folder) and keep it, with the report")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ca15-similarity-bench-"))
    try:
        out = args.keep if args.keep is not None else tmp / "out"
        if args.keep is not None and args.keep.exists():
            raise SystemExit(f"--keep: expected a new folder, got {args.keep}: it exists")
        start = time.monotonic()
        build(out, tmp / "submissions", args.submissions, args.seed)
        print(f"built {args.submissions} submissions and extracted their student code in "
              f"{time.monotonic() - start:.1f} s", flush=True)  # fmt: skip
        components, pairs = pairs_compared(out)
        similarity._HANDOUTS.clear()  # a cold handout, as in a fresh `ca15-grade similarity OUT`
        start, cpu = time.monotonic(), time.process_time()
        html_path, csv_path = similarity_report(out)
        seconds, cpu = time.monotonic() - start, time.process_time() - cpu
        with open(csv_path, newline="", encoding="utf-8") as fh:
            sharing = sum(1 for _ in csv.reader(fh)) - 1
        print(f"similarity_report: {seconds:.1f} s wall ({cpu:.1f} CPU-seconds) for {args.submissions} "
              f"submissions, {components} components, {pairs} pairs compared, {sharing} sharing code")
        if args.keep is not None:
            print(f"report: {html_path}, {csv_path}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
