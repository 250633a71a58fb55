"""The mixer models of the block backbone: each parallel form equals its recurrent form (the specification)
in float64, outputs and every gradient, from a zero state and from a carried-over one; `state_size` is the
number of floats the recurrent form really carries."""

from __future__ import annotations

import pytest
import torch

import seqbench
from seqbench.models.backbone import MixerModel, count_floats
from seqbench.registry import MODELS

IN, H, B, T = 3, 8, 2, 11
TOL = 1e-10


def mixer_models() -> list[str]:
    names = []
    for name in MODELS.names():
        cls = MODELS.get(name)
        if isinstance(cls, type) and issubclass(cls, MixerModel):
            names.append(name)
    return names


def recurrent_models() -> list[str]:
    return [n for n in mixer_models() if seqbench.load_model(n, IN, H).recurrent]


# Each option set changes a code path: the short convolution on and off, an inner width, one layer.
VARIANTS = [{}, {"short_conv": 3, "expand": 2}, {"short_conv": 0, "num_layers": 1}]
# Chunked forms: chunks shorter than the test sequences, so the passing-on between chunks is exercised
# (the defaults are longer than T: one padded chunk).
CHUNKED = {"mamba": {"chunk": 4}, "mamba2": {"chunk": 4}}


def build(name: str, **options) -> MixerModel:
    torch.manual_seed(0)
    if options:
        options = CHUNKED.get(name, {}) | options
    return seqbench.load_model(name, IN, H, **options).double()


def stepped(model: MixerModel, x: torch.Tensor, state) -> tuple[torch.Tensor, tuple]:
    hs = []
    for x_t in x.unbind(1):
        h_t, state = model.step(x_t, state)
        hs.append(h_t)
    return torch.stack(hs, 1), state


def real(t: torch.Tensor) -> torch.Tensor:
    return torch.view_as_real(t) if t.is_complex() else t


def grads(outputs, weights, inputs) -> list[torch.Tensor]:
    loss = sum((real(o) * w).sum() for o, w in zip(outputs, weights, strict=True))
    return list(torch.autograd.grad(loss, inputs, allow_unused=False))


def assert_close(a, b, what):
    assert a.shape == b.shape, f"{what}: shapes {tuple(a.shape)} and {tuple(b.shape)}"
    err = (a - b).abs().max().item() if a.numel() else 0.0
    assert err <= TOL, f"{what}: differ by {err:.2e}"


def test_the_mixer_models_are_registered():
    assert {"mingru", "minlstm", "hgrn", "lru", "s4d", "mamba", "mamba2"} <= set(recurrent_models())


@pytest.mark.parametrize("options", VARIANTS, ids=["default", "conv3-expand2", "noconv-1layer"])
@pytest.mark.parametrize("name", recurrent_models())
def test_parallel_form_equals_recurrent_form(name, options):
    """From a zero state: outputs, the input's gradient and every parameter's gradient."""
    model = build(name, **options)
    x = torch.randn(B, T, IN, dtype=torch.double, requires_grad=True)
    w = torch.randn(B, T, H, dtype=torch.double)
    params = [p for p in model.parameters() if p.requires_grad]
    fast = model(x)
    slow, _ = stepped(model, x, model.initial_state(B, "cpu", torch.double))
    assert_close(fast, slow, f"{name} outputs")
    for i, (a, b) in enumerate(
        zip(grads([fast], [w], [x, *params]), grads([slow], [w], [x, *params]), strict=True)
    ):
        assert_close(a, b, f"{name} gradient {i} ({'x' if i == 0 else 'parameter'})")


@pytest.mark.parametrize("name", recurrent_models())
def test_scan_from_a_carried_over_state(name):
    """The parallel form continued from the state a prefix left equals stepping on from it: outputs, final
    state, and the gradients of the inputs, the parameters and the carried-over state."""
    model = build(name, short_conv=3)
    with torch.no_grad():
        _, state = stepped(
            model, torch.randn(B, 5, IN, dtype=torch.double), model.initial_state(B, "cpu", torch.double)
        )
    state = tuple(s.clone().requires_grad_() for s in state)
    x = torch.randn(B, T, IN, dtype=torch.double, requires_grad=True)
    params = [p for p in model.parameters() if p.requires_grad]
    fast, fast_state = model.scan(x, state)
    slow, slow_state = stepped(model, x, state)
    assert_close(fast, slow, f"{name} outputs")
    for i, (a, b) in enumerate(zip(fast_state, slow_state, strict=True)):
        assert_close(a, b, f"{name} final state {i}")
    w = [torch.randn_like(real(o)) for o in (fast, *fast_state)]
    inputs = [x, *state, *params]
    for i, (a, b) in enumerate(
        zip(grads([fast, *fast_state], w, inputs), grads([slow, *slow_state], w, inputs), strict=True)
    ):
        assert_close(a, b, f"{name} gradient {i}")


