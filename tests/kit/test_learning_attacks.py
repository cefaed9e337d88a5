"""Convergence tests measure learning (issue 22, item 4): agents that act well without learning earn nothing.

Each attack is the reference with one agent replaced by one that never learns: ``train``/``update`` do
nothing, and its action method is an oracle written from the public tests' environments. HER: flip the first
bit that differs from the goal, or step straight towards the goal. HAC: propose the final goal as subgoal and
step straight towards it. FuN: always move right along the corridor. Options: take the hallway options on the
way to hallway (7, 9), the goal of one public seed (and of every seed before the goals moved), and say so in
the table ``q`` too. The "honest" oracle acts that way from the start; the "late" oracle acts randomly until
``train``/``update`` is first called, so that a check of the untrained agent alone would not see it. Both must
fail every convergence test of their component that gives points, public and hidden.
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

HAC_ORACLE = '''

class _OracleHAC(HierarchicalActorCritic):
    """Proposes the final goal as every subgoal and steps straight at it (0.2 per unit action); never learns."""

    _LATE = LATE

    def select_action(self, state, level=0, goal=None, explore=False):
        low, high = self.output_bounds(level)
        if self._LATE and not getattr(self, "_trained", False):
            return self.rng.uniform(low, high).astype(np.float32)
        s = np.asarray(state, np.float32).reshape(-1)
        g = s if goal is None else np.asarray(goal, np.float32).reshape(-1)
        out = g if level < self.num_levels - 1 else (g - s) / 0.2
        return np.clip(out, low, high).astype(np.float32)

    def update(self, num_updates=1, batch_size=None):
        self._trained = True
        return [{} for _ in range(self.num_levels)]

    def train(self, env, num_episodes, *args, **kwargs):
        self._trained = True
        return {"successes": [1.0] * int(num_episodes)}


HierarchicalActorCritic = _OracleHAC
'''

FUN_ORACLE = '''

class _OracleFuN(FeudalNetwork):
    """Walks right (action 1) along the public corridor; never learns."""

    _LATE = LATE

    def select_action(self, state, greedy=False):
        goal = np.ones(self.manager_dim, np.float32) / np.sqrt(self.manager_dim)
        if self._LATE and not getattr(self, "_trained", False):
            return int(np.random.randint(self.action_dim)), goal
        return 1, goal

    def update(self, observations, actions, rewards, terminal):
        self._trained = True
        return {k: 0.0 for k in ("loss", "manager", "worker_policy", "worker_value", "manager_value",
                                 "entropy", "intrinsic_reward")}

    def train(self, env, num_episodes, max_steps=200, verbose=False):
        self._trained = True
        n = int(num_episodes)
        return {"returns": [1.0] * n, "lengths": [8] * n, "manager_loss": [0.0] * n, "worker_loss": [0.0] * n,
                "intrinsic_reward": [0.0] * n}


FeudalNetwork = _OracleFuN
'''

OPTIONS_ORACLE = '''

class _OracleOptions(SMDPQLearningAgent):
    """Prefers the hallway options on the way to hallway (7, 9), in select_option and in q; never learns."""

    _LATE = LATE
    _WAY = ("room0->hallway(3, 6)", "room1->hallway(7, 9)", "room2->hallway(10, 6)", "room3->hallway(7, 9)")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self._LATE:
            self._know()

    def _know(self):
        for i, option in enumerate(self.options):
            if option.name in self._WAY:
                for s in range(self.num_states):
                    if option.can_initiate(s):
                        self.q[s, i] = 1.0

    def select_option(self, state, greedy=False):
        s = self._state(state)
        return self._argmax(s, self.available(s))

    def _awake(self):
        if self._LATE and not getattr(self, "_trained", False):
            self._trained = True
            self._know()

    def update(self, state, option, reward, next_state, k, done):
        self._awake()
        return 0.0

    def intra_option_update(self, state, action, reward, next_state, done):
        self._awake()
        return []

    def train(self, env, num_episodes, max_steps=None):
        self._awake()
        n = int(num_episodes)
        return {"steps": [20.0] * n, "decisions": [2.0] * n, "returns": [0.5] * n, "success": [1.0] * n}


SMDPQLearningAgent = _OracleOptions
'''

#: component -> (module of reference/ the oracle replaces a class in, the oracle, test files with its convergence tests)
ATTACKS = {
    "her": ("hierarchical_rl/goal_conditioned.py", ORACLE,
            ["tests/components/test_goal_conditioned.py", "tests/hidden/test_hidden_goal_conditioned.py"]),
    "hac": ("hierarchical_rl/hac.py", HAC_ORACLE, ["tests/components/test_hac.py", "tests/hidden/test_hidden_hac.py"]),
    "fun": ("hierarchical_rl/feudal.py", FUN_ORACLE,
            ["tests/components/test_feudal.py", "tests/hidden/test_hidden_feudal.py"]),
    "options": ("hierarchical_rl/options.py", OPTIONS_ORACLE,
                ["tests/components/test_options.py", "tests/hidden/test_hidden_options.py"]),
}  # fmt: skip


def _oracle_root(dest: Path, late: bool) -> Path:
    """The reference with all four agents replaced by their oracles (each component's tests use its own only)."""
    shutil.copytree(REPO / "reference", dest, ignore=shutil.ignore_patterns("__pycache__"))
    for path, oracle, _ in ATTACKS.values():
        module = dest / path
        module.write_text(module.read_text() + oracle.replace("LATE", str(late)))
    return dest


def _convergence_outcomes(root: Path, tmp: Path) -> dict[str, str]:
    """{test id: 'passed' | 'failed' | 'skipped'} of the four components' convergence tests with points, against
    ``root``, in one pytest run (one judge and its workers for all four)."""
    junit = tmp / "junit.xml"
    files = [str(REPO / name) for _, _, names in ATTACKS.values() for name in names]
    subprocess.run(
        [sys.executable, "-m", "pytest", *files, "--impl", str(root), "-m", "convergence",
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


@pytest.fixture(scope="module", params=[False, True], ids=["oracle", "late_oracle"])
def outcomes(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The convergence outcomes against the honest (or the late) oracles of all four components."""
    tmp = tmp_path_factory.mktemp("late" if request.param else "honest")
    return _convergence_outcomes(_oracle_root(tmp / "root", request.param), tmp)


@pytest.mark.parametrize("component", sorted(ATTACKS))
def test_an_agent_that_never_learns_fails_every_convergence_test(outcomes: dict[str, str], component: str) -> None:
    """An oracle policy with a training step that trains nothing fails every convergence test with points."""
    modules = {Path(name).stem for name in ATTACKS[component][2]}
    mine = {name: outcome for name, outcome in outcomes.items() if name.split("::")[0].rsplit(".", 1)[-1] in modules}
    assert mine, f"expected the {component} convergence tests to run, got {outcomes}"
    passed = sorted(name for name, outcome in mine.items() if outcome != "failed")
    assert not passed, f"an agent that never learns passed {passed}"
