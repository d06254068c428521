"""The methods that minimise a function: ``minimize`` and its method table (``methods``), the
step rules (``steppers``), the finite differences (``calculus``) and their noise-aware step
(``noise``), what an optimizer may ask of the function (``problem``) and the samplers that
propose points (``samplers``). Nothing here knows the RNN, the paper or a backend.

``fastrnn.optimize.minimize`` (and the other names in ``methods.__all__``) are re-exported here.
"""

from .methods import *  # noqa: F403
from .methods import __all__  # noqa: F401
