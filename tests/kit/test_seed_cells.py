"""The seed notebook's calls (notebooks/seed_cells.py) run against reference/ and print what the seed means."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from grader.authoring.seed_cells import parse_cells, parse_selection

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cells() -> dict[int, str]:
    """Cell number -> printed output (with traceback on error) of one run of every seed cell on reference/."""
    proc = subprocess.run(
        [sys.executable, "-m", "grader.authoring.seed_cells", "--impl", str(REPO / "reference")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    pieces = re.split(r"^----- cell (\d+) \((?:ok|ERROR), [\d.]+ s\) -----$", proc.stdout, flags=re.MULTILINE)
    out = {int(pieces[i]): pieces[i + 1] for i in range(1, len(pieces), 2)}
    out[0] = proc.stdout + proc.stderr
    return out


def _ok(cells: dict[int, str], n: int) -> str:
    assert n in cells, cells[0][-3000:]
    assert "Traceback" not in cells[n], cells[n]
    return cells[n]


@pytest.mark.timeout(300)
def test_every_seed_cell_runs(cells: dict[int, str]) -> None:
    """All thirteen cells run without an error (the seed's TypeErrors were bugs of the old code)."""
    assert "===== 13/13 cells ran; failed: none =====" in cells[0], cells[0][-4000:]


def test_cell3_dynamics_model_shapes(cells: dict[int, str]) -> None:
    """Cell 3 prints the batched means and the squeezed sample of a batch of one."""
    out = _ok(cells, 3)
    assert "Predicted next state mean shape: torch.Size([1, 4])" in out
    assert "Predicted reward mean shape: torch.Size([1, 1])" in out
    assert "['next_state_mean', 'reward_mean', 'next_state_std', 'reward_std']" in out
    assert "Sampled next state shape: torch.Size([4])" in out
    assert "Sampled reward shape: torch.Size([])" in out


def test_cell4_ensemble_loss_decreases(cells: dict[int, str]) -> None:
    """Cell 4's ensemble loss at step 9 is below its loss at step 0 (it fits the fixed batch)."""
    losses = [float(x) for x in re.findall(r"Step \d: Loss = (-?[\d.]+)", _ok(cells, 4))]
    assert len(losses) == 4 and losses[-1] < losses[0], losses


def test_cell5_mpc_action_shape(cells: dict[int, str]) -> None:
    """Cell 5 plans a (2,) action."""
    assert "Planned action shape: torch.Size([2])" in _ok(cells, 5)


def test_cell6_dyna_q(cells: dict[int, str]) -> None:
    """Cell 6 selects a discrete action and stores one transition."""
    out = _ok(cells, 6)
    assert re.search(r"Selected action: [01]\b", out)
    assert "Buffer size: 1" in out


def test_cell7_option(cells: dict[int, str]) -> None:
    """Cell 7 builds an option with an id, which can initiate anywhere."""
    out = _ok(cells, 7)
    assert "Option created (ID: 0)" in out and "Can initiate: True" in out


def test_cell8_hac(cells: dict[int, str]) -> None:
    """Cell 8 gets an output from the highest and the lowest level of a 3-level HAC."""
    out = _ok(cells, 8)
    assert "Level 0 (highest) output:" in out and "Level 2 (lowest) action:" in out


def test_cell9_goal_conditioned(cells: dict[int, str]) -> None:
    """Cell 9 returns a (2,) action and stores the transition."""
    out = _ok(cells, 9)
    assert "Action shape: (2,)" in out and "Buffer size: 1" in out


def test_cell10_feudal_goal_shape(cells: dict[int, str]) -> None:
    """Cell 10's manager goal has the manager's dimension, 16."""
    assert "Manager goal embedding shape: (16,)" in _ok(cells, 10)


def test_cell11_mcts_moves_towards_goal(cells: dict[int, str]) -> None:
    """Cell 11's MCTS picks action 2 (+1, towards the goal at 10)."""
    assert "MCTS best action: 2" in _ok(cells, 11)


def test_cell12_world_model_shapes(cells: dict[int, str]) -> None:
    """Cell 12 encodes to (1, 16) latents, decodes to (1, 4) states and predicts (1, 1) rewards."""
    out = _ok(cells, 12)
    for line in [
        "Latent mean shape: torch.Size([1, 16])",
        "Sampled latent shape: torch.Size([1, 16])",
        "Reconstructed state shape: torch.Size([1, 4])",
        "Next latent shape: torch.Size([1, 16])",
        "Predicted reward shape: torch.Size([1, 1])",
        "Predicted next state shape: torch.Size([1, 4])",
    ]:
        assert line in out


def test_cell13_latent_planner_action_shape(cells: dict[int, str]) -> None:
    """Cell 13 plans a (2,) first action in latent space."""
    assert "Planned actions shape: torch.Size([2])" in _ok(cells, 13)


def test_cell_selection_parsing() -> None:
    """'1-3,7' selects cells 1, 2, 3 and 7; unknown cells and bad syntax are ValueErrors naming --cells."""
    assert parse_selection("1-3,7", list(range(1, 14))) == [1, 2, 3, 7]
    assert parse_selection("all", [2, 1]) == [1, 2]
    with pytest.raises(ValueError, match="--cells"):
        parse_selection("14", list(range(1, 14)))
    with pytest.raises(ValueError, match="--cells"):
        parse_selection("a-b", list(range(1, 14)))


def test_seed_file_has_thirteen_cells() -> None:
    """notebooks/seed_cells.py holds the seed's 13 code cells."""
    assert sorted(parse_cells((REPO / "notebooks" / "seed_cells.py").read_text())) == list(range(1, 14))
