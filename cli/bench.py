"""`fastrnn bench`: the backends side by side (steps/s, roofline, thread speed-up, phases), or
threads against a Dask cluster (`--executor dask`)."""

from __future__ import annotations

import os

import click

from fastrnn._validation import MAX_COUNT
from fastrnn.backends import (
    BACKEND_NAMES,
    COMPILED_BACKENDS,
    BackendUnavailable,
    get_backend,
)
from fastrnn.network.corpus import CorpusError, load_corpus
from fastrnn.network.model import DTYPES
from fastrnn.objective.function import Objective
from fastrnn.running.executors import ExecutorError

from .common import (
    ExecutorFailed,
    is_default,
    silence_distributed,
)
from .progress import progress_bar


@click.command("bench")
@click.option("--corpus", "corpus_path", type=click.Path(dir_okay=False), default=None,
              help="Training text [default: the built-in corpus].")
@click.option("--backends", "backend_names", default=",".join(BACKEND_NAMES), show_default=True,
              help="Comma-separated backends to compare (unavailable ones are left out).")
@click.option("--rounds", type=click.IntRange(1, MAX_COUNT), default=5, show_default=True,
              help="Interleaved rounds per figure (medians are reported).")
@click.option("--dtypes", "dtype_names", default=",".join(DTYPES), show_default=True,
              help="Comma-separated precisions to compare (numpy trains in float64 only).")
@click.option("--beta", type=click.IntRange(1, MAX_COUNT), default=4, show_default=True,
              help="Replicas in the threads comparison.")
@click.option("--alpha", type=click.IntRange(1, MAX_COUNT), default=100, show_default=True,
              help="Training steps per replica in the threads comparison.")
@click.option("--executor", "executor_name", type=click.Choice(["threads", "dask"]), default="threads", show_default=True,
              help="dask: compare a LocalCluster of --workers single-threaded processes with --workers threads "
                   "(beta 8 unless --beta is given) instead of the backends.")
@click.option("--workers", type=click.IntRange(1, MAX_COUNT), default=2, show_default=True,
              help="Dask workers and threads in the executor comparison.")
@click.option("--roofline", is_flag=True,
              help="Also print this machine's ceilings (BLAS GEMM, cache read bandwidths, Adagrad throughput) and, "
                   "per config, the lower bound per step, what sets it, and each compiled backend's time against it.")
@click.option("--phases", is_flag=True,
              help="Also time each phase of the numba kernel's training step (recurrence, outputs and softmax, "
                   "backward sweep, weight gradients, Adagrad, Wxh columns) against its own bound.")
@click.option("--repeat", type=click.IntRange(1, MAX_COUNT), default=1, show_default=True,
              help="Repeat the whole measurement and print each figure as its range over the repeats "
                   "(README's tables: --repeat 3).")
@click.option("--quiet", "-q", is_flag=True, help="No progress output on stderr.")
def bench_command(corpus_path, backend_names, rounds, dtype_names, beta, alpha, executor_name, workers, roofline,
                  phases, repeat, quiet):
    """Print Markdown tables: training steps/s per backend and config with the share of this machine's
    roofline bound, and the 2-thread speed-up of an evaluation of F beside this machine's ideal one."""

    from fastrnn import bench

    if executor_name == "dask":
        ignored = [flag for flag, param in (("--backends", "backend_names"), ("--dtypes", "dtype_names"),
                                            ("--roofline", "roofline"), ("--phases", "phases"), ("--repeat", "repeat"))
                   if not is_default(param)]
        if ignored:
            raise click.UsageError(f"--executor dask compares a Dask cluster with threads on the numba backend in "
                                   f"float64; it takes none of {', '.join(ignored)}: drop them, or drop --executor "
                                   "dask to compare backends")
        _bench_dask(corpus_path, rounds, 8 if is_default("beta") else beta, alpha, workers)
        return

    names = [name.strip() for name in backend_names.split(",") if name.strip()]
    unknown = [name for name in names if name not in BACKEND_NAMES]
    if not names:
        raise click.BadParameter(f"name at least one backend; valid: {', '.join(BACKEND_NAMES)}",
                                 param_hint="--backends")
    if unknown:
        raise click.BadParameter(f"unknown backend {unknown[0]!r}; valid: {', '.join(BACKEND_NAMES)}",
                                 param_hint="--backends")
    compiled = [name for name in names if name in COMPILED_BACKENDS]
    if roofline and not compiled:
        raise click.BadParameter("--roofline measures the compiled backends: name numba or cython",
                                 param_hint="--backends")
    if phases and "numba" not in names:
        raise click.BadParameter("--phases times the numba kernel's phases: include numba", param_hint="--backends")
    dtypes = [name.strip() for name in dtype_names.split(",") if name.strip()]
    if not dtypes or any(d not in DTYPES for d in dtypes):
        raise click.BadParameter(f"valid: {', '.join(DTYPES)}", param_hint="--dtypes")
    if not is_default("workers"):
        raise click.UsageError("--workers sizes the --executor dask comparison; the backends are compared on one "
                               "thread and on two: drop --workers, or add --executor dask")
    measured = [(name, dtype) for name in names for dtype in dtypes if _trains(name, dtype)]
    if not measured:
        raise click.BadParameter(f"none of the backends named ({', '.join(names)}) is available here in "
                                 f"{' or '.join(dtypes)} (numpy trains in float64 only; `fastrnn backends` lists "
                                 "what is available): name others", param_hint="--backends/--dtypes")
    try:
        corpus = load_corpus(corpus_path)
    except CorpusError as exc:
        raise click.BadParameter(str(exc), param_hint="--corpus") from None
    _check_bench_corpus(corpus, [s for _, s in bench.CONFIGS])
    if phases:
        try:
            get_backend("numba")
        except BackendUnavailable as exc:
            raise click.BadParameter(str(exc), param_hint="--phases") from None
    before = os.getloadavg()
    runs = []
    stages = bench.bench_stages(names, phases=phases)
    with progress_bar(total=stages * repeat, quiet=quiet, desc="bench", unit="part") as bar:
        for k in range(repeat):
            def tick(label, k=k):
                bar.set_postfix_str(f"repeat {k + 1}/{repeat}: {label}")
                bar.update(1)

            runs.append(bench.bench_run(corpus, names, dtypes, rounds=rounds, beta=beta, alpha=alpha, progress=tick,
                                        phases=phases))
    after = os.getloadavg()
    ranges = f"; each cell the range over {repeat} repeats" if repeat > 1 else ""
    click.echo(f"corpus: {corpus.name} ({len(corpus):,} characters, V={corpus.vocab_size}); medians of {rounds} "
               f"interleaved rounds{ranges}; load average {before[0]:.2f} before, {after[0]:.2f} after\n")
    if roofline:
        click.echo("Single-thread ceilings of this machine:\n")
        click.echo(bench.ceilings_markdown([run.ceilings for run in runs]))
        click.echo("")
    click.echo("Training steps, single thread; % of roofline = lower bound per step / measured time "
               "(model in fastrnn/bench/roofline.py):\n")
    click.echo(bench.rates_markdown(runs))
    if roofline:
        click.echo("\nTime per training step against its lower bound, and the resource that sets the bound:\n")
        click.echo(bench.roofline_markdown([run.roofline_rows for run in runs], compiled))
    if any(run.threads for run in runs):
        click.echo(f"\nOne evaluation of F (beta runs of {alpha} steps at one corner, float64, fresh memo) on 1 and 2 "
                   f"threads; ideal tasks: beta independent compute tasks of the same total length, in the same "
                   f"rounds (what two threads give work of that grain here); share: median over rounds of speed-up / ideal:\n")
        click.echo(bench.threads_markdown(runs))
    if phases:
        click.echo("\nWhere a training step of the numba kernel goes, single thread: each phase repeated alone (its "
                   "data warm in cache), against its own bound; the sum of the phases' bounds is a kernel that runs "
                   "each at its ceiling, one after the other (model in fastrnn/bench/phases.py, phase_models):\n")
        click.echo(bench.phases_markdown([run.phases for run in runs]))


