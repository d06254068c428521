"""The objective F(h, s, l): interpolation, sanity penalty, seeds, memo, batches, threads."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fastrnn.network.training import train
from fastrnn.objective.function import Objective, interpolation_weights, sanity_penalty

ALPHA = 20


@pytest.fixture
def F(small_corpus):
    return Objective(small_corpus, alpha=ALPHA, beta=2, threads=2, kind="paper")


def _run_loss(corpus, h, s, l, seed, alpha=ALPHA):
    return train(corpus, h, s, l, alpha, seed=seed).smooth_loss


def test_discrete_value_is_mean_over_seeded_replicas(F, small_corpus):
    expected = (_run_loss(small_corpus, 24, 7, 0.1, 0) + _run_loss(small_corpus, 24, 7, 0.1, 1)) / 2
    assert F.discrete(24, 7, 0.1) == expected


def test_continuous_value_is_the_papers_bilinear_formula(F):
    f = F.discrete
    h, s, l = 24.25, 7.8, 0.1
    expected = 0.75 * (0.2 * f(24, 7, l) + 0.8 * f(24, 8, l)) + 0.25 * (0.2 * f(25, 7, l) + 0.8 * f(25, 8, l))
    assert F((h, s, l)) == pytest.approx(expected, rel=1e-15)


def test_integer_point_trains_only_its_own_corner(F):
    F((30, 9, 0.2))
    assert F.counters.trainings_run == 2  # beta replicas of one corner: weight-zero corners untrained
    F((30.5, 9, 0.2))
    assert F.counters.trainings_run == 4  # adds (31, 9); (30, 9) comes from the memo
    assert F.counters.trainings_from_memo == 2
    assert F.memo_size == 4


def test_one_off_objective_function_equals_the_class(small_corpus):
    from fastrnn.objective.function import objective

    assert objective(24.5, 7, 0.1, corpus=small_corpus, alpha=ALPHA, beta=2, kind="paper") == \
        Objective(small_corpus, alpha=ALPHA, beta=2, kind="paper")((24.5, 7, 0.1))


def test_interpolation_weights():
    assert interpolation_weights(40.25) == (40, 0.75, 0.25)
    assert interpolation_weights(7.0) == (7, 1.0, 0.0)
    assert interpolation_weights(-0.5) == (-1, 0.5, 0.5)


@pytest.mark.parametrize(
    "point,penalty",
    [
        ((410, 25, 0.5), 0.0),
        ((20, 5, 1e-4), 0.0),
        ((800, 40, 1.0), 0.0),
        ((19, 25, 0.5), 1e6 + 391.0**2),
        ((801, 25, 0.5), 1e6 + 391.0**2),
        ((410, 4, 0.5), 1e6 + 21.0**2),
        ((410, 41, 0.5), 1e6 + 16.0**2),
        ((410, 25, 2.0), 1e6 + 1.5**2),
        ((410, 25, 1e-5), 1e6 + (1e-5 - 0.5) ** 2),
        ((3, 3, 3), 3e6 + 407.0**2 + 22.0**2 + 2.5**2),
    ],
)
def test_sanity_penalty(point, penalty):
    assert sanity_penalty(*point) == pytest.approx(penalty, rel=1e-15)


def test_insane_corners_are_penalised_and_not_trained(F):
    value = F((3, 3, 3))
    assert value == sanity_penalty(3, 3, 3)
    assert F.counters.trainings_run == 0


def test_a_corner_outside_the_range_is_penalised_alone(F):
    """h = 19.5 mixes an insane corner (19) with a sane one (20)."""
    value = F((19.5, 6, 0.1))
    assert value == pytest.approx(0.5 * sanity_penalty(19, 6, 0.1) + 0.5 * F.discrete(20, 6, 0.1), rel=1e-15)
    assert F.counters.trainings_run == 2


@pytest.mark.parametrize("bad", [(np.nan, 10, 0.1), (30, np.inf, 0.1), (30, 10, -np.inf), (1, 2), "abc"])
def test_non_finite_or_malformed_points_raise(F, bad):
    with pytest.raises(ValueError, match="finite|three numbers"):
        F(bad)


def test_common_noise_is_deterministic_and_fresh_noise_is_not(small_corpus):
    common = Objective(small_corpus, alpha=ALPHA, beta=1, noise="common", seed=5, kind="paper")
    again = Objective(small_corpus, alpha=ALPHA, beta=1, noise="common", seed=5, kind="paper")
    point = (26.5, 8.5, 0.2)
    assert common(point) == common(point) == again(point)

    fresh = Objective(small_corpus, alpha=ALPHA, beta=1, noise="fresh", seed=5, kind="paper")
    first, second = fresh(point), fresh(point)
    assert first != second  # new initialisations every evaluation, as the paper
    replay = Objective(small_corpus, alpha=ALPHA, beta=1, noise="fresh", seed=5, kind="paper")
    assert (replay(point), replay(point)) == (first, second)  # reproducible from the run seed


def test_memo_serves_finite_difference_neighbours(F):
    """F(x + 1e-8 e_h) needs the same integer corners as F(x): no new training."""
    x = np.array([24.4, 7.3, 0.1])
    F(x)
    run_before = F.counters.trainings_run
    F(x + [1e-8, 0, 0])
    F(x + [0, 1e-8, 0])
    assert F.counters.trainings_run == run_before
    F(x + [0, 0, 1e-8])
    assert F.counters.trainings_run == run_before + 8  # a new learning rate: 4 corners x beta


def test_batch_equals_one_by_one_and_counts(small_corpus):
    points = [(24.4, 7.3, 0.1), (24.4 + 1e-8, 7.3, 0.1), (24.4, 7.3, 0.1 + 1e-8), (30, 9, 0.2)]
    batch = Objective(small_corpus, alpha=ALPHA, beta=2, threads=2, kind="paper")
    values = batch.evaluate_many(points)
    single = Objective(small_corpus, alpha=ALPHA, beta=2, threads=1, kind="paper")
    assert values.tolist() == [single(p) for p in points]
    c = batch.counters
    assert c.evaluations == 4
    assert c.trainings_run == 2 * (4 + 4 + 1)
    assert c.trainings_from_memo == 2 * (4 + 4 + 4 + 1) - c.trainings_run
    assert c.training_steps == c.trainings_run * ALPHA
    assert c.seconds > 0
    assert 0 < c.memo_share < 1


def test_results_do_not_depend_on_thread_count(small_corpus):
    points = [(20 + k * 3.7, 5 + k * 2.3, 0.05 + 0.1 * k) for k in range(5)]
    by_threads = [Objective(small_corpus, alpha=ALPHA, beta=3, threads=t, kind="paper").evaluate_many(points) for t in (1, 2, 4)]
    for values in by_threads[1:]:
        np.testing.assert_array_equal(values, by_threads[0])


def test_backends_agree_on_the_objective(small_corpus):
    point = (21.5, 5.5, 0.1)
    numpy_value = Objective(small_corpus, alpha=ALPHA, beta=1, backend="numpy", kind="paper")(point)
    numba_value = Objective(small_corpus, alpha=ALPHA, beta=1, backend="numba", kind="paper")(point)
    assert numba_value == pytest.approx(numpy_value, rel=1e-12)


def test_diverged_runs_get_the_documented_value(small_corpus, poison_new_runs):
    F = Objective(small_corpus, alpha=ALPHA, beta=1, diverged_value=123.0, kind="paper")
    poison_new_runs(np.nan)
    assert F((25, 10, 0.1)) == 123.0
    assert F.counters.trainings_diverged == 1
    assert math.isfinite(F((25.5, 10, 0.1)))


def test_learning_rate_is_part_of_the_memo_key(F):
    assert F((25, 10, 0.1)) != F((25, 10, 0.2))


def test_loss_kind_last(small_corpus):
    F = Objective(small_corpus, alpha=ALPHA, beta=1, loss="last", kind="paper")
    state = train(small_corpus, 25, 10, 0.1, ALPHA, seed=0)
    assert F((25, 10, 0.1)) == state.last_loss


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(alpha=0), "alpha"),
        (dict(beta=0), "beta"),
        (dict(noise="loud"), "noise"),
        (dict(loss="mean"), "loss kind"),
        (dict(backend="fortran"), "backend"),
        (dict(threads=0), "threads"),
        (dict(dtype="float16"), "dtype"),
        (dict(backend="numpy", dtype="float32"), "float64 only"),
    ],
)
def test_bad_settings_raise_value_error(small_corpus, kwargs, match):
    with pytest.raises(ValueError, match=match):
        Objective(small_corpus, **kwargs, kind="paper")


def test_corpus_too_short_for_the_sequence_length():
    from fastrnn.network.corpus import Corpus

    F = Objective(Corpus.from_text("To be, or not to be: that is it."), alpha=2, beta=1, kind="paper")
    assert math.isfinite(F((25, 10, 0.1)))
    with pytest.raises(ValueError, match="seq"):
        F((25, 39, 0.1))


def test_seeds_must_fit_numpys_generator(small_corpus):
    """RandomState takes seeds below 2**32, and replica r of a common-noise objective is seeded
    seed + r: refused when the objective is made, naming the rule, not at its first evaluation."""
    from fastrnn.network.training import train

    Objective(small_corpus, alpha=2, beta=2, seed=2**32 - 2, kind="paper")
    with pytest.raises(ValueError, match=r"seed must be at most 2\*\*32 - 2 \(the 2 replicas"):
        Objective(small_corpus, alpha=2, beta=2, seed=2**32 - 1, kind="paper")
    with pytest.raises(ValueError, match=r"seed must be at most 2\*\*32 - 1"):
        train(small_corpus, 5, 3, 0.1, steps=1, seed=2**32)


@pytest.mark.parametrize("kind, settings, fragment", [
    ("paper", dict(heldout_fraction=0.2), "belongs to the held-out objective"),
    ("paper", dict(heldout_chars=500), "belongs to the held-out objective"),
    ("paper", dict(heldout="no/such/file.txt"), "belongs to the held-out objective"),
    ("heldout", dict(loss="last"), "belongs to the paper's objective"),
    ("paper", dict(diverged_value=float("nan")), "diverged_value must be a finite number"),
    ("heldout", dict(diverged_value=float("inf")), "diverged_value must be a finite number"),
])
def test_settings_the_objective_would_ignore_are_refused(small_corpus, kind, settings, fragment):
    with pytest.raises(ValueError, match=fragment):
        Objective(small_corpus, alpha=2, kind=kind, **settings)
