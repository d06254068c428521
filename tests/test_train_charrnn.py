"""Issue 20, training like char-rnn: held-out loss as it trains (the tuner's value, bit for bit),
checkpoints that continue bit-identically, a killed training that keeps its last checkpoint,
--from-run, bad input in one line, sampling with the prime echoed, and the plots."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from fastrnn.network.checkpoint import FORMAT_VERSION, CheckpointError, load_model, save_model
from fastrnn.network.corpus import Corpus
from fastrnn.network.scoring import heldout_loss
from fastrnn.network.session import CurvePoint, checkpoint_path, train_with_evaluations
from fastrnn.network.training import new_state, train
from fastrnn.objective.settings import HeldoutSettings
from fastrnn.tuning.run_files import read_run
from fastrnn.tuning.trials import best_trial, trials

from helpers import assert_one_line_error, assert_same_run, invoke, synthetic_text

# -- the library: evaluations change nothing, a saved state continues exactly ---------------------


def _split(corpus, **split):
    return HeldoutSettings(corpus=corpus, heldout_chars=1000, **split).split()


@pytest.mark.parametrize("backend, dtype", [("numba", "float64"), ("numba", "float32"), ("numpy", "float64")])
def test_continuing_a_saved_state_equals_training_straight_through(small_corpus, tmp_path, backend, dtype):
    """Train N updates straight; train N/2, save, load, train N/2 more: the same bits (weights,
    Adagrad memory, hidden state, data pointer, losses) and the same learning curve."""
    text, heldout = _split(small_corpus)
    steps = 400 if backend == "numpy" else 2400  # 2400 x 9 characters wrap around the 18,000 of training text
    every = steps // 8  # the half is a multiple: a point there in both trainings
    straight = train(text, 24, 9, 0.1, steps, seed=4, backend=backend, dtype=dtype)

    state = new_state(text, 24, 9, 0.1, 4, dtype)
    whole_curve = train_with_evaluations(text, state, steps, heldout=heldout, backend=backend, eval_every=every)
    assert_same_run(state, straight)  # evaluating changes nothing

    half = new_state(text, 24, 9, 0.1, 4, dtype)
    curve = train_with_evaluations(text, half, steps // 2, heldout=heldout, backend=backend, eval_every=every)
    save_model(tmp_path / "half.npz", half, text.vocab, text.name, {"curve": [p.record() for p in curve]})
    model = load_model(tmp_path / "half.npz")
    assert model.state.dtype == np.dtype(dtype) and model.state.hprev.dtype == np.dtype(dtype)
    resumed = [CurvePoint.from_record(r) for r in model.info["curve"]]
    resumed = train_with_evaluations(text, model.state, steps, heldout=heldout, backend=backend, eval_every=every,
                                     curve=resumed)
    assert_same_run(model.state, straight)
    assert np.array_equal(model.state.params, straight.params) and model.state.params.dtype == straight.params.dtype
    strip = [(p.steps, p.chars, p.train_nats, p.heldout_nats) for p in whole_curve]
    assert [(p.steps, p.chars, p.train_nats, p.heldout_nats) for p in resumed] == strip
    assert [p.steps for p in whole_curve] == [*range(every, steps + 1, every)]  # every multiple, the target last


def test_the_curve_holds_the_heldout_loss_of_the_network_at_each_point(small_corpus):
    """Each point's held-out loss is that of a network trained straight to its step, scored alone;
    within 1e-12 of the NumPy reference's scoring (an independent implementation)."""
    text, heldout = _split(small_corpus)
    state = new_state(text, 16, 7, 0.1, 1)
    curve = train_with_evaluations(text, state, 600, heldout=heldout, eval_every=250)
    assert [p.steps for p in curve] == [250, 500, 600]
    for point in curve:
        network = train(text, 16, 7, 0.1, point.steps, seed=1)
        assert point.heldout_nats == heldout_loss(network, heldout).nats
        assert point.heldout_nats == pytest.approx(heldout_loss(network, heldout, backend="numpy").nats, rel=1e-12)
        assert point.train_nats == network.smooth_loss / 7 and point.chars == point.steps * 7


