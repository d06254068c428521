"""The ``fastrnn`` command line: a thin layer of click over the library.

Bad input exits with status 2 and one line on stderr (``Error: ...``), never a traceback.
Progress goes to stderr, only on a terminal and without ``--quiet``; results go to stdout.

This module only assembles the group; each command group lives in its own module (tune.py:
tune and compare; train.py: train and sample; evaluate.py: objective and gradient; bench.py;
reproduce.py; corpus.py: corpus, backends and plot; ngram.py), their shared options in common.py and
objective_options.py.
"""

from __future__ import annotations

import click

from fastrnn.running import interrupts

from . import bench, corpus, evaluate, ngram, reproduce, train, tune
from .common import OneLineErrors


@click.group(cls=OneLineErrors, context_settings=dict(help_option_names=["-h", "--help"]))
@click.version_option(package_name="fastrnn")
def cli():
    """Train min-char-rnn networks and tune their hyperparameters fast."""



for command in (
    train.train_command, train.sample_command,
    evaluate.objective_command, evaluate.gradient_command,
    tune.tune_command, tune.compare_command,
    reproduce.reproduce_command,
    corpus.corpus_command, corpus.backends_command, corpus.plot_command,
    bench.bench_command,
    ngram.ngram_command,
):
    cli.add_command(command)


def main():
    interrupts.install()  # SIGTERM ends a command as Ctrl-C does: a run file keeps its last finished step
    cli(prog_name="fastrnn")


if __name__ == "__main__":
    main()
