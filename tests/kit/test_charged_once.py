"""A bug is charged once (grader.authoring.charged_once): a component's stubbed tasks cost points in its own tests only.

The full check (every component against every graded test) is ``python -m grader.authoring.charged_once``; these tests
run it for two cheap mutants, against their own tests and the tests of the components that use them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from grader.authoring.charged_once import charged_once, format_table, regions_by_component
from grader.authoring.generate import all_regions

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "reference"


def _graded_components() -> set[str]:
    """The component names of the graded test files (their ``pytestmark``)."""
    names = set()
    for path in (REPO / "tests").glob("*/test_*.py"):
        if path.parent.name in ("components", "hidden"):
            text = path.read_text(encoding="utf-8")
            names |= set(re.findall(r'pytest\.mark\.component\("([^"]+)"\)', text))
    return names


def test_every_region_belongs_to_a_graded_component() -> None:
    """Each solution region maps to exactly one component that has graded tests."""
    groups = regions_by_component(REFERENCE)
    assert sum(len(regions) for regions in groups.values()) == len(all_regions(REFERENCE))
    assert set(groups) <= _graded_components(), sorted(set(groups) - _graded_components())


@pytest.mark.timeout(120)
def test_stubbed_replay_buffer_is_charged_to_replay_buffer_only() -> None:
    """Without ReplayBuffer's tasks, its tests fail and DynaQAgent's storing and replaying tests still pass."""
    targets = [
        "tests/components/test_replay_buffer.py::test_sample_shapes_and_dtypes_discrete",
        "tests/components/test_dyna_q.py::test_notebook_cell_calls",
        "tests/components/test_dyna_q.py::test_update_takes_a_gradient_step_on_every_q_parameter",
        "tests/components/test_dyna_q.py::test_planning_searches_from_seen_states[taken]",
    ]
    [result] = charged_once(REFERENCE, ["ReplayBuffer"], targets=targets)
    assert result.tests_run == len(targets), format_table([result])
    assert result.lost.get("ReplayBuffer", 0) > 0, format_table([result])
    assert result.others == {}, format_table([result])


@pytest.mark.timeout(120)
def test_stubbed_dynamics_model_is_charged_to_dynamics_model_only() -> None:
    """Without DynamicsModel's tasks, its test fails; the planner's cell 13 and Dyna-Q's train() still pass."""
    targets = [
        "tests/components/test_dynamics_model.py::test_forward_keys_and_batched_shapes",
        "tests/components/test_latent_planner.py::test_seed_cell_13_shapes",
        "tests/components/test_dyna_q.py::test_train_returns_per_episode_history_on_both_env_apis",
    ]
    [result] = charged_once(REFERENCE, ["DynamicsModel"], targets=targets)
    assert result.tests_run == len(targets), format_table([result])
    assert result.lost.get("DynamicsModel", 0) > 0, format_table([result])
    assert result.others == {}, format_table([result])