@pytest.mark.parametrize("options", VARIANTS[:2], ids=["default", "conv3-expand2"])
@pytest.mark.parametrize("name", recurrent_models())
def test_state_size_counts_the_state_the_recurrent_form_carries(name, options):
    model = build(name, **options)
    state = model.initial_state(B, "cpu", torch.double)
    _, state = stepped(model, torch.randn(B, 4, IN, dtype=torch.double), state)
    assert all(s.shape[0] == B for s in state)
    assert model.state_size == count_floats(state) > 0


@pytest.mark.parametrize("name", mixer_models())
def test_short_conv_is_an_option_and_zero_switches_it_off(name):
    with_conv, without = build(name, short_conv=4), build(name, short_conv=0)
    assert all(b.conv is not None and b.conv.k == 4 for b in with_conv.blocks)
    assert all(b.conv is None for b in without.blocks)
    n = sum(p.numel() for p in with_conv.parameters()) - sum(p.numel() for p in without.parameters())
    assert n == 4 * H * len(with_conv.blocks)


@pytest.mark.parametrize("kernel", ["cpp", "python"])
@pytest.mark.parametrize("time_major", [False, True])
def test_diagonal_scan_matches_its_loop_and_gradcheck(time_major, kernel, monkeypatch):
    """Both implementations of the scan (the C++ loops, models/csrc/scan_loops.cpp, and the Python loops):
    `auto` falls back to Python where the extension does not build, so `cpp` is required here."""
    from seqbench.models.common import diagonal_scan
    from seqbench.provenance import kernels, reset_kernels

    monkeypatch.setenv("SEQBENCH_LSTM_KERNEL", kernel)
    reset_kernels()
    torch.manual_seed(0)
    shape = (5, 2, 3) if time_major else (2, 5, 3)
    a = torch.rand(shape, dtype=torch.double, requires_grad=True)
    b = torch.randn(shape, dtype=torch.double, requires_grad=True)
    h0 = torch.randn(2, 3, dtype=torch.double, requires_grad=True)
    h, ref = h0, []
    for t in range(5):
        at, bt = (a[t], b[t]) if time_major else (a[:, t], b[:, t])
        h = at * h + bt
        ref.append(h)
    expected = torch.stack(ref, 0 if time_major else 1)
    assert_close(diagonal_scan(a, b, h0, time_major=time_major), expected, "diagonal_scan")
    assert torch.autograd.gradcheck(
        lambda a, b, h0: diagonal_scan(a, b, h0, time_major=time_major), (a, b, h0)
    )
    assert ("diagonal_scan=python" in kernels()) == (kernel == "python")


@pytest.mark.parametrize("name", recurrent_models())
def test_scan_in_pieces_equals_one_forward(name):
    """Streaming / truncated BPTT: the sequence in two pieces, the state carried between them."""
    model = build(name, short_conv=3)
    x = torch.randn(B, T, IN, dtype=torch.double)
    first, state = model.scan(x[:, :4], model.initial_state(B, "cpu", torch.double))
    second, _ = model.scan(x[:, 4:], state)
    assert_close(torch.cat([first, second], 1), model(x), f"{name} in two pieces")


def test_mamba_recomputed_chunks_equal_the_recurrent_form(monkeypatch):
    """Large chunks are recomputed in the backward pass (activation checkpointing): force it here."""
    from seqbench.models import mamba

    monkeypatch.setattr(mamba, "_RECOMPUTE_ABOVE", 0)
    model = build("mamba", chunk=4, implementation="reference")
    x = torch.randn(B, T, IN, dtype=torch.double, requires_grad=True)
    w = torch.randn(B, T, H, dtype=torch.double)
    params = [x, *model.parameters()]
    fast = model(x)
    slow, _ = stepped(model, x, model.initial_state(B, "cpu", torch.double))
    assert_close(fast, slow, "mamba outputs")
    for i, (a, b) in enumerate(zip(grads([fast], [w], params), grads([slow], [w], params), strict=True)):
        assert_close(a, b, f"mamba gradient {i}")


