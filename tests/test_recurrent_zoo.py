"""The recurrent zoo against its oracles and definitions (Greff et al. 2017; Cho et al. 2014; Koutník et al.
2014; Yao et al. 2015; Le et al. 2015)."""

from __future__ import annotations

import pytest
import torch

import seqbench
from seqbench import provenance
from seqbench.models import cpp_loops
from seqbench.models.lstm_cell import VARIANTS, Variant, _split, _step
from seqbench.models.lstm_variants import LSTMVariant

IN, H = 3, 6


def assert_matches_reference(model, x, w, to_reference, atol=1e-12):
    """Outputs and every gradient of the default path equal those of the reference path."""
    fast = grads_of(model, x, w)
    to_reference(model)
    slow = grads_of(model, x, w)
    for a, b in zip(fast, slow, strict=True):
        assert torch.allclose(a, b, atol=atol)


def grads_of(model, x, w):
    model.zero_grad()
    x.grad = None
    y = model(x)
    (y * w).sum().backward()
    return [y.detach(), x.grad.clone(), *(p.grad.clone() for p in model.parameters())]


@pytest.mark.parametrize("loops", ["cpp", "python"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_fast_path_matches_the_autograd_oracle(variant, loops, use_loops):
    use_loops(loops)
    torch.manual_seed(0)
    model = LSTMVariant(IN, H, num_layers=2, variant=variant).double()
    x = torch.randn(4, 9, IN, dtype=torch.double, requires_grad=True)
    w = torch.randn(4, 9, H, dtype=torch.double)
    provenance.reset_kernels()
    assert_matches_reference(model, x, w, lambda m: setattr(m, "implementation", "reference"), atol=1e-12)
    assert provenance.kernels().startswith(f"lstm_cell={loops}")  # cpp-<SIMD level> or python


# 11 fills whole SIMD vectors and leaves a remainder; at 1 a gradient can reach the loops with any stride
# along the batch
BATCHES = [11, 1]


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_cpp_loops_agree_with_the_python_loops_in_float32(variant, batch, use_loops):
    """In single precision too."""
    use_loops("cpp")
    torch.manual_seed(2)
    model = LSTMVariant(5, 24, num_layers=2, variant=variant)
    x = torch.randn(batch, 30, 5, requires_grad=True)
    w = torch.randn(batch, 30, 24)
    cpp = grads_of(model, x, w)
    use_loops("python")
    python = grads_of(model, x, w)
    for a, b in zip(cpp, python, strict=True):  # gradients sum over steps and batch: error relative to scale
        assert (a - b).abs().max() <= 1e-5 * b.abs().max()


def test_kernel_choice_is_checked(monkeypatch):
    monkeypatch.setenv(cpp_loops.ENV, "fortran")
    with pytest.raises(ValueError, match="auto, cpp or python"):
        cpp_loops.choice()


def test_shared_cell_without_peepholes_equals_torch_lstm():
    torch.manual_seed(1)
    ref = torch.nn.LSTM(IN, H, num_layers=2, batch_first=True)
    cell = LSTMVariant(IN, H, num_layers=2, variant="np")
    order = [0, 1, 3, 2]  # PyTorch's blocks are i, f, g(z), o; the cell keeps its gates together: i, f, o, z

    def blocks(w):
        return torch.cat([w.chunk(4)[k] for k in order])

    with torch.no_grad():
        for n, layer in enumerate(cell.layers):  # the two PyTorch biases add up
            layer.weight_ih.copy_(blocks(getattr(ref, f"weight_ih_l{n}")))
            layer.weight_hh.copy_(blocks(getattr(ref, f"weight_hh_l{n}")))
            layer.bias.copy_(blocks(getattr(ref, f"bias_ih_l{n}") + getattr(ref, f"bias_hh_l{n}")))
    x = torch.randn(5, 12, IN, requires_grad=True)
    w = torch.randn(5, 12, H)
    y_ref = ref(x)[0]
    (y_ref * w).sum().backward()
    gx_ref = x.grad.clone()
    x.grad = None
    y = cell(x)
    (y * w).sum().backward()
    assert torch.allclose(y, y_ref, atol=1e-6)
    assert torch.allclose(x.grad, gx_ref, atol=1e-6)
    assert torch.allclose(cell.layers[0].weight_hh.grad, blocks(ref.weight_hh_l0.grad), atol=1e-5)


def one_step(variant: str, seed: int = 0):
    v = VARIANTS[variant]
    torch.manual_seed(seed)
    names = v.blocks()
    a = _split(torch.randn(2, len(names) * H), names)
    peep = {g: torch.randn(H) for g in "ifo"}
    c_prev = torch.randn(2, H)
    return v, a, c_prev, _step(v, a, c_prev, peep)


def test_nfg_cell_never_decays():
    _, _, c_prev, (i, f, z, c, *_rest) = one_step("nfg")
    assert f is None and torch.allclose(c - c_prev, i * z)


def test_cifg_forget_is_one_minus_input():
    v, _, _, (i, f, *_rest) = one_step("cifg")
    assert "f" not in v.blocks() and torch.allclose(f, 1 - i)


def test_nig_nog_niaf_noaf():
    _, _, c_prev, (i, f, z, c, *_r) = one_step("nig")
    assert i is None and torch.allclose(c, z + f * c_prev)
    _, _, _, (*_r, c, _, o, y) = one_step("nog")
    assert o is None and torch.allclose(y, torch.tanh(c))
    _, a, _, (_, _, z, *_r) = one_step("niaf")
    assert torch.equal(z, a["z"])
    _, _, _, (*_r, c, _, o, y) = one_step("noaf")
    assert torch.allclose(y, c * o)


def n_params(name: str) -> int:
    return sum(p.numel() for p in seqbench.load_model(name, IN, H).parameters())


def test_removed_parts_have_no_weights():
    block = H * IN + H * H + H  # W, R and b of one block
    assert n_params("lstm_peephole") == 4 * block + 3 * H
    assert n_params("lstm_nig") == n_params("lstm_nog") == 3 * block + 2 * H
    assert n_params("lstm_nfg") == 3 * block + 2 * H
    assert n_params("lstm_cifg") == 3 * block + 2 * H  # no forget weights, no forget peephole
    assert n_params("lstm_1997") == 3 * block
    assert n_params("lstm_fgr") == 4 * block + 3 * H + (3 * H) ** 2
    assert n_params("lstm_niaf") == n_params("lstm_noaf") == n_params("lstm_peephole")


def test_peepholes_and_gate_recurrence_matter():
    x = torch.randn(2, 6, IN)
    for name, param in (("lstm_peephole", "peepholes.i"), ("lstm_fgr", "weight_gg")):
        torch.manual_seed(0)
        model = seqbench.load_model(name, IN, H)
        before = model(x)
        with torch.no_grad():
            model.layers[0].get_parameter(param).add_(0.5)
        assert not torch.allclose(model(x), before)


def test_variant_option_only_on_the_generic_class():
    with pytest.raises(seqbench.errors.OptionsError):
        seqbench.load_model("lstm_cifg", IN, H, variant="nig")
    assert Variant(coupled=True).blocks() == ["i", "o", "z"]


@pytest.mark.parametrize("how", ["orthogonal", "identity"])
@pytest.mark.parametrize("name", ["lstm_peephole", "lstm", "gru", "rnn"])
def test_recurrent_init(how, name):
    model = seqbench.load_model(name, IN, H, recurrent_init=how)
    weight = (
        model.layers[0].weight_hh
        if name == "lstm_peephole"
        else next(p for n, p in model.named_parameters() if n.endswith("weight_hh_l0"))
    )
    for block in weight.split(H):
        if how == "identity":
            assert torch.equal(block, torch.eye(H))
        else:
            assert torch.allclose(block @ block.t(), torch.eye(H), atol=1e-5)


def test_forget_bias_option():
    model = seqbench.load_model("lstm_peephole", IN, H, forget_bias=2.5)
    assert torch.all(model.layers[0].bias[H : 2 * H] == 2.5)


# -- GRU as Cho et al. wrote it ------------------------------------------------------------------------------


def copy_gru(cho, ref):
    with torch.no_grad():
        layer = cho.layers[0]
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(layer, name).copy_(getattr(ref, f"{name}_l0"))


def test_gru_cho_differs_from_gru_only_where_the_reset_gate_sits():
    torch.manual_seed(2)
    ref = torch.nn.GRU(IN, H, batch_first=True)
    cho = seqbench.load_model("gru_cho", IN, H)
    copy_gru(cho, ref)
    x = torch.randn(3, 10, IN)
    assert not torch.allclose(cho(x), ref(x)[0], atol=1e-4)  # r inside vs outside the product
    with torch.no_grad():  # reset gate saturated open (r = 1) and no hidden bias on n: the forms coincide
        ref.bias_ih_l0[:H] = 50.0
        ref.bias_hh_l0[2 * H :] = 0.0
    copy_gru(cho, ref)
    assert torch.allclose(cho(x), ref(x)[0], atol=1e-6)


def test_irnn_initialisation():
    model = seqbench.load_model("irnn", IN, H)
    assert torch.equal(model.rnn.weight_hh_l0, torch.eye(H))
    assert model.rnn.bias_ih_l0.abs().sum() == 0 and model.rnn.bias_hh_l0.abs().sum() == 0
    assert model.rnn.weight_ih_l0.abs().max() < 0.01


# -- clockwork RNN ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("periods", [(1, 2, 4, 8), (1, 3, 5)])
def test_clockwork_modules_update_only_on_their_period(periods):
    torch.manual_seed(3)
    hidden = 4 * len(periods)
    model = seqbench.load_model("clockwork_rnn", IN, hidden, periods=periods)
    h = model(torch.randn(2, 24, IN))  # (B, T, H)
    for m, p in enumerate(periods):
        unit = slice(4 * m, 4 * (m + 1))
        for t in range(1, 24):
            same = torch.equal(h[:, t, unit], h[:, t - 1, unit])
            assert same == (t % p != 0), (p, t)


def test_clockwork_slow_modules_never_read_fast_ones():
    model = seqbench.load_model("clockwork_rnn", IN, 8, periods=(1, 2))
    layer = model.layers[0]
    U = layer.weight_hh * layer.block_mask
    assert U[4:, :4].abs().sum() == 0 and U[:4, 4:].abs().sum() > 0


# -- depth-gated LSTM -----------------------------------------------------------------------------------------


def test_depth_gated_lstm_reduces_to_stacked_lstms_when_the_gate_is_closed():
    torch.manual_seed(4)
    model = seqbench.load_model("depth_gated_lstm", IN, H, num_layers=2, forget_bias=0.0)
    ref = torch.nn.LSTM(IN, H, num_layers=2, batch_first=True)
    with torch.no_grad():
        for n, layer in enumerate(model.layers):
            getattr(ref, f"weight_ih_l{n}").copy_(layer.weight_ih[: 4 * H])
            getattr(ref, f"weight_hh_l{n}").copy_(layer.weight_hh)
            getattr(ref, f"bias_ih_l{n}").copy_(layer.bias[: 4 * H])
            getattr(ref, f"bias_hh_l{n}").zero_()
        x = torch.randn(3, 8, IN)
        assert not torch.allclose(model(x), ref(x)[0], atol=1e-4)  # the depth gate is open a little
        model.layers[1].bias[4 * H :] = -60.0  # close it: d = σ(-60) ≈ 0
        assert torch.allclose(model(x), ref(x)[0], atol=1e-6)


def test_clockwork_fast_path_matches_the_autograd_loop():
    torch.manual_seed(5)
    model = seqbench.load_model("clockwork_rnn", IN, 12, num_layers=2, modules=4).double()
    x = torch.randn(3, 19, IN, dtype=torch.double, requires_grad=True)
    w = torch.randn(3, 19, 12, dtype=torch.double)
    assert_matches_reference(model, x, w, lambda m: setattr(m, "fast", False), atol=1e-12)


OWN_LOOPS = {"depth_gated_lstm": 3, "gru_cho": 2}  # models with their own loops: layers to test them with


@pytest.mark.parametrize("loops", ["cpp", "python"])
@pytest.mark.parametrize("name", list(OWN_LOOPS))
def test_own_loops_match_the_autograd_loop(name, loops, use_loops):
    use_loops(loops)
    torch.manual_seed(7)
    model = seqbench.load_model(name, IN, H, num_layers=OWN_LOOPS[name]).double()
    x = torch.randn(3, 11, IN, dtype=torch.double, requires_grad=True)
    w = torch.randn(3, 11, H, dtype=torch.double)
    provenance.reset_kernels()
    assert_matches_reference(model, x, w, lambda m: setattr(m, "fast", False), atol=1e-12)
    ran = f"cpp-{cpp_loops.simd()[0]}" if loops == "cpp" else "python"
    assert provenance.kernels() == f"{name}={ran}"


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("name", list(OWN_LOOPS))
def test_own_loops_agree_in_float32(name, batch, use_loops):
    use_loops("cpp")
    torch.manual_seed(8)
    model = seqbench.load_model(name, 5, 24, num_layers=2)
    x = torch.randn(batch, 30, 5, requires_grad=True)
    w = torch.randn(batch, 30, 24)
    cpp = grads_of(model, x, w)
    use_loops("python")
    python = grads_of(model, x, w)
    for a, b in zip(cpp, python, strict=True):
        assert (a - b).abs().max() <= 1e-5 * b.abs().max()
