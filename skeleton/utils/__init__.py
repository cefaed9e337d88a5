"""Utilities: replay buffers, running statistics, logging, plotting, environment helpers.

Public names (CONVENTIONS §1): ``ReplayBuffer``, ``PrioritizedReplayBuffer``, ``RunningStats``, ``Logger``,
``VisualizationUtils``, ``EnvironmentUtils``; plus the batch types and the pure helper functions of each
module. Importing this package has no side effects (no matplotlib backend switch, no files written, no
global seeding).
"""

from utils import checks, torch_utils
from utils.env_utils import EnvironmentUtils, Trajectory
from utils.logger import Logger
from utils.replay import (
    PrioritizedReplayBuffer,
    PrioritizedTransition,
    ReplayBuffer,
    Transition,
    annealed_beta,
    circular_write_indices,
    importance_weights,
    per_probabilities,
    stratified_prefix_sums,
)
from utils.running_stats import RunningStats, chan_merge
from utils.sum_tree import SumTree
from utils.visualization import VisualizationUtils

__all__ = [
    "EnvironmentUtils",
    "Logger",
    "PrioritizedReplayBuffer",
    "PrioritizedTransition",
    "ReplayBuffer",
    "RunningStats",
    "SumTree",
    "Trajectory",
    "Transition",
    "VisualizationUtils",
    "annealed_beta",
    "chan_merge",
    "checks",
    "circular_write_indices",
    "importance_weights",
    "per_probabilities",
    "stratified_prefix_sums",
    "torch_utils",
]