def _chunked_scan(dt, x, Bm, Cm, A, h0, chunk):
    """models/mamba.py's reference form of the selective scan, chunk after chunk through autograd."""
    from seqbench.models.mamba import _selective_chunk

    ys, h = [], h0
    for parts in zip(dt.split(chunk), x.split(chunk), Bm.split(chunk), Cm.split(chunk), strict=True):
        y, h = _selective_chunk(h, *parts, A)
        ys.append(y)
    return torch.cat(ys, 0), h


# (T, batch, channels D, d_state N, chunk): T a multiple of the chunk and not, one chunk longer than T, a chunk
# of one step; N below, at and above a SIMD width
SCANS = [(11, 2, 5, 3, 4), (8, 2, 4, 16, 4), (7, 3, 4, 16, 64), (9, 1, 3, 19, 1)]


@pytest.mark.parametrize("sizes", SCANS, ids=lambda s: "T{}-B{}-D{}-N{}-chunk{}".format(*s))
def test_fused_selective_scan_equals_the_chunked_form(sizes, monkeypatch):
    """The C++ scan (models/csrc/selective_scan.cpp) against the chunked autograd form it replaces, float64:
    outputs, the final state, and the gradients of dt, x, B, C, A and h0 (the final state's included)."""
    from seqbench.models import cpp_loops
    from seqbench.models.mamba import selective_scan

    monkeypatch.setenv("SEQBENCH_LSTM_KERNEL", "cpp")  # a failed build fails here instead of falling back
    ops = cpp_loops.load()
    T, batch, D, N, chunk = sizes
    torch.manual_seed(0)
    dt = torch.rand(T, batch, D, dtype=torch.double) * 0.5 + 0.01
    inputs = [
        dt,
        *(torch.randn(*shape, dtype=torch.double) for shape in ((T, batch, D), (T, batch, N), (T, batch, N))),
    ]
    inputs += [-3 * torch.rand(D, N, dtype=torch.double), torch.randn(batch, D, N, dtype=torch.double)]
    fused_in = [t.clone().requires_grad_() for t in inputs]
    ref_in = [t.clone().requires_grad_() for t in inputs]
    y, h = selective_scan(ops, chunk, *fused_in)
    y_ref, h_ref = _chunked_scan(*ref_in, chunk)
    assert_close(y, y_ref, "outputs")
    assert_close(h, h_ref, "final state")
    w = [torch.randn_like(y), torch.randn_like(h)]
    names = ["dt", "x", "B", "C", "A", "h0"]
    for name, a, b in zip(names, grads([y, h], w, fused_in), grads([y_ref, h_ref], w, ref_in), strict=True):
        assert_close(a, b, f"gradient of {name}")
    with torch.no_grad():  # the evaluation path keeps no chunk states
        y_eval, h_eval = selective_scan(ops, chunk, *inputs)
    assert_close(y_eval, y_ref, "outputs without autograd")
    assert_close(h_eval, h_ref, "final state without autograd")


@pytest.mark.parametrize("kernel", ["cpp", "python"])
def test_mamba_records_which_scan_ran(kernel, monkeypatch):
    """`kernels` says mamba=cpp-... where the fused scan ran and mamba=python where the chunked form did; the
    two give the same outputs."""
    from seqbench.provenance import kernels, reset_kernels

    monkeypatch.setenv("SEQBENCH_LSTM_KERNEL", kernel)
    reset_kernels()
    x = torch.randn(B, T, IN, dtype=torch.double)
    out = build("mamba", chunk=4)(x)
    assert ("mamba=python" in kernels()) == (kernel == "python")
    assert_close(out, build("mamba", chunk=4, implementation="reference")(x), "fast and reference")


# (B, H, T, d_k, d_v, low-rank term, decays per step (0: none), chunk): T a multiple of the chunk and not,
# chunk 1 and longer than T, d_v below, at and above a SIMD width, a decay per head and per channel.
FUSED_SIZES = [
    (2, 3, 13, 5, 7, True, 0, 4),
    (2, 2, 9, 8, 3, True, 1, 3),
    (1, 2, 17, 6, 9, True, 6, 32),
    (2, 2, 12, 4, 10, False, 4, 1),
    (2, 1, 10, 9, 8, False, 0, 5),
    (2, 2, 8, 3, 3, False, 1, 2),
]