def test_checkpoints_come_at_their_multiples_and_the_end(small_corpus, tmp_path):
    text, heldout = _split(small_corpus)
    state = new_state(text, 8, 5, 0.1, 0)
    seen = []
    train_with_evaluations(text, state, 1000, heldout=heldout, eval_every=0, checkpoint_every=300,
                           on_checkpoint=lambda s, point: seen.append((s.steps, point.heldout_nats)))
    assert [steps for steps, _ in seen] == [300, 600, 900, 1000]
    name = checkpoint_path(tmp_path, "m", CurvePoint(300, 1500, 2.5, 2.12345, 1.0))
    assert os.path.basename(name) == "m_0000001500chars_2.1235.npz"


def test_model_files_keep_their_precision_and_refuse_a_newer_format(small_corpus, tmp_path):
    state = train(small_corpus, 8, 5, 0.1, 50, dtype="float32")
    save_model(tmp_path / "m.npz", state, small_corpus.vocab, "synthetic", {"target_steps": 50, "loss": float("inf")})
    model = load_model(tmp_path / "m.npz")
    assert model.format_version == FORMAT_VERSION and model.info == {"target_steps": 50, "loss": None}
    assert model.state.params.dtype == model.state.memory.dtype == np.float32
    assert [f for f in os.listdir(tmp_path) if f != "m.npz"] == []  # no temporary file left
    with np.load(tmp_path / "m.npz") as f:
        arrays = dict(f)
    np.savez(tmp_path / "new.npz", **{**arrays, "format_version": np.int64(FORMAT_VERSION + 1)})
    with pytest.raises(CheckpointError, match="newer fastrnn; .*upgrade fastrnn"):
        load_model(tmp_path / "new.npz")


# -- the command line ---------------------------------------------------------------------------

def _json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _same_model(a, b):
    """Two model files hold the same network, state and losses (their info may differ: seconds)."""
    with np.load(a) as x, np.load(b) as y:
        assert set(x.files) == set(y.files)
        for name in x.files:
            if name != "info":
                assert np.array_equal(x[name], y[name]), name


def test_train_gives_the_tuners_value_bit_for_bit_on_the_default_corpus(tmp_path):
    """The held-out loss `train` reports is `fastrnn objective`'s value and a tune trial's, bit for
    bit, with the same flags; --from-run trains the run's best trial with its settings."""
    flags = ["--train-chars", "3000", "--heldout-chars", "1000"]
    value = _json(invoke(["objective", "23", "7", "0.05", "--json", *flags], paper=False))["value"]
    trained = _json(invoke(["train", "--hidden", "23", "--seq", "7", "--lr", "0.05", *flags]))
    assert trained["heldout_nats_per_char"] == value
    assert trained["steps"] == 429 and trained["train_chars"] == 3003  # ceil(3000 / 7) updates, as the tuner
    assert trained["heldout_chars"] == 1000 and trained["corpus"] == "default"

    run = tmp_path / "run.jsonl"
    assert invoke(["tune", "--method", "random", "--x0", "30,10,0.05", "--budget-trainings", "4", "--seed", "3",
                   "--dtype", "float32", "--out", str(run), "-q", *flags], paper=False).exit_code == 0
    best = best_trial(read_run(run))
    assert best.whole and best.fun == min(t.fun for t in trials(read_run(run)))
    result = _json(invoke(["train", "--from-run", str(run), "-q"]))
    assert result["heldout_nats_per_char"] == best.fun  # the trial's value, bit for bit
    assert (result["hidden"], result["seq_length"], result["learning_rate"]) == tuple(best.x)
    assert (result["seed"], result["dtype"]) == (3, "float32")
    assert result["from_run"]["value"] == best.fun and result["from_run"]["run"] == str(run)
    longer = _json(invoke(["train", "--from-run", str(run), "--train-chars", "6000", "-q"]))
    assert longer["train_chars"] >= 6000 and longer["heldout_nats_per_char"] != best.fun


