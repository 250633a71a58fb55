"""`seqbench bench` at tiny sizes: it runs, stores its rows and says what it measured. No timing is
asserted (shared machines are noisy); what is checked is the arithmetic around the timings."""

from __future__ import annotations

import math

import pytest
import torch
from click.testing import CliRunner

import seqbench
from seqbench import bench
from seqbench.cli import main
from seqbench.store import read_bench


def test_bench_command_writes_its_rows(tmp_path):
    md = tmp_path / "bench.md"
    args = ["bench", "--model", "gru_cho", "--model", "transformer", "--hidden", "8", "--length", "5"]
    args += ["--length", "10", "--rounds", "1", "--batch-size", "2", "--results", str(tmp_path)]
    res = CliRunner().invoke(main, [*args, "--markdown", str(md)])
    assert res.exit_code == 0, res.output
    rows = read_bench(tmp_path)
    # gru_cho brings its family's reference, nn.GRU, into the same rounds
    assert len(rows) == 8 and set(rows["model"]) == {"nn.LSTM", "nn.GRU", "gru_cho", "transformer"}
    gru = rows[rows["model"] == "gru_cho"]
    assert (gru["family_reference"] == "nn.GRU").all() and gru["ratio_family"].notna().all()
    assert rows[rows["model"] == "transformer"]["ratio_family"].isna().all()
    assert (
        (rows["kind"] == "bench").all() and (rows["status"] == "ok").all() and rows["bench_id"].nunique() == 1
    )
    ref = rows[rows["model"] == "nn.LSTM"]
    assert (ref["ratio_train"] == 1).all() and (ref["ratio_memory"] == 1).all()
    assert (rows["flops"] > 0).all() and (rows["peak_memory_bytes"] >= 0).all()
    assert rows["time_exponent"].notna().all() and (rows["memory_kind"] == "cpu").all()
    for r in rows.itertuples():  # tokens/s is the batch's tokens over the median step
        assert math.isclose(r.train_tokens_per_s, 2 * r.length / r.train_step_s)
    assert "| transformer | 8 | 10 |" in md.read_text()


def test_an_unknown_model_is_refused_before_anything_runs(tmp_path):
    res = CliRunner().invoke(main, ["bench", "--model", "lstn", "--results", str(tmp_path)])
    assert res.exit_code == 2 and "Did you mean 'lstm'" in res.output
    assert read_bench(tmp_path).empty


def test_model_options_reach_the_benched_model_and_its_rows(tmp_path):
    args = ["bench", "--model", "ntm", "--hidden", "8", "--length", "5", "--rounds", "1", "--batch-size", "2"]
    args += ["--no-memory", "--no-flops", "--results", str(tmp_path)]
    res = CliRunner().invoke(main, [*args, "--model-opt", "memory_slots=6"])
    assert res.exit_code == 0, res.output
    rows = read_bench(tmp_path)
    assert set(rows[rows["model"] == "ntm"]["model_options"]) == {'{"memory_slots": 6}'}
    assert set(rows[rows["model"] == "ntm"]["params"]) == {
        sum(p.numel() for p in seqbench.load_model("ntm", 16, 8, memory_slots=6).parameters())
    }
    for extra, message in (
        (["--model-opt", "memory_slot=6"], "unknown option"),  # checked against the constructor
        (["--model-opt", "memory_slots=many"], "memory_slots"),
        (["--model", "lstm", "--model-opt", "memory_slots=6"], "model 'lstm'"),  # a model that lacks it
    ):
        res = CliRunner().invoke(main, [*args, *extra])
        assert res.exit_code == 2 and message in res.output, res.output
    res = CliRunner().invoke(main, ["bench", "--model-opt", "memory_slots=6", "--results", str(tmp_path)])
    assert res.exit_code == 2 and "--model" in res.output
    assert len(read_bench(tmp_path)) == len(rows)  # nothing more stored


def test_fit_exponent_recovers_a_power_law():
    xs = [100, 500, 2000]
    assert math.isclose(bench.fit_exponent(xs, [3 * x for x in xs]), 1.0)
    assert math.isclose(bench.fit_exponent(xs, [0.5 * x**2 for x in xs]), 2.0)
    assert bench.fit_exponent([100], [1.0]) is None


def test_fused_lstm_flops_agree_with_the_unfused_equations():
    """The fused kernel's FLOPs come from a formula; the reference implementation of the shared cell (the
    same products, through autograd) is counted by torch. Peepholes add no matrix products."""
    x = torch.randn(4, 12, 6)
    fused = bench.step_flops(seqbench.load_model("lstm", 6, 10), x)
    unfused = bench.step_flops(seqbench.load_model("lstm_peephole", 6, 10, implementation="reference"), x)
    assert fused == bench.fused_rnn_flops(seqbench.load_model("lstm", 6, 10).lstm, 4, 12)
    assert abs(fused - unfused) / fused < 0.03  # the cell skips the product with the zero initial state


@pytest.mark.parametrize(
    "model", ["lstm_peephole", "lstm_fgr", "lstm_nig", "depth_gated_lstm", "gru_cho", "grid_lstm", "mamba"]
)
def test_flops_of_the_cpp_loops_equal_those_of_the_python_loops(model, use_loops):
    """The counter cannot see inside the C++ ops; their registered formulas must give what it counts when
    the same loops run in Python."""
    use_loops("cpp")
    x = torch.randn(3, 7, 4)
    net = seqbench.load_model(model, 4, 5, num_layers=2)
    cpp = bench.step_flops(net, x)
    use_loops("python")
    assert cpp == bench.step_flops(net, x) > 0


def test_overhead_and_batching_measure_real_runs():
    o = bench.loop_overhead("gru", steps=3)
    assert o["steps"] == 3 and o["bare_s"] > 0 and o["train_s"] <= o["wall_s"]
    assert 0 < o["data_s"] < o["train_s"] and 0 < o["eval_s"] < o["wall_s"] - o["train_s"]
    assert math.isclose(o["own_s"], o["train_s"] - o["data_s"])
    assert math.isclose(o["overhead"], o["wall_s"] / o["own_s"] - 1)
    assert math.isclose(o["vs_bare"], o["wall_s"] / o["bare_s"] - 1)
    assert bench.sequences_per_s("gru", "cpu", 2, steps=2) > 0


def test_fused_flops_count_the_length_the_rnn_really_sees():
    """conv_rnn's LSTM runs on T / stride blocks, and its input (the convolution's output) needs a gradient."""
    x = torch.randn(2, 16, 3)
    model = seqbench.load_model("conv_rnn", 3, 8, stride=4, kernel=4)
    without_rnn = bench.step_flops(model, x) - bench.fused_rnn_flops(model.rnn, 2, 4, input_grad=True)
    convs_and_linear = bench.step_flops(model, x) - bench.fused_rnn_flops(model.rnn, 2, 16, input_grad=True)
    assert without_rnn > 0 > convs_and_linear  # counting 16 steps would exceed the total
