"""The point budget of the graded tests, per component and category (``make points``).

    python -m grader.authoring.points
"""

from __future__ import annotations

import sys

from grader.pipeline.grade import CATEGORIES, GradeConfig, expected_tests


def format_points(tests: list[dict]) -> str:
    """The point budget: per component (tests, points, per category) and the total."""
    table: dict[str, dict[str, int]] = {}
    for t in tests:
        row = table.setdefault(t["component"], {"tests": 0, "points": 0, **{c: 0 for c in CATEGORIES}})
        row["tests"] += 1
        row["points"] += t["points"]
        row[t["category"]] += t["points"]
    width = max([len("component")] + [len(n) for n in table])
    head = f"{'component':<{width}}  tests  points  " + "  ".join(f"{c:>11}" for c in CATEGORIES)
    lines = [head, "-" * len(head)]
    for name, row in sorted(table.items()):
        cats = "  ".join(f"{row[c]:>11}" for c in CATEGORIES)
        lines.append(f"{name:<{width}}  {row['tests']:>5}  {row['points']:>6}  {cats}")
    totals = {k: sum(r[k] for r in table.values()) for k in ("tests", "points", *CATEGORIES)}
    cats = "  ".join(f"{totals[c]:>11}" for c in CATEGORIES)
    lines.append(f"{'total':<{width}}  {totals['tests']:>5}  {totals['points']:>6}  {cats}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    print(format_points(expected_tests(GradeConfig())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
