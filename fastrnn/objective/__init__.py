"""The objective F(h, s, l): the function itself (``function``: corners, memo, interpolation),
its settings as one frozen value (``settings``), the held-out split (``heldout``), the search
spaces (``space``) and the paper's box, penalty and start (``paper``).

``fastrnn.objective.Objective`` (and the other names in ``function.__all__``) are re-exported here.
"""

from .function import *  # noqa: F403
from .function import __all__  # noqa: F401
