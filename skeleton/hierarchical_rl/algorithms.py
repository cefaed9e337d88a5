"""Hierarchical RL components the notebook imports (one algorithm per module, re-exported here)."""

from .options import *  # noqa: F401,F403
from .options import __all__ as _options_all
from .goal_conditioned import *  # noqa: F401,F403
from .goal_conditioned import __all__ as _goal_conditioned_all
from .hac import *  # noqa: F401,F403
from .hac import __all__ as _hac_all
from .feudal import *  # noqa: F401,F403
from .feudal import __all__ as _feudal_all

__all__ = [*_options_all, *_goal_conditioned_all, *_hac_all, *_feudal_all]
