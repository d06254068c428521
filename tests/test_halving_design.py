"""The space-filling design successive halving draws its first networks from
(:func:`fastrnn.tuning.halving_sampler.space_filling`), against scipy's discrepancy as the
independent reference, and what it buys over uniform draws."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.stats import qmc

from fastrnn.objective.space import get_space
from fastrnn.tuning.halving_budget import BudgetDecisions
from fastrnn.tuning.halving_lanes import Pace
from fastrnn.tuning.halving_plan import HalvingSettings, setting_differences, settings_from_record
from fastrnn.tuning.halving_sampler import centered_discrepancy, propose, space_filling

from helpers import synthetic_text

LOG = get_space("log")


@pytest.mark.parametrize("n", [1, 2, 7, 18, 54])
def test_each_coordinate_has_one_point_in_each_of_its_n_slices(n):
    units = space_filling(np.random.default_rng(n), n, 3)
    assert units.shape == (n, 3)
    assert np.all((units >= 0) & (units < 1))
    for column in units.T:
        assert sorted(np.floor(column * n).astype(int)) == list(range(n))


def test_the_discrepancy_is_scipys_centered_l2_discrepancy():
    rng = np.random.default_rng(5)
    for n, d in ((2, 1), (18, 3), (40, 5)):
        units = rng.random((n, d))
        assert centered_discrepancy(units) == pytest.approx(qmc.discrepancy(units, method="CD"), rel=1e-12)


def test_the_swaps_spread_the_design_as_scipys_random_cd_does():
    ours = [centered_discrepancy(space_filling(np.random.default_rng(seed), 18, 3)) for seed in range(30)]
    plain = [qmc.discrepancy(qmc.LatinHypercube(d=3, seed=seed).random(18), method="CD") for seed in range(30)]
    scipys = [qmc.discrepancy(qmc.LatinHypercube(d=3, seed=seed, optimization="random-cd").random(18), method="CD")
              for seed in range(30)]
    assert np.median(ours) < 0.8 * np.median(plain)
    assert np.median(ours) < 1.1 * np.median(scipys)


def _networks_in_corner(design, seeds):
    """How many of a first wave of 18 lie where 600 s networks did well on tinyshakespeare."""
    found = []
    for seed in seeds:
        configs, _ = propose("random", seed, LOG, range(18), design=design)
        found.append(sum(150 <= c.hidden <= 400 and 0.01 <= c.learning_rate <= 0.04 for c in configs))
    return np.array(found)


def test_a_space_filling_wave_misses_the_good_corner_less_often_than_uniform_draws():
    # measured over 600 seeds: 47.5% of uniform waves hold no such network, 34.3% of designs
    seeds = range(300)
    uniform, spread = _networks_in_corner("uniform", seeds), _networks_in_corner("space-filling", seeds)
    assert (spread == 0).mean() < (uniform == 0).mean() - 0.08
    assert abs(spread.mean() - uniform.mean()) < 0.15  # the same share of the box on average: only spread


def test_a_wave_is_a_function_of_the_seed_and_its_trials():
    first, used = propose("tpe", 4, LOG, range(18, 36))  # tpe without a history: the design
    assert used == "space-filling"
    assert propose("tpe", 4, LOG, range(18, 36))[0] == first
    assert propose("tpe", 4, LOG, range(36, 54))[0] != first
    assert propose("tpe", 5, LOG, range(18, 36))[0] != first
    assert len({tuple(config.x) for config in first}) == 18


def test_uniform_draws_are_those_of_the_runs_before_the_design():
    # trial 13 of the 600 s tinyshakespeare run with seed 0 (the answer of docs/COMPARISON.md)
    configs, used = propose("tpe", 0, LOG, range(18), design="uniform")
    assert used == "random"
    assert configs[13].x == [374, 7, 0.015366764567378838]


def test_a_run_file_written_before_designs_resumes_with_uniform_draws():
    record = HalvingSettings(sampler="random").record()
    del record["design"]
    assert settings_from_record(record).design == "uniform"
    assert setting_differences(record, HalvingSettings(sampler="random", design="uniform")) == []
    assert [name for name, *_ in setting_differences(record, HalvingSettings(sampler="random"))] == ["design"]


def test_an_unknown_design_is_refused():
    with pytest.raises(ValueError, match="unknown design 'sobol'; valid: space-filling, uniform"):
        HalvingSettings(design="sobol")
    with pytest.raises(ValueError, match="unknown design"):
        propose("random", 0, LOG, range(3), design="sobol")


def test_the_cli_takes_and_records_the_design(tmp_path):
    from fastrnn.cli.main import cli

    text_file = str(tmp_path / "text.txt")
    (tmp_path / "text.txt").write_text(synthetic_text(30_000, seed=4), encoding="utf-8")

    refused = CliRunner().invoke(cli, ["tune", "--design", "sobol", "--corpus", text_file])
    assert refused.exit_code == 2 and "--design" in refused.output
    out = tmp_path / "u.jsonl"
    args = ["tune", "--method", "halving", "--min-chars", "400", "--target-chars", "3600", "--starts", "6",
            "--heldout-chars", "1000", "--sampler", "random", "--design", "uniform", "--seed", "2",
            "--corpus", text_file, "--quiet",
            "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[0]["halving"]["design"] == "uniform"
    drawn = [line["x"] for line in lines if line["type"] == "trial"]
    expected, _ = propose("random", 2, LOG, range(6), design="uniform")
    assert drawn == [config.x for config in expected]

    # written before designs existed: its draws were uniform, and --design uniform agrees with it
    del lines[0]["halving"]["design"]
    out.write_text("".join(json.dumps(line) + "\n" for line in lines))
    agreed = CliRunner().invoke(cli, ["tune", "--resume", str(out), "--design", "uniform", "--quiet"])
    assert agreed.exit_code == 0, agreed.output
    refused = CliRunner().invoke(cli, ["tune", "--resume", str(out), "--design", "space-filling", "--quiet"])
    assert refused.exit_code == 2 and "uniform" in refused.output, refused.output


class _Planner(BudgetDecisions):
    """What :meth:`BudgetDecisions._auto_plan` reads of a run about to plan its bracket: the 600 s
    budget of tinyshakespeare's seed 2 on the 2-core AMD EPYC (its calibration line), nothing
    trained yet."""

    def __init__(self, seed: int, seconds_per_unit: float):
        self.settings = HalvingSettings(sampler="random").resolved()
        self.F = SimpleNamespace(seed=seed, space=LOG, dtype="float32",
                                 heldout=SimpleNamespace(data=np.zeros(20_000)))
        self.pace, self.vocab_size = Pace(seconds_per_unit), 65
        self.lanes = SimpleNamespace(count=2)
        self.budgets = {"budget_chars": None, "budget_seconds": 600.0, "budget_trainings": None}
        self.plans, self.trials, self.trial_lines, self.written = {}, {}, {}, []

    def elapsed(self) -> float:
        return 3.0

    def write(self, line: dict) -> None:
        self.written.append(line)
        line["seconds"] = self.elapsed()


def test_the_plan_starts_the_most_networks_whose_own_first_wave_fits():
    """A bracket of n networks draws a design of its own for its first wave, so whether n fits is
    not monotone in n: seed 2's 600 s run, planned by bisection, started 8 networks where 18 fit."""
    planner = _Planner(seed=2, seconds_per_unit=1.0937361755938644e-10)
    plan = planner._auto_plan(None)
    assert plan["starts"] == 18 and plan["counts"][:2] == [18, 6]
    lengths, sizes = plan["rungs"][:-1], plan["counts"][:-1]
    first_wave = [(c.hidden, c.seq_length) for c in propose("random", 2, LOG, range(18))[0]]
    assert planner._bracket_seconds(lengths, sizes, first_wave) <= 0.25 * 600.0
