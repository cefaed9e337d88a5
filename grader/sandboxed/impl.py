"""Load an *implementation root* (CONVENTIONS §1) without leaking between roots.

An implementation root is a folder holding ``model_based_rl/``, ``hierarchical_rl/``, ``planning/``,
``environments/`` and ``utils``. Tests, the notebook harness and the grader all import student code through
:func:`load_implementation`, so that ``reference/``, ``skeleton/`` and a submission can be loaded one after
another in the same process and never see each other's modules.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

#: Public name -> module that must define it (the table of CONVENTIONS §1).
PUBLIC_API: dict[str, str] = {
    "DynamicsModel": "model_based_rl.algorithms",
    "ModelEnsemble": "model_based_rl.algorithms",
    "ModelPredictiveController": "model_based_rl.algorithms",
    "DynaQAgent": "model_based_rl.algorithms",
    "Option": "hierarchical_rl.algorithms",
    "HierarchicalActorCritic": "hierarchical_rl.algorithms",
    "GoalConditionedAgent": "hierarchical_rl.algorithms",
    "FeudalNetwork": "hierarchical_rl.algorithms",
    "HierarchicalRLEnvironment": "hierarchical_rl.environments",
    "MCTSNode": "planning.algorithms",
    "MonteCarloTreeSearch": "planning.algorithms",
    "ModelBasedValueExpansion": "planning.algorithms",
    "LatentSpacePlanner": "planning.algorithms",
    "WorldModel": "planning.algorithms",
    "SimpleGridWorld": "environments.grid_world",
    "ReplayBuffer": "utils",
    "PrioritizedReplayBuffer": "utils",
    "RunningStats": "utils",
    "Logger": "utils",
    "VisualizationUtils": "utils",
    "EnvironmentUtils": "utils",
}

#: Top-level names an implementation root may define; their module cache is cleared on every load.
TOP_LEVEL_NAMES: tuple[str, ...] = ("model_based_rl", "hierarchical_rl", "planning", "environments", "utils")


def _top_level_names(root: Path) -> set[str]:
    names = set(TOP_LEVEL_NAMES)
    for entry in root.iterdir():
        if entry.is_dir() and (entry / "__init__.py").exists():
            names.add(entry.name)
        elif entry.suffix == ".py":
            names.add(entry.stem)
    return names


def _purge(names: set[str]) -> None:
    for mod_name in list(sys.modules):
        if mod_name.split(".", 1)[0] in names:
            del sys.modules[mod_name]


@dataclass
class Implementation:
    """A loaded implementation root.

    Attribute access resolves the public names of CONVENTIONS §1 (``impl.DynamicsModel``);
    :meth:`module` imports any module of the root (``impl.module("model_based_rl.algorithms")``).
    """

    root: Path
    _names: set[str] = field(default_factory=set, repr=False)

    def module(self, name: str) -> ModuleType:
        """Import ``name`` (dotted, relative to the root) from this root."""
        top = name.split(".", 1)[0]
        if top not in self._names:
            raise ValueError(
                f"module {name!r} is not part of the implementation root {self.root} "
                f"(top-level names: {sorted(self._names)})"
            )
        return importlib.import_module(name)

    def __getattr__(self, attr: str):
        if attr.startswith("_") or attr not in PUBLIC_API:
            raise AttributeError(attr)
        return getattr(self.module(PUBLIC_API[attr]), attr)


def resolve_root(given: str | Path, *bases: Path) -> Path:
    """The implementation root folder ``given`` names: absolute, or relative to the first of ``bases`` (then the
    kit's folder) where it exists.

    Raises:
        ValueError: naming the argument, the folders tried, and what an implementation root holds.
    """
    given = Path(given)
    kit = Path(__file__).resolve().parents[2]
    candidates = [given] if given.is_absolute() else list(dict.fromkeys(base / given for base in (*bases, kit)))
    for root in candidates:
        if root.is_dir():
            return root.resolve()
    raise ValueError(
        f"--impl: expected an implementation root folder (holding model_based_rl/, planning/, ...), "
        f"got {str(given)!r}, which does not exist (looked in {[str(c) for c in candidates]})"
    )


def load_implementation(root: str | Path) -> Implementation:
    """Make ``root`` the implementation that ``import model_based_rl`` (etc.) resolves to.

    Removes any earlier implementation root from ``sys.path``, clears the module cache for every
    top-level name of ``root`` (and the standard ones), and puts ``root`` first on ``sys.path``.

    Raises:
        ValueError: if ``root`` is not a folder.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise ValueError(f"implementation root must be an existing folder, got {str(root)!r}")
    names = _top_level_names(root)
    global _CURRENT
    if _CURRENT is not None:
        names |= _CURRENT._names
        while str(_CURRENT.root) in sys.path:
            sys.path.remove(str(_CURRENT.root))
    _purge(names)
    importlib.invalidate_caches()
    sys.path.insert(0, str(root))
    _CURRENT = Implementation(root=root, _names=names)
    return _CURRENT


_CURRENT: Implementation | None = None