def test_resuming_a_checkpoint_equals_training_straight_through(corpus_file, tmp_path):
    common = ["--corpus", corpus_file, "--hidden", "20", "--seq", "8", "--lr", "0.1", "--seed", "2"]
    folder = tmp_path / "ckpt"
    straight = _json(invoke(["train", *common, "--train-chars", "24000", "--checkpoint-every", "8000",
                             "--checkpoint-dir", str(folder), "--save", str(tmp_path / "straight.npz")]))
    names = sorted(os.listdir(folder))
    assert [name.split("_")[1] for name in names] == ["0000008000chars", "0000016000chars", "0000024000chars"]
    assert straight["checkpoints"] == [str(folder / name) for name in names]
    first = load_model(folder / names[0])
    assert first.info["heldout_nats_per_char"] == float(names[0].rsplit("_", 1)[1][:-4]) or \
        f"{first.info['heldout_nats_per_char']:.4f}" == names[0].rsplit("_", 1)[1][:-4]
    resumed = _json(invoke(["train", "--resume", str(folder / names[0]), "--save", str(tmp_path / "resumed.npz")]))
    _same_model(tmp_path / "straight.npz", tmp_path / "resumed.npz")
    for key in ("heldout_nats_per_char", "nats_per_char", "smooth_loss", "last_loss", "steps", "train_chars"):
        assert resumed[key] == straight[key], key
    strip = [{k: v for k, v in p.items() if k != "seconds"} for p in straight["curve"]]
    assert [{k: v for k, v in p.items() if k != "seconds"} for p in resumed["curve"]] == strip
    assert resumed["resumed_from"] == str(folder / names[0])

    # a saved model continues too, to a longer target counted from its first update
    longer = _json(invoke(["train", *common, "--train-chars", "40000", "--eval-every", "8000",
                           "--save", str(tmp_path / "longer.npz")]))
    more = _json(invoke(["train", "--resume", str(tmp_path / "straight.npz"), "--train-chars", "40000",
                         "--eval-every", "8000", "--save", str(tmp_path / "more.npz")]))
    _same_model(tmp_path / "longer.npz", tmp_path / "more.npz")
    assert more["heldout_nats_per_char"] == longer["heldout_nats_per_char"]


def test_train_json_and_progress(corpus_file):
    result = invoke(["train", "--corpus", corpus_file, "--hidden", "8", "--seq", "5", "--train-chars", "2000",
                     "--eval-every", "600"])
    record = _json(result)
    assert result.stderr == ""  # progress only on a terminal
    assert [p["chars"] for p in record["curve"]] == [600, 1200, 1800, 2000]
    point = record["curve"][-1]
    assert point["heldout_nats_per_char"] == record["heldout_nats_per_char"]
    assert point["heldout_bits_per_char"] == pytest.approx(point["heldout_nats_per_char"] / np.log(2), rel=1e-15)
    assert record["heldout"] == f"{corpus_file} (last 10%)" and record["heldout_chars"] == 2000  # 10% of 20,000
    assert record["saved"] is None and record["checkpoints"] == [] and record["from_run"] is None
    no_heldout = _json(invoke(["train", "--corpus", corpus_file, "--hidden", "8", "--seq", "5", "--steps", "100",
                               "--no-heldout"]))
    assert no_heldout["heldout"] is None and no_heldout["heldout_nats_per_char"] is None
    assert no_heldout["curve"][-1]["train_nats_per_char"] == no_heldout["nats_per_char"]


def test_progress_lines_go_to_stderr_on_a_terminal(corpus_file, monkeypatch):
    """On a terminal a line per evaluation joins the bar on stderr; stdout stays one JSON object."""
    import fastrnn.cli.train as train_module
    from tqdm import tqdm

    monkeypatch.setattr(train_module, "progress_bar",
                        lambda total, quiet, **kwargs: tqdm(total=total, file=sys.stderr, disable=quiet, **kwargs))
    result = invoke(["train", "--corpus", corpus_file, "--hidden", "8", "--seq", "5", "--train-chars", "2000",
                     "--eval-every", "1000"])
    record = _json(result)  # stdout is the JSON alone
    lines = [line for line in result.stderr.splitlines() if "updates" in line]
    assert len(lines) == 2 and "2,000 chars" in lines[1] and "held-out" in lines[1]
    assert f"{record['heldout_nats_per_char']:.4f} nats/char" in lines[1]


