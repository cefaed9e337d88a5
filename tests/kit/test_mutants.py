"""The mutant generator of ``grader.authoring.mutants`` (issue 13, item 2) and a small real run (the full sweep is `make mutants`)."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from grader.authoring.mutants import EQUIVALENT, OPERATORS, all_mutants, mutants_of_source, run_mutant

REPO = Path(__file__).resolve().parents[2]


def _region(body: str, head: str = "def f(a, b, d, x, n):") -> str:
    """A module with one function whose body is one solution region holding ``body``."""
    inner = textwrap.indent(textwrap.dedent(body).strip("\n"), "    ")
    return f"{head}\n    # TODO(student): compute it\n    # BEGIN SOLUTION\n{inner}\n    # END SOLUTION\n"


def _mutated_bodies(source: str, operator: str) -> list[str]:
    """The region's line(s) of every mutant of ``operator``, stripped."""
    out = []
    for m in mutants_of_source(source, "m.py", operators=(operator,)):
        lines = m.source.splitlines()
        out.append("\n".join(line.strip() for line in lines[3:-1]))
    return out


@pytest.mark.parametrize(
    ("operator", "body", "expected"),
    [
        ("sign", "return a + b", ["return a - b"]),
        ("sign", "return -a", ["return a"]),
        ("sign", "x += a", ["x -= a"]),
        ("sign", "return x * -(a + b)", ["return x * (a + b)", "return x * -(a - b)"]),
        ("off_by_one", "return x[1]", ["return x[2]", "return x[0]"]),
        ("off_by_one", "return range(n)", ["return range(n - 1)"]),
        ("off_by_one", "return x[a:n]", []),
        ("mask", "return a * (1 - d)", ["return a"]),
        ("mask", "return a * (1.0 - d) * b", ["return a * b"]),
        ("detach", "return a.detach() + b", ["return a + b"]),
        ("detach", "with torch.no_grad():\n    y = a + b\nreturn y", ["y = a + b\nreturn y"]),
        ("exponent", "return a ** 2", ["return a ** 1"]),
        ("exponent", "return torch.sqrt(a) + b.sqrt()", ["return a + b.sqrt()", "return torch.sqrt(a) + b"]),
        ("swap_args", "return torch.max(a, b, dim=0)", ["return torch.max(b, a, dim=0)"]),
        ("swap_args", "return torch.max(a, a)", []),
        ("reduction", "return a.mean(0) + b.sum()", ["return a.sum(0) + b.sum()", "return a.mean(0) + b.mean()"]),
        ("clone", "y = x.clone()\ny += 1\nreturn y", ["y = x\ny += 1\nreturn y"]),
        ("inplace", "return x.clamp(0, 1) + a.b.add(1)", ["return x.clamp_(0, 1) + a.b.add(1)"]),
        ("inplace", "return torch.clamp(x, 0, 1)", []),
        ("global_rng", "return torch.randn(3, generator=g)", ["return torch.randn(3)"]),
        ("global_rng", "return self.rng.integers(0, n)", ["return np.random.randint(0, n)"]),
        ("shared_noise", "return torch.randn(n, d, generator=g)", ["return torch.randn(1, d, generator=g)"]),
        ("shared_noise", "return torch.randn((n, *x.shape))", ["return torch.randn((1, *x.shape))"]),
        ("shared_noise", "return torch.randn_like(x)", ["return torch.randn_like(x[..., :1])"]),
        ("finite", "return torch.isfinite(x)", ["return ~torch.isnan(x)"]),
        ("sample", "return self.reparameterize(m, v)", ["return m"]),
    ],
)  # fmt: skip
def test_each_operator_makes_the_expected_change(operator: str, body: str, expected: list[str]) -> None:
    assert _mutated_bodies(_region(body), operator) == expected


def test_negative_constants_and_precedence_stay_valid_python() -> None:
    """``-1`` becomes ``-2``/``0``; a replacement that would bind differently is parenthesised."""
    assert _mutated_bodies(_region("return x[-1]"), "off_by_one") == ["return x[-2]", "return x[-0]"]
    assert _mutated_bodies(_region("return a * (b + x).sqrt()"), "exponent") == ["return a * (b + x)"]


