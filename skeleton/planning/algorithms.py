"""Planning components the notebook imports (one algorithm per module, re-exported here)."""

from .mcts import *  # noqa: F401,F403
from .mcts import __all__ as _mcts_all
from .mve import *  # noqa: F401,F403
from .mve import __all__ as _mve_all
from .world_model import *  # noqa: F401,F403
from .world_model import __all__ as _world_model_all
from .latent_planner import *  # noqa: F401,F403
from .latent_planner import __all__ as _latent_planner_all

__all__ = [*_mcts_all, *_mve_all, *_world_model_all, *_latent_planner_all]