def _format_1(path, out):
    """A model file as fastrnn wrote it before format 2: no info, format_version 1."""
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files if k != "info"}
    np.savez(out, **{**arrays, "format_version": np.int64(1)})


def test_bad_input_is_one_line_and_exit_2(corpus_file, tmp_path):
    model = tmp_path / "m.npz"
    base = ["train", "--corpus", corpus_file, "--hidden", "8", "--seq", "5", "--steps", "100"]
    assert invoke([*base, "--save", str(model)]).exit_code == 0
    other = tmp_path / "other.txt"
    other.write_text(synthetic_text(20_000, seed=9), encoding="utf-8")
    assert_one_line_error(invoke(["train", "--resume", str(model), "--corpus", str(other)]), "--corpus",
                          "conflicts with", "drop --corpus")
    assert_one_line_error(invoke(["train", "--resume", str(model), "--hidden", "9"]), "--hidden", "conflicts with")
    assert_one_line_error(invoke(["train", "--resume", str(model), "--heldout-chars", "1500"]), "--heldout-chars")
    assert_one_line_error(invoke(["train", "--resume", str(model), "--steps", "50"]), "--steps", "already trained 100")
    _format_1(model, tmp_path / "old.npz")
    assert_one_line_error(invoke(["train", "--resume", str(tmp_path / "old.npz")]), "--resume",
                          "earlier fastrnn (model format 1)", "train it again")
    with np.load(model) as f:
        np.savez(tmp_path / "new.npz", **{**dict(f), "format_version": np.int64(FORMAT_VERSION + 1)})
    assert_one_line_error(invoke(["train", "--resume", str(tmp_path / "new.npz")]), "--resume", "upgrade fastrnn")
    assert_one_line_error(invoke(["sample", str(tmp_path / "new.npz")]), "MODEL", "upgrade fastrnn")

    run = tmp_path / "run.jsonl"
    run.write_text(json.dumps(dict(type="settings", format_version=2, method="random", options={}, seed=0,
                                   max_steps=5, record_every=1, gtol=1e-4, x0=None,
                                   objective=HeldoutSettings(corpus=Corpus.from_text("ab" * 600, "x")).record())) + "\n")
    assert_one_line_error(invoke(["train", "--from-run", str(run)]), "--from-run", "no finished trial")
    assert_one_line_error(invoke(["train", "--from-run", str(run), "--hidden", "20"]), "--hidden", "best point")
    assert_one_line_error(invoke(["train", "--from-run", str(run), "--resume", str(model)]), "not both")
    assert_one_line_error(invoke(["train", "--from-run", str(model)]), "--from-run", "model file")

    if os.path.isdir("/proc/self"):
        result = invoke([*base, "--checkpoint-every", "100", "--checkpoint-dir", "/proc/no-such/ckpt"])
        assert_one_line_error(result, "--checkpoint-dir", "cannot write in folder")
        assert result.stdout == ""  # refused before training: nothing trained, nothing lost
        assert_one_line_error(invoke([*base, "--save", "/proc/m.npz"]), "--save", "cannot write")
    assert_one_line_error(invoke([*base, "--checkpoint-dir", str(tmp_path / "c")]), "--checkpoint-dir",
                          "--checkpoint-every")
    assert_one_line_error(invoke([*base, "--no-heldout", "--heldout-fraction", "0.2"]), "--heldout-fraction")
    assert_one_line_error(invoke([*base, "--train-chars", "1000"]), "not both")
    short = tmp_path / "short.txt"
    short.write_text(synthetic_text(5000), encoding="utf-8")
    assert_one_line_error(invoke(["train", "--corpus", str(short), "--steps", "10"]), "--heldout-fraction",
                          "500 characters")
    assert invoke(["train", "--corpus", str(short), "--steps", "10", "--heldout-fraction", "0.2"]).exit_code == 0