def test_only_nodes_inside_regions_are_mutated() -> None:
    source = "def g(a, b):\n    return a + b\n\n\n" + _region("return a - b") + "\nY = 1 + 2\n"
    mutants = mutants_of_source(source, "m.py")
    assert [m.id for m in mutants] == ["m.py:f:8:sign"]
    changed = [i for i, (x, y) in enumerate(zip(source.splitlines(), mutants[0].source.splitlines())) if x != y]
    assert changed == [7], "exactly the region's line changes"
    assert mutants_of_source("def g(a):\n    return a + 1\n", "m.py") == []


def test_ids_are_unique_stable_and_named_path_qualname_line_operator() -> None:
    source = _region("y = a + b + x\nreturn y - 1", head="class C:\n  def f(self, a, b, x):").replace(
        "\n    ", "\n      "
    )
    first = [m.id for m in mutants_of_source(source, "pkg/m.py")]
    assert first == [m.id for m in mutants_of_source(source, "pkg/m.py")]
    assert len(set(first)) == len(first)
    assert "pkg/m.py:C.f:5:sign" in first and "pkg/m.py:C.f:5:sign#2" in first
    assert all(len(i.split(":")) == 4 and i.split(":")[3].split("#")[0] in OPERATORS for i in first)
    with pytest.raises(ValueError, match="operators: expected names from"):
        mutants_of_source(source, "pkg/m.py", operators=("typo",))


@pytest.fixture(scope="module")
def reference_ids() -> list[str]:
    """The ids of every mutant of reference/ (generating them takes some seconds)."""
    return [m.id for m in all_mutants(REPO / "reference")]


def test_every_equivalent_entry_names_a_mutant_with_a_reason(reference_ids: list[str]) -> None:
    ids = set(reference_ids)
    stale = sorted(set(EQUIVALENT) - ids)
    assert stale == [], f"grader.authoring.mutants.EQUIVALENT names mutants that no longer exist (remove them): {stale}"
    assert all(reason.strip() for reason in EQUIVALENT.values())


@pytest.mark.timeout(120)
def test_running_stats_mutants_are_caught_for_real() -> None:
    """Two mutants of chan_merge run against the graded tests (the machinery end to end)."""
    wanted = ("utils/running_stats.py:chan_merge:56:sign", "utils/running_stats.py:chan_merge:57:exponent")
    source = (REPO / "reference" / "utils" / "running_stats.py").read_text(encoding="utf-8")
    generated = mutants_of_source(source, "utils/running_stats.py")
    mutants = [m for m in generated if m.id in wanted]
    assert [m.id for m in mutants] == list(wanted), [m.id for m in generated]
    started = time.monotonic()
    outcomes = [run_mutant(REPO / "reference", m, timeout=100) for m in mutants]
    assert [o.status for o in outcomes] == ["caught", "caught"], outcomes
    assert all("test_running_stats" in (o.caught_by or "") for o in outcomes), outcomes
    print(f"two mutants in {time.monotonic() - started:.1f} s")



def test_a_cached_outcome_is_kept_until_a_file_that_decides_it_changes(tmp_path: Path) -> None:
    """mutant_key changes with the mutant's own test file and the harness, not with another component's tests."""
    import shutil

    from grader.authoring.coverage import DIGEST_FILES
    from grader.authoring.mutants import mutant_key

    for rel in ("reference", "tests/components", "tests/hidden"):
        shutil.copytree(REPO / rel, tmp_path / rel, ignore=shutil.ignore_patterns("__pycache__"))
    for rel in DIGEST_FILES:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, tmp_path / rel)
    mutant = mutants_of_source((REPO / "reference/planning/mcts.py").read_text(), "planning/mcts.py")[0]
    key = mutant_key(mutant, True, tmp_path)
    assert key == mutant_key(mutant, True, REPO)  # same files, same key

    def edited(rel: str) -> str:
        path = tmp_path / rel
        original = path.read_text()
        path.write_text(original + "\n# edited\n")
        try:
            return mutant_key(mutant, True, tmp_path)
        finally:
            path.write_text(original)

    assert edited("tests/components/test_world_model.py") == key
    assert edited("tests/components/test_mcts.py") != key
    assert edited("grader/judge/remote.py") != key
    assert edited("reference/utils/replay.py") != key