@pytest.mark.parametrize("sizes", FUSED_SIZES, ids=lambda s: "-".join(map(str, s)))
def test_fused_linear_recurrence_equals_both_forms(sizes, monkeypatch):
    """The C++ loop (models/csrc/linear_recurrence.cpp) against the recurrent form (the specification) and the
    chunked form it replaces, float64: outputs, the final state and the gradient of every input (q, k, v, a,
    b, the decays, the initial state), with a loss on the final state too; and the no-grad path."""
    from seqbench.models import cpp_loops
    from seqbench.models import linear_recurrence as lr

    monkeypatch.setenv("SEQBENCH_LSTM_KERNEL", "cpp")
    ops = cpp_loops.load()
    Bn, Hn, Tn, dk, dv, lowrank, gd, chunk = sizes
    torch.manual_seed(0)
    q, k, a, b = (0.5 * torch.randn(Bn, Hn, Tn, dk, dtype=torch.double) for _ in range(4))
    v = torch.randn(Bn, Hn, Tn, dv, dtype=torch.double)
    g = -torch.rand(Bn, Hn, Tn, gd, dtype=torch.double) if gd else None
    inputs = [
        q,
        k,
        v,
        a if lowrank else None,
        b if lowrank else None,
        g,
        torch.randn(Bn, Hn, dk, dv).double(),
    ]

    def run(form):
        leaves = [None if t is None else t.clone().requires_grad_() for t in inputs]
        qq, kk, vv, aa, bb, gg, S0 = leaves
        if form == "fused":
            o, S = lr.dplr_fused(ops, qq, kk, vv, aa, bb, gg, S0, chunk)
        elif lowrank:
            o, S = (
                lr.dplr_recurrent(*leaves) if form == "recurrent" else lr.dplr_chunked(*leaves, chunk=chunk)
            )
        elif form == "recurrent":
            o, S = lr.gla_recurrent(qq, kk, vv, gg, S0)
        else:
            o, S = lr.gla_chunked(qq, kk, vv, gg, S0, min(chunk, 32))
        torch.manual_seed(1)
        present = [t for t in leaves if t is not None]
        return o, S, grads([o, S], [torch.randn_like(o), torch.randn_like(S)], present)

    fused = run("fused")
    for form in ("recurrent", "chunked"):
        other = run(form)
        assert_close(fused[0], other[0], f"outputs against the {form} form")
        assert_close(fused[1], other[1], f"final state against the {form} form")
        for i, (x, y) in enumerate(zip(fused[2], other[2], strict=True)):
            assert_close(x, y, f"gradient of input {i} against the {form} form")
    with torch.no_grad():
        o, S = lr.dplr_fused(ops, *inputs[:6], inputs[6], chunk)
    assert_close(o, fused[0], "outputs without autograd")
    assert_close(S, fused[1], "final state without autograd")


FUSED_MIXERS = ["deltanet", "gated_deltanet", "gla", "retnet", "linear_attention", "rwkv7"]


@pytest.mark.parametrize("name", FUSED_MIXERS)
@pytest.mark.parametrize("kernel", ["cpp", "python"])
def test_linear_recurrence_mixers_record_which_loop_ran(name, kernel, monkeypatch):
    """`kernels` names the fused loop (name=cpp-...) where it ran and name=python where the chunked form did;
    implementation=reference gives the same outputs and gradients (the equality tests above run the fused loop
    from a carried-over state)."""
    from seqbench.provenance import kernels, reset_kernels

    monkeypatch.setenv("SEQBENCH_LSTM_KERNEL", kernel)
    reset_kernels()
    x = torch.randn(B, T, IN, dtype=torch.double)
    fast, ref = build(name, chunk=4), build(name, chunk=4, implementation="reference")
    out = fast(x)
    assert f"{name}=python" in kernels() if kernel == "python" else f"{name}=cpp-" in kernels()
    expected = ref(x)
    assert_close(out, expected, "fast and reference")
    (ga,) = grads([out], [torch.ones_like(out)], [next(fast.parameters())])
    (gb,) = grads([expected], [torch.ones_like(expected)], [next(ref.parameters())])
    assert_close(ga, gb, "first parameter's gradient")