def test_from_run_trains_a_paper_run_on_the_split(corpus_file, small_corpus, tmp_path):
    """A run of the paper's objective: its point, text, alpha and seed; the split from train's flags."""
    run = tmp_path / "paper.jsonl"
    assert invoke(["tune", "--corpus", corpus_file, "--method", "gd", "--alpha", "30", "--x0", "24,6,0.1",
                   "--steps", "1", "--seed", "2", "--out", str(run), "-q"]).exit_code == 0
    result = invoke(["train", "--from-run", str(run), "--heldout-fraction", "0.2"])
    record = _json(result)
    assert (record["steps"], record["seed"]) == (30, 2) and record["heldout"].endswith("(last 20%)")
    assert "paper's training loss" in result.stderr
    text, heldout = HeldoutSettings(corpus=small_corpus, heldout_fraction=0.2).split()
    network = train(text, record["hidden"], record["seq_length"], record["learning_rate"], 30, seed=2)
    assert record["heldout_nats_per_char"] == heldout_loss(network, heldout).nats


@pytest.fixture
def interrupt_on_call(monkeypatch):
    """Ctrl-C raised in the n-th call of the numba backend's train_steps (inside the training)."""
    from fastrnn.backends import get_backend

    backend_type = type(get_backend("numba"))
    original = backend_type.train_steps

    def arm(n):
        calls = {"n": 0}

        def train_steps(self, data, state, n_steps):
            calls["n"] += 1
            if calls["n"] == n:
                original(self, data, state, n_steps)  # the kernel ran; its write-back is what a signal can cut
                raise KeyboardInterrupt
            return original(self, data, state, n_steps)

        monkeypatch.setattr(backend_type, "train_steps", train_steps)

    return arm


def test_ctrl_c_writes_a_last_checkpoint_that_continues_exactly(corpus_file, small_corpus, tmp_path, interrupt_on_call):
    folder = tmp_path / "ckpt"
    args = ["train", "--corpus", corpus_file, "--hidden", "16", "--seq", "8", "--steps", "1500", "--seed", "2",
            "--dtype", "float64",
            "--checkpoint-every", "3200", "--checkpoint-dir", str(folder), "--save", str(tmp_path / "m.npz")]
    interrupt_on_call(7)
    result = invoke(args)
    assert_one_line_error(result, "interrupted; the model after", str(tmp_path / "m.npz"), str(folder), exit_code=130)
    names = sorted(os.listdir(folder))
    assert len(names) == 2 and names[0].startswith("m_0000003200chars_")  # the periodic one, then the last
    last = load_model(folder / names[1])
    assert last.state.steps > 400 and last.info["target_steps"] == 1500
    text, _ = HeldoutSettings(corpus=small_corpus).split()
    assert_same_run(last.state, train(text, 16, 8, 0.1, last.state.steps, seed=2))  # consistent: nothing half-written
    _same_model(folder / names[1], tmp_path / "m.npz")
    interrupt_on_call(0)  # disarmed
    resumed = _json(invoke(["train", "--resume", str(folder / names[1]), "--save", str(tmp_path / "resumed.npz")]))
    assert resumed["steps"] == 1500
    assert_same_run(load_model(tmp_path / "resumed.npz").state, train(text, 16, 8, 0.1, 1500, seed=2))


def _wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_training_keeps_its_last_checkpoint(corpus_file, small_corpus, tmp_path, how):
    """SIGTERM: a last checkpoint after the last whole chunk, exit 130. kill -9: the periodic
    checkpoints written so far, each complete (written atomically). Each equals straight training."""
    folder = tmp_path / "ckpt"
    command = [sys.executable, "-m", "fastrnn.cli.main", "train", "--dtype", "float64", "--corpus", corpus_file, "--hidden",
               "16", "--seq", "8", "--steps", "100000000", "--seed", "5", "--checkpoint-every", "16000", "--checkpoint-dir",
               str(folder), "-q"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: folder.exists() and any(name.endswith(".npz") for name in os.listdir(folder)))
        time.sleep(0.3)
        process.send_signal(how)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    names = sorted(name for name in os.listdir(folder) if name.endswith(".npz"))
    if how == signal.SIGTERM:
        assert process.returncode == 130, stderr
        assert "interrupted; the model after" in stderr and names[-1] in stderr
    text, _ = HeldoutSettings(corpus=small_corpus).split()
    for name in (names[0], names[-1]):
        state = load_model(folder / name).state
        assert_same_run(state, train(text, 16, 8, 0.1, state.steps, seed=5))


