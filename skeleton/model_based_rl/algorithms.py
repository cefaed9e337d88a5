"""Model-based RL components the notebook imports (one algorithm per module, re-exported here)."""

from .dynamics import *  # noqa: F401,F403
from .dynamics import __all__ as _dynamics_all
from .ensemble import *  # noqa: F401,F403
from .ensemble import __all__ as _ensemble_all
from .mpc import *  # noqa: F401,F403
from .mpc import __all__ as _mpc_all
from .dyna_q import *  # noqa: F401,F403
from .dyna_q import __all__ as _dyna_q_all

__all__ = [*_dynamics_all, *_ensemble_all, *_mpc_all, *_dyna_q_all]
