"""The library as SciPy and Optuna users meet it: F's box, its log-space view, and README's examples.

Issue 22, item 8: ``Objective.bounds`` gave the learning rate (1e-6, 1), half of it in the
penalty zone, and L-BFGS-B on F did not move (its 1e-8 differences measure Adagrad's chaos).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from fastrnn.objective import Objective
from fastrnn.objective.paper import PAPER_BOUNDS, SANE_RANGES

README = Path(__file__).resolve().parents[1] / "README.md"
#: README trains 20,000 characters per network; the tests the same code with shorter training.
SHORT = "Objective(train_chars=2_000, heldout_chars=1_000)"


def readme_example(library: str) -> str:
    """The README's Python example that imports ``library``, under "With SciPy and Optuna"."""
    section = README.read_text(encoding="utf-8").split("### With SciPy and Optuna", 1)[1].split("\n## ", 1)[0]
    blocks = [block for block in re.findall(r"```python\n(.*?)```", section, re.S) if f"import {library}" in block
              or f"from {library}" in block]
    assert len(blocks) == 1, f"README has no single {library} example under 'With SciPy and Optuna'"
    code = blocks[0]
    assert "Objective(train_chars=20_000)" in code
    return code.replace("Objective(train_chars=20_000)", SHORT)


def test_heldout_bounds_are_the_sane_box():
    F = Objective(train_chars=2_000, heldout_chars=1_000)
    assert F.bounds == tuple((low, high) for low, high, _ in SANE_RANGES)
    assert F.bounds[2] == (1e-4, 1.0)
    G = F.log_space()
    np.testing.assert_allclose(G.bounds, [[np.log2(20), np.log2(800)], [np.log2(5), np.log2(40)], [-4, 0]])
    # every corner of every point in the box trains a network: no penalty (>= 1e6) anywhere
    for z in np.random.default_rng(0).uniform(G.bounds[:, 0], G.bounds[:, 1], size=(3, 3)):
        assert G(z) < 10


def test_paper_bounds_stay_the_papers():
    # reproduce's quasi-Newton fallback checks the paper's box, learning-rate floor 1e-6
    assert Objective(alpha=5, kind="paper").bounds == PAPER_BOUNDS


def test_log_space_gradient_is_exact_along_h_and_s():
    F = Objective(train_chars=2_000, heldout_chars=1_000)
    G = F.log_space()
    z = G.initial_point(3)
    value, gradient = G.value_and_grad(z)
    point = G.to_point(z)
    assert value == F(point)
    _, dF_dh, dF_ds = F.cell_partials(point)
    np.testing.assert_allclose(gradient[:2], [dF_dh * point[0] * np.log(2), dF_ds * point[1] * np.log(2)],
                               rtol=1e-12)
    step = 0.05
    expected_l = (G([z[0], z[1], z[2] + step]) - value) / step
    assert gradient[2] == pytest.approx(expected_l, rel=1e-12)


def test_readme_scipy_example_moves_lbfgsb():
    pytest.importorskip("scipy")
    namespace: dict = {}
    exec(readme_example("scipy"), namespace)
    result, G = namespace["result"], namespace["G"]
    start = G(G.initial_point(0))
    assert result.nit >= 1 and result.fun < start  # it moved, downhill
    assert np.all(G.bounds[:, 0] <= result.x) and np.all(result.x <= G.bounds[:, 1])


def test_readme_optuna_example_searches_the_sane_box():
    pytest.importorskip("optuna")
    namespace: dict = {}
    exec(readme_example("optuna"), namespace)
    study, F = namespace["study"], namespace["F"]
    assert len(study.trials) == 20
    for trial in study.trials:
        (h_low, h_high), (s_low, s_high), (l_low, l_high) = F.bounds
        assert h_low <= trial.params["hidden"] <= h_high and l_low <= trial.params["learning_rate"] <= l_high
        assert trial.value < 10  # a trained network's loss, never a penalty
    assert study.best_value == min(trial.value for trial in study.trials)
