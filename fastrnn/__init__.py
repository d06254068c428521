"""fastrnn: fast hyperparameter tuning of small character-level RNNs (min-char-rnn).

Folders, bottom to top: ``network`` (corpus, model, training one network, sampling, scoring),
``backends`` (numpy reference, numba, cython), ``running`` (executors: threads, Dask),
``optimize`` (minimize and its methods, finite differences, samplers), ``objective`` (F(h, s, l)
and its settings), ``tuning`` (run files, compare, the paper's trials), ``bench``. Importing the
package never compiles or loads a kernel.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fastrnn")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
