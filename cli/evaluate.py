"""`fastrnn objective` (F at a point) and `fastrnn gradient` (its gradient, with noise and SNR)."""

from __future__ import annotations

import math

import click
import numpy as np

from fastrnn.network.corpus import CorpusError
from fastrnn.objective.space import SpaceView
from fastrnn.optimize.calculus import OPTIMIZER_GRADIENT_METHODS, gradient, step_lost_in_rounding
from fastrnn.running.memory import MemoryLimitError

from .common import (
    PositiveOrAuto,
    common_options,
    emit_json,
    finite_float,
    paper_form,
)
from .objective_options import (
    objective_options,
)


@click.command("objective")
@click.argument("hidden", type=float, callback=finite_float)
@click.argument("seq_length", metavar="SEQ", type=float, callback=finite_float)
@click.argument("learning_rate", metavar="LR", type=float, callback=finite_float)
@click.option("--json", "as_json", is_flag=True, help="Print the value with settings and counters as JSON.")
@common_options
@objective_options
def objective_command(hidden, seq_length, learning_rate, as_json, F, seed, quiet):
    """Print the continuous objective F(HIDDEN, SEQ, LR) (floats allowed for HIDDEN and SEQ)."""
    try:
        value = F((hidden, seq_length, learning_rate))
    except CorpusError as exc:
        raise click.BadParameter(str(exc), param_hint="SEQ") from None
    except MemoryLimitError as exc:
        raise click.UsageError(str(exc)) from None
    if as_json:
        # held-out values are nats per character; bits per character beside them
        bits = dict(bits_per_char=value / math.log(2.0)) if F.definition.values_in_nats else {}
        emit_json(dict(point=[hidden, seq_length, learning_rate], value=value, **bits, **F.settings(),
                        backend=F.backend.name, counters=F.counters.as_dict(), executor=F.executor.describe()))
    else:
        click.echo(repr(value))

@click.command("gradient")
@click.argument("hidden", type=float, callback=finite_float)
@click.argument("seq_length", metavar="SEQ", type=float, callback=finite_float)
@click.argument("learning_rate", metavar="LR", type=float, callback=finite_float)
@click.option("--step", "grad_step", type=PositiveOrAuto(), default=None,
              help="Finite-difference step, or 'auto' (noise-aware) [paper: 1e-8; heldout: auto, in the search "
                   "space's coordinates; --method span: 0.5].")
@click.option("--method", "grad_method", type=click.Choice(OPTIMIZER_GRADIENT_METHODS), default="forward",
              show_default=True, help="Difference rule; span (held-out): central differences over +-STEP in the "
                                      "search space between whole networks, the gradient methods' held-out default.")
@common_options
@objective_options
def gradient_command(hidden, seq_length, learning_rate, grad_step, grad_method, F, seed, quiet):
    """The gradient of F at (HIDDEN, SEQ, LR) as JSON: the paper's intensive gradient (also x 1e-8, its
    units), or for the held-out objective exact corner differences along h and s and a noise-aware
    difference along l, with the noise estimate and signal-to-noise ratio of each component."""
    point = (hidden, seq_length, learning_rate)
    searched_as_is = F.definition.searched_as_is  # the paper's way: differences of F in (h, s, l)
    if grad_method == "span" and searched_as_is:
        raise click.BadParameter("span differences move between whole networks in the search space: use them with "
                                 "the held-out objective or --space log", param_hint="--method")
    if grad_method == "span" and grad_step == "auto":
        raise click.BadParameter("span differences need a number as --step (the span, e.g. 0.5), not auto",
                                 param_hint="--step")
    if grad_step is None:
        grad_step = 1e-8 if searched_as_is else 0.5 if grad_method == "span" else "auto"
    if grad_step != "auto" and step_lost_in_rounding(point, grad_step):
        raise click.BadParameter(f"{grad_step:g} is lost in rounding at {paper_form(point)} (x + h == x), so every "
                                 "difference along that axis would be 0; use a larger --step", param_hint="--step")
    if not searched_as_is and F.steps_lost(point):
        raise click.BadParameter(f"at {paper_form(point)} the corners a whole number apart are one float (h or s >= "
                                 "2**52), so every difference along h and s would be 0; give a smaller HIDDEN and SEQ",
                                 param_hint="HIDDEN")
    if not searched_as_is and grad_step != "auto":
        view = SpaceView(F)
        widths = np.diff(view.bounds, axis=1).ravel()
        if grad_step >= widths.min():
            raise click.BadParameter(f"{grad_step:g} is not below the sane box's width along every axis of the search "
                                     f"space ({', '.join(f'{w:.3g}' for w in widths)} in log2 h, log2 s, log10 l): a "
                                     "difference over it leaves the box; use a smaller --step", param_hint="--step")
    diagnostics = {}
    try:
        if searched_as_is:
            g = gradient(F, point, h=grad_step, method=grad_method, diagnostics=diagnostics)
            extra = {}
        else:
            view = SpaceView(F)
            z = view.space.from_point(point)
            _, g_z = view.value_and_gradient(z, grad_step, grad_method, diagnostics=diagnostics)
            g = g_z / view.space.chain_factors(point)
            extra = dict(gradient_in_space=g_z.tolist())
    except CorpusError as exc:
        raise click.BadParameter(str(exc), param_hint="SEQ") from None
    except MemoryLimitError as exc:
        raise click.UsageError(str(exc)) from None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    unmeasured = [name for name, span in zip(("h", "s", "l"), diagnostics.get("span", ())) if span == 0]
    if unmeasured:
        raise click.BadParameter(f"the span +-{grad_step:g} reaches no other whole network along "
                                 f"{' and '.join(unmeasured)} from {paper_form(point)}, so the gradient there is not "
                                 "measured; use a larger --step (e.g. 0.5)", param_hint="--step")
    if not np.all(np.isfinite(g)):
        raise click.BadParameter(f"the gradient at {paper_form(point)} with step {grad_step} is not finite "
                                 f"({g.tolist()}): a difference left the range where F is defined; use a smaller "
                                 "--step", param_hint="--step")
    diverged = F.counters.trainings_diverged
    if diverged and not quiet:
        threshold = "" if F.definition.divergence_threshold(F.corpus.vocab_size) == math.inf else (
            f", or held-out loss above ln V = {F.definition.divergence_threshold(F.corpus.vocab_size):.4g}")
        click.echo(f"warning: {diverged} of {F.counters.trainings_run} trainings diverged (loss not finite{threshold}); "
                   f"each is worth {F.diverged_value:.4g}, so the gradient shows a plateau or a cliff there, not a slope",
                   err=True)
    magnitude = float(np.linalg.norm(g))
    emit_json(dict(point=list(point), gradient=g.tolist(), magnitude=magnitude,
                    gradient_paper_units=(g * 1e-8).tolist(), magnitude_paper_units=magnitude * 1e-8,
                    step=grad_step, method=grad_method, **extra, diagnostics=diagnostics, **F.settings(),
                    backend=F.backend.name, counters=F.counters.as_dict(), executor=F.executor.describe()))
