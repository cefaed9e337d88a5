"""Convergence tests measure learning (issue 22, item 4): agents that act well without learning earn nothing.

Each attack is the reference with its HER agent replaced by one that never learns: ``train``/``update`` do
nothing, and ``get_action`` is an oracle written from the public tests' environments (flip the first bit that
differs from the goal; step straight towards the goal). The "honest" oracle acts that way from the start; the
"late" oracle acts randomly until ``train``/``update`` is first called, so that a check of the untrained agent
alone would not see it. Both must fail every HER convergence test that gives points, public and hidden.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(900)

ORACLE = '''

class _OracleAgent(GoalConditionedAgent):
    """Acts from the public environments' layout and never learns."""

    _LATE = LATE

    def _awake(self) -> bool:
        return not self._LATE or getattr(self, "_trained", False)

    def get_action(self, state, goal, noise_scale=0.1):
        s = np.asarray(state, np.float32).reshape(-1)
        g = np.asarray(goal, np.float32).reshape(-1)
        if self.discrete_actions:
            if not self._awake():
                return int(self.rng.integers(self.action_dim))
            differing = np.flatnonzero(np.abs(s[: g.size] - g) > 0.5)
            return int(differing[0]) if differing.size else 0
        if not self._awake():
            return self.rng.uniform(self.action_low, self.action_high).astype(np.float32)
        step = np.clip((g - s[: g.size]) / 0.25, -1.0, 1.0)
        return np.clip(step, self.action_low, self.action_high).astype(np.float32)

    def update(self):
        self._trained = True
        return {"critic_loss": 0.0, "q_mean": 0.0}

    def end_episode(self):
        self._episode = []
        return 0

    def train(self, env, num_episodes, *args, **kwargs):
        self._trained = True
        n = int(num_episodes)
        return {"returns": [0.0] * n, "successes": [1.0] * n, "success_rate": [1.0] * n,
                "critic_loss": [0.0] * n, "eval_episode": [], "eval_success_rate": []}


GoalConditionedAgent = _OracleAgent
'''

HER_FILES = [REPO / "tests/components/test_goal_conditioned.py", REPO / "tests/hidden/test_hidden_goal_conditioned.py"]


def _oracle_root(dest: Path, late: bool) -> Path:
    shutil.copytree(REPO / "reference", dest, ignore=shutil.ignore_patterns("__pycache__"))
    module = dest / "hierarchical_rl" / "goal_conditioned.py"
    module.write_text(module.read_text() + ORACLE.replace("LATE", str(late)))
    return dest


def _convergence_outcomes(root: Path, tmp: Path) -> dict[str, str]:
    """{test id: 'passed' | 'failed' | 'skipped'} of the HER convergence tests with points, against ``root``."""
    junit = tmp / "junit.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", *map(str, HER_FILES), "--impl", str(root), "-m", "convergence",
         "--graded-only", "-p", "no:cacheprovider", "-p", "no:randomly", "-q", "-n", "0",
         f"--junitxml={junit}"],
        cwd=REPO, capture_output=True, text=True, timeout=800, check=False,
    )  # fmt: skip
    outcomes = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        outcome = "failed" if kinds & {"failure", "error"} else "skipped" if "skipped" in kinds else "passed"
        outcomes[f"{case.get('classname')}::{case.get('name')}"] = outcome
    return outcomes


@pytest.mark.parametrize("late", [False, True], ids=["oracle", "late_oracle"])
def test_an_agent_that_never_learns_fails_every_her_convergence_test(tmp_path: Path, late: bool) -> None:
    """An oracle policy with a training step that trains nothing fails every HER convergence test with points."""
    outcomes = _convergence_outcomes(_oracle_root(tmp_path / "root", late), tmp_path)
    assert len(outcomes) >= 3, f"expected the HER convergence tests to run, got {outcomes}"
    passed = sorted(name for name, outcome in outcomes.items() if outcome != "failed")
    assert not passed, f"an agent that never learns passed {passed}"