def _trains(name: str, dtype: str) -> bool:
    try:
        return dtype in get_backend(name).dtypes
    except BackendUnavailable:
        return False


def _check_bench_corpus(corpus, seq_lengths) -> None:
    """The benchmarks train at every sequence length in ``seq_lengths``: refuse a text too short."""
    needed = max(seq_lengths) + 2
    if len(corpus.data) < needed:
        raise click.BadParameter(f"the benchmarks train with sequences of up to {needed - 2} characters and need at "
                                 f"least {needed} characters of text; the corpus has {len(corpus.data)}",
                                 param_hint="--corpus")

def _bench_dask(corpus_path, rounds, beta, alpha, workers):
    """``fastrnn bench --executor dask``: the tables in docs/SCALING.md."""
    from fastrnn import bench
    from fastrnn.running.executors import ThreadExecutor, dask_executor_class

    try:
        corpus = load_corpus(corpus_path)
        _check_bench_corpus(corpus, [s for _, s in bench.EXECUTOR_CONFIGS])
        Objective(corpus, alpha=alpha, beta=1)  # the comparison's objective: held-out text split off
    except (CorpusError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="--corpus") from None
    try:
        DaskExecutor = dask_executor_class()
    except ExecutorError as exc:
        raise ExecutorFailed(str(exc)) from None
    silence_distributed()
    executor = DaskExecutor.local(workers)
    try:
        click.echo(f"corpus: {corpus.name} ({len(corpus):,} characters, V={corpus.vocab_size}); one evaluation of F = "
                   f"beta runs of {alpha} steps at one corner, float64, fresh memo; medians of {rounds} interleaved "
                   "rounds\n")
        rows = bench.executor_comparison(corpus, executor, threads=workers, beta=beta, alpha=alpha, rounds=rounds)
        click.echo(bench.dask_markdown(rows, bench.dask_task_overhead(corpus, executor, rounds=rounds), workers))
        click.echo(f"\nA gradient-descent step (forward differences, alpha {alpha}, beta {beta}, from (24.3, 6.6, 0.1)):\n")
        click.echo("| executor | s/step | in training batches (s) | outside (s) | serial share | trainings/step |\n"
                   "|---|---:|---:|---:|---:|---:|")
        for name, chosen in ((f"threads ({workers})", ThreadExecutor(workers)), (f"dask ({workers} workers)", executor)):
            profile = bench.tuning_step_profile(corpus, chosen, beta=beta, alpha=alpha)
            click.echo(f"| {name} | {profile['step']:.4f} | {profile['batch']:.4f} | {profile['serial']:.5f} | "
                       f"{profile['serial_share']:.2%} | {profile['runs_per_step']:.0f} |")
    except ExecutorError as exc:
        raise ExecutorFailed(str(exc)) from None
    finally:
        executor.close()
