"""fastrnn: fast hyperparameter tuning of small character-level RNNs (min-char-rnn).

Modules: ``objective`` (the paper's F(h, s, l)), ``optimize`` (gd, newton, bfgs, dfp),
``calculus`` (finite differences), ``training`` (one network), ``backends`` (numpy reference,
numba, cython), ``corpus`` (training text), ``tuning`` (run files), ``reproduce`` (the paper's
trials). Importing the package never compiles or loads a kernel.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fastrnn")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