# -- sampling -------------------------------------------------------------------------------------

def test_sample_echoes_the_prime_and_a_seed_repeats_it(corpus_file, tmp_path):
    model = tmp_path / "m.npz"
    assert invoke(["train", "--corpus", corpus_file, "--hidden", "16", "--seq", "8", "--steps", "300",
                   "--save", str(model)]).exit_code == 0
    args = ["sample", str(model), "--chars", "100", "--temperature", "0.7", "--prime", "KING:", "--seed", "4"]
    first, again = invoke(args), invoke(args)
    assert first.exit_code == 0 and first.stdout == again.stdout  # reproducible
    assert first.stdout.startswith("KING:") and len(first.stdout) == len("KING:") + 100 + 1
    bare = invoke([*args, "--no-echo"])
    assert bare.stdout == first.stdout[len("KING:"):]
    assert invoke([*args[:-1], "5"]).stdout != first.stdout


# -- plots ----------------------------------------------------------------------------------------

def test_plot_learning_curves_and_trials(corpus_file, tmp_path):
    model, result = tmp_path / "m.npz", tmp_path / "result.json"
    trained = invoke(["train", "--corpus", corpus_file, "--hidden", "8", "--seq", "5", "--train-chars", "3000",
                      "--save", str(model)])
    result.write_text(trained.stdout)
    for files in ([model], [result], [model, result]):
        out = tmp_path / "curve.png"
        plotted = invoke(["plot", *map(str, files), "-o", str(out)])
        assert plotted.exit_code == 0, plotted.output
        assert out.read_bytes()[:4] == b"\x89PNG"
    run = tmp_path / "run.jsonl"
    assert invoke(["tune", "--corpus", corpus_file, "--method", "random", "--budget-trainings", "6",
                   "--train-chars", "400", "--heldout-chars", "1000", "--out", str(run), "-q"], paper=False).exit_code == 0
    for extra in ([], ["--x", "seconds"], ["--kind", "hyperparameters"]):
        plotted = invoke(["plot", str(run), "-o", str(tmp_path / "trials.png"), *extra])
        assert plotted.exit_code == 0, plotted.output
    assert_one_line_error(invoke(["plot", str(run), str(model), "-o", str(tmp_path / "x.png")]), "not both")
    assert_one_line_error(invoke(["plot", str(run), "--kind", "curve", "-o", str(tmp_path / "x.png")]), "--kind")
    _format_1(model, tmp_path / "old.npz")
    assert_one_line_error(invoke(["plot", str(tmp_path / "old.npz"), "-o", str(tmp_path / "x.png")]),
                          "no learning curve")


def test_the_learning_rate_is_drawn_on_a_log_axis():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fastrnn.tuning.plots import _log_axis

    fig, ax = plt.subplots()
    _log_axis(ax, [1e-4, 0.1, 0.5])
    assert ax.get_yscale() == "log"
    _log_axis(ax, [-0.2, 0.1])  # a point a gradient step took below zero
    assert ax.get_yscale() == "symlog"
    plt.close(fig)


def test_best_trial_skips_penalised_points(small_corpus, tmp_path):
    from fastrnn.objective import Objective
    from fastrnn.tuning import tune

    run = tmp_path / "run.jsonl"
    tune(Objective(small_corpus, train_chars=400, heldout_chars=1000), "gd", x0=[1000.0, 10.0, 0.1], max_steps=2,
         out=run)
    found = trials(read_run(run))
    assert found[0].x == (1000.0, 10.0, 0.1) and not found[0].sane and found[0].fun > 1e6
    best = best_trial(read_run(run))
    assert best is None or best.sane
