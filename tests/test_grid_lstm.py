"""The 2-D Grid LSTM (Kalchbrenner, Danihelka & Graves 2016) against its two oracles, in float64, outputs and
every gradient: the block equations through autograd, and, with the depth cells reduced to the identity (the
paper's non-LSTM depth dimension, Sect. 3.3), a stack of nn.LSTMs with copied weights."""

from __future__ import annotations

import pytest
import torch

import seqbench
from seqbench import metrics
from seqbench.errors import OptionsError
from seqbench.models import cpp_loops

IN, H = 3, 6
CONFIGS = {
    "untied": {},
    "tied": {"tied": True},
    "three layers": {"num_layers": 3},
    "tied, three layers": {"tied": True, "num_layers": 3},
    "identity depth": {"depth": "identity", "num_layers": 3},
}


def grads_of(model, x, w):
    model.zero_grad()
    x.grad = None
    y = model(x)
    (y * w).sum().backward()
    return [y.detach(), x.grad.clone(), *(p.grad.clone() for p in model.parameters())]


def inputs(batch: int = 3, T: int = 11, dtype=torch.double):
    x = torch.randn(batch, T, IN, dtype=dtype, requires_grad=True)
    return x, torch.randn(batch, T, H, dtype=dtype)


@pytest.mark.parametrize("loops", ["cpp", "python"])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_fast_path_matches_the_autograd_oracle(config, loops, use_loops):
    use_loops(loops)
    torch.manual_seed(11)
    model = seqbench.load_model("grid_lstm", IN, H, **CONFIGS[config]).double()
    x, w = inputs()
    metrics.reset_kernels()
    fast = grads_of(model, x, w)
    ran = f"cpp-{cpp_loops.simd()[0]}" if loops == "cpp" else "python"
    cells = "grid_lstm" if model.depth_lstm else None
    assert metrics.kernels() == ", ".join(f"{n}={ran}" for n in (cells, "lstm_cell") if n)
    model.fast = False
    slow = grads_of(model, x, w)
    assert len(fast) == len(slow) == 2 + len(list(model.parameters()))
    for a, b in zip(fast, slow, strict=True):
        assert torch.allclose(a, b, atol=1e-12, rtol=0)


def _copy_into_lstm(model, ref: torch.nn.LSTM) -> list[int]:
    """Copy the grid's time cells (blocks i, f, o, z) into nn.LSTM (gates i, f, g, o); return the row order."""
    order = [*range(0, 2 * H), *range(3 * H, 4 * H), *range(2 * H, 3 * H)]  # nn.LSTM's rows in ours
    with torch.no_grad():
        for k in range(model.num_layers):
            p = model.block(k)
            getattr(ref, f"weight_ih_l{k}").copy_(p.weight_below[order])
            getattr(ref, f"weight_hh_l{k}").copy_(p.weight_hh[order])
            getattr(ref, f"bias_ih_l{k}").copy_(p.bias[order])
            getattr(ref, f"bias_hh_l{k}").zero_()
    return order


@pytest.mark.parametrize("implementation", ["fast", "reference"])
@pytest.mark.parametrize("layers", [2, 3])
def test_identity_depth_is_a_stack_of_nn_lstms(layers, implementation):
    torch.manual_seed(12)
    model = seqbench.load_model(
        "grid_lstm", IN, H, num_layers=layers, depth="identity", implementation=implementation
    ).double()
    ref = torch.nn.LSTM(IN, H, num_layers=layers, batch_first=True).double()
    order = _copy_into_lstm(model, ref)
    x, w = inputs()
    ours = grads_of(model, x, w)
    ref.zero_grad()
    x.grad = None
    y = ref(x)[0]
    (y * w).sum().backward()
    assert torch.allclose(ours[0], y, atol=1e-12, rtol=0)
    assert torch.allclose(ours[1], x.grad, atol=1e-12, rtol=0)
    for k in range(layers):
        p = model.block(k)
        assert torch.allclose(p.weight_below.grad[order], getattr(ref, f"weight_ih_l{k}").grad, atol=1e-12)
        assert torch.allclose(p.weight_hh.grad[order], getattr(ref, f"weight_hh_l{k}").grad, atol=1e-12)
        for name in ("bias_ih", "bias_hh"):  # the two biases of nn.LSTM add up: each gets our bias's gradient
            assert torch.allclose(p.bias.grad[order], getattr(ref, f"{name}_l{k}").grad, atol=1e-12)


def test_depth_cells_change_the_function_and_are_causal():
    torch.manual_seed(13)
    grid = seqbench.load_model("grid_lstm", IN, H).double()
    stacked = seqbench.load_model("grid_lstm", IN, H, depth="identity").double()
    with torch.no_grad():
        for k in range(2):
            stacked.block(k).weight_below.copy_(grid.block(k).weight_below[: 4 * H])
            stacked.block(k).weight_hh.copy_(grid.block(k).weight_hh)
            stacked.block(k).bias.copy_(grid.block(k).bias[: 4 * H])
        x = torch.randn(2, 9, IN, dtype=torch.double)
        assert not torch.allclose(grid(x), stacked(x), atol=1e-3)
        x2 = x.clone()
        x2[:, 5:] = torch.randn(2, 4, IN, dtype=torch.double)
        assert torch.equal(grid(x)[:, :5], grid(x2)[:, :5])


@pytest.mark.parametrize("batch", [1, 4])
def test_cpp_and_python_loops_agree_in_float32(batch, use_loops):
    use_loops("cpp")
    torch.manual_seed(14)
    model = seqbench.load_model("grid_lstm", 5, 24, num_layers=3)
    x = torch.randn(batch, 30, 5, requires_grad=True)
    w = torch.randn(batch, 30, 24)
    cpp = grads_of(model, x, w)
    use_loops("python")
    python = grads_of(model, x, w)
    for a, b in zip(cpp, python, strict=True):
        assert (a - b).abs().max() <= 1e-5 * b.abs().max()


def test_tied_shares_one_block_across_depth():
    untied = [seqbench.load_model("grid_lstm", IN, H, num_layers=n) for n in (2, 4)]
    tied = [seqbench.load_model("grid_lstm", IN, H, num_layers=n, tied=True) for n in (2, 4)]
    count = [sum(p.numel() for p in m.parameters()) for m in (*untied, *tied)]
    block = 8 * H * H + 8 * H + 2 * 4 * H * H  # weight_below (8H, H), bias, weight_hh, weight_up
    assert count[1] - count[0] == 2 * block
    assert count[2] == count[3] == block + H * IN  # one block and the input projection, whatever the depth
    assert tied[1].block(0) is tied[1].block(3)


def test_forget_biases_start_at_the_option():
    p = seqbench.load_model("grid_lstm", IN, H, forget_bias=2.5).block(1)
    for cell in range(2):  # the time cell's rows, then the depth cell's
        assert torch.equal(p.bias[(4 * cell + 1) * H : (4 * cell + 2) * H], torch.full((H,), 2.5))


@pytest.mark.parametrize(
    "options,message", [({"num_layers": 1}, ">= 2"), ({"depth": "gru"}, "'lstm' or 'identity'")]
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(OptionsError, match=message):
        seqbench.load_model("grid_lstm", IN, H, **options)