def test_fused_linear_recurrence_flops_equal_the_recurrent_form():
    """The FLOP formulas registered for the fused loop count what torch's counter counts for the recurrent
    form (forward and backward), with and without the low-rank term, from an initial state that needs its
    gradient (from a constant one the recurrent form skips one product, u_0's gradient towards S_0)."""
    from torch.utils.flop_counter import FlopCounterMode

    from seqbench.models import cpp_loops
    from seqbench.models import linear_recurrence as lr

    ops = cpp_loops.load()
    if ops is None:
        pytest.skip("the C++ loops did not build here")
    q, k, a, b = (torch.randn(2, 3, 7, 4, requires_grad=True) for _ in range(4))
    v = torch.randn(2, 3, 7, 5, requires_grad=True)
    S0 = torch.randn(2, 3, 4, 5, requires_grad=True)
    for lowrank in (True, False):
        counts = []
        for form in ("fused", "recurrent"):
            with FlopCounterMode(display=False) as counter:
                if form == "fused":
                    o, S = lr.dplr_fused(
                        ops, q, k, v, a if lowrank else None, b if lowrank else None, None, S0
                    )
                elif lowrank:
                    o, S = lr.dplr_recurrent(q, k, v, a, b, None, S0)
                else:
                    o, S = lr.gla_recurrent(q, k, v, None, S0)
                (o.sum() + S.sum()).backward()
            counts.append(counter.get_total_flops())
        assert counts[0] == counts[1] > 0, (lowrank, counts)


@pytest.mark.parametrize("start", ["initial", "reached"])
@pytest.mark.parametrize("length", [1, 7])
def test_slstm_cpp_loop_equals_the_recurrent_form(start, length, use_loops):
    """The sLSTM's C++ loop (csrc/slstm_loops.cpp) against its specification, `slstm_recurrent` through
    autograd, in float64: the outputs, the final (h, c, n, m) and the gradient of the input projection, of R
    and of every part of the starting state, from the empty start (m = -1e30) and from a reached state."""
    from seqbench.models import cpp_loops
    from seqbench.models.slstm import NEG, slstm_fused, slstm_recurrent

    use_loops("cpp")
    ops = cpp_loops.load()
    torch.manual_seed(length)
    heads, dh = 2, 3
    d = heads * dh
    wx = torch.randn(B, length, 4 * d, dtype=torch.double, requires_grad=True)
    R = torch.randn(heads, dh, 4 * dh, dtype=torch.double, requires_grad=True)
    if start == "initial":
        state = [torch.zeros(B, d, dtype=torch.double) for _ in range(3)]
        state.append(torch.full((B, d), NEG, dtype=torch.double))
    else:
        h0, c0, m0 = (torch.randn(B, d, dtype=torch.double) for _ in range(3))
        state = [h0, c0, torch.rand(B, d, dtype=torch.double) + 0.5, m0]
    state = [s.requires_grad_(True) for s in state]
    results = []
    for run in (slstm_recurrent, lambda *a: slstm_fused(ops, *a)):
        h, final = run(wx, R, tuple(state))
        weights = [torch.linspace(-1, 2, t.numel(), dtype=t.dtype).view_as(t) for t in (h, *final)]
        results.append((h, final, grads([h, *final], weights, [wx, R, *state])))
    (h_r, final_r, g_r), (h_f, final_f, g_f) = results
    assert_close(h_f, h_r, "outputs")
    for i, (a, b) in enumerate(zip(final_f, final_r, strict=True)):
        assert_close(a, b, f"final state {i}")
    for name, a, b in zip(["wx", "R", "h0", "c0", "n0", "m0"], g_f, g_r, strict=True):
        assert_close(a, b, f"gradient of {name}")


@pytest.mark.parametrize("kernel", ["cpp", "python"])
def test_slstm_records_which_loop_ran_and_both_agree(kernel, use_loops):
    """`kernels` says slstm=cpp-... or slstm=python; the model's outputs and gradients equal
    implementation=reference's; under no_grad (two rolling steps of state) the same outputs."""
    from seqbench.provenance import kernels, reset_kernels

    use_loops(kernel)
    reset_kernels()
    x = torch.randn(B, T, IN, dtype=torch.double)
    fast, ref = build("slstm"), build("slstm", implementation="reference")
    out = fast(x)
    assert f"slstm={'python' if kernel == 'python' else 'cpp-'}" in kernels()
    expected = ref(x)
    assert_close(out, expected, "fast and reference")
    (ga,) = grads([out], [torch.ones_like(out)], [fast.blocks[0].mixer.R])
    (gb,) = grads([expected], [torch.ones_like(expected)], [ref.blocks[0].mixer.R])
    assert_close(ga, gb, "R's gradient")
    with torch.no_grad():
        assert_close(fast(x), out.detach(), "no_grad and recorded")
