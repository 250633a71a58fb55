"""The mixers of today's recurrent models (#15): each chunked form equals its recurrent form (the
specification) in float64 to 1e-10, outputs and every gradient; the state is what state_size counts."""

from __future__ import annotations

import pytest
import torch

from seqbench.models.based import BasedMixer
from seqbench.models.deltanet import DeltaNetMixer
from seqbench.models.gated_deltanet import GatedDeltaNetMixer
from seqbench.models.gla import GLAMixer
from seqbench.models.hyena import HyenaMixer
from seqbench.models.linear_attention import LinearAttentionMixer
from seqbench.models.linear_recurrence import dplr_chunked, dplr_recurrent, gla_chunked, gla_recurrent
from seqbench.models.mlstm import MLSTMMixer
from seqbench.models.retnet import RetNetMixer
from seqbench.models.rwkv7 import RWKV7Mixer
from seqbench.models.slstm import SLSTMMixer

D, B, T = 8, 2, 11  # T = 11 with chunk 4: two full chunks and a padded one
F64 = torch.float64
TWO_FORMS = {
    "linear_attention": (LinearAttentionMixer, {}),
    "retnet": (RetNetMixer, {}),
    "gla": (GLAMixer, {}),
    "deltanet": (DeltaNetMixer, {}),
    "deltanet_neg": (DeltaNetMixer, {"negative_eigenvalues": True}),
    "gated_deltanet": (GatedDeltaNetMixer, {}),
    "mlstm": (MLSTMMixer, {}),
    "based": (BasedMixer, {"feature_dim": 3, "window": 3}),
    "rwkv7": (RWKV7Mixer, {}),
}


def build(cls, **options):
    torch.manual_seed(0)
    return cls(D, **options).to(F64)


def grads(module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    w = torch.randn(y.shape, dtype=F64, generator=torch.Generator().manual_seed(1))
    params = [p for p in module.parameters() if p.requires_grad]
    return list(torch.autograd.grad((y * w).sum(), [x, *params], allow_unused=True))


def assert_close(a: torch.Tensor | None, b: torch.Tensor | None, what: str) -> None:
    assert (a is None) == (b is None), what
    if a is not None:
        assert (a - b).abs().max().item() < 1e-10, f"{what}: differ by {(a - b).abs().max().item():.2e}"


@pytest.mark.parametrize("name", TWO_FORMS)
def test_chunked_equals_recurrent(name):
    cls, options = TWO_FORMS[name]
    m = build(cls, heads=2, chunk=4, **options)
    x = torch.randn(B, T, D, dtype=F64, requires_grad=True)
    chunked = m(x)
    recurrent = m._run(x, None, "recurrent")[0]
    assert_close(chunked, recurrent, f"{name} outputs")
    for i, (a, b) in enumerate(zip(grads(m, x, chunked), grads(m, x, recurrent), strict=True)):
        assert_close(a, b, f"{name} gradient {i}")
    ys, state = [], None
    for x_t in x.detach().unbind(1):  # the step interface the backbone calls
        y_t, state = m.step(x_t, state)
        ys.append(y_t)
    assert_close(chunked.detach(), torch.stack(ys, 1), f"{name} step by step")


@pytest.mark.parametrize("name", TWO_FORMS)
def test_scan_continues_from_a_state(name):
    """A sequence cut in two and scanned with the state carried over gives the whole sequence's outputs."""
    cls, options = TWO_FORMS[name]
    m = build(cls, heads=2, chunk=4, **options)
    x = torch.randn(B, T, D, dtype=F64)
    y1, s1 = m.scan(x[:, :5], None)
    y2, s2 = m.scan(x[:, 5:], s1)
    whole, s = m.scan(x, None)
    assert_close(torch.cat([y1, y2], 1), whole, name)
    for a, b in zip(s2, s, strict=True):
        assert_close(a, b, f"{name} final state")
    assert m.state_size == sum(t[0].numel() for t in s)


def test_state_sizes_count_the_recurrent_state():
    H, dk = 4, 8 // 4
    assert build(RetNetMixer, heads=4).state_size == H * dk * dk
    assert build(DeltaNetMixer, heads=4).state_size == H * dk * dk
    assert build(LinearAttentionMixer, heads=4).state_size == H * dk * (dk + 1)  # S and z
    assert build(MLSTMMixer, heads=4).state_size == H * (dk * dk + dk + 1)  # C, n, m
    assert build(GLAMixer, heads=4).state_size == H * (4 // 4) * dk  # d_k = d/2
    assert build(RWKV7Mixer, heads=4).state_size == H * dk * dk + D  # S and the token shift
    assert build(SLSTMMixer, heads=4).state_size == 4 * D


@pytest.mark.parametrize("chunk", [1, 3, 8, 16])
@pytest.mark.parametrize("decay", [None, "per_channel", "per_head"])
def test_kernels_chunked_equal_recurrent(chunk, decay):
    """The two shared recurrences, from a non-zero state, including the final state and every gradient."""
    g_ = torch.Generator().manual_seed(0)
    Bh, H, n, dk, dv = 2, 3, 13, 4, 5
    q, k, a = (torch.randn(Bh, H, n, dk, dtype=F64, generator=g_) for _ in range(3))
    k = torch.nn.functional.normalize(k, dim=-1)
    v = torch.randn(Bh, H, n, dv, dtype=F64, generator=g_)
    beta = torch.rand(Bh, H, n, 1, dtype=F64, generator=g_) * 2  # up to 2: negative eigenvalues
    width = {"per_channel": dk, "per_head": 1}.get(decay)
    g = -torch.rand(Bh, H, n, width, dtype=F64, generator=g_) * 4 if decay else None
    S0 = torch.randn(Bh, H, dk, dv, dtype=F64, generator=g_)
    leaves = [t.requires_grad_() for t in (q, k, v, a, beta, S0) + ((g,) if decay else ())]
    cases = [
        (gla_recurrent, gla_chunked, lambda: (q, k, v, g, S0)),
        (dplr_recurrent, dplr_chunked, lambda: (q, beta * k, v, k, -beta * k, g, S0)),  # the delta rule
        (dplr_recurrent, dplr_chunked, lambda: (q, k, v, a * 0.3, -k * 0.5, g, S0)),  # a general DPLR
    ]
    for rec, chk, args in cases:
        (o1, s1), (o2, s2) = rec(*args()), chk(*args(), chunk=chunk)
        assert_close(o1, o2, f"{chk.__name__} outputs")
        assert_close(s1, s2, f"{chk.__name__} final state")
        w = torch.randn(o1.shape, dtype=F64, generator=g_)
        d1 = torch.autograd.grad((o1 * w).sum() + s1.sum(), leaves, allow_unused=True)
        d2 = torch.autograd.grad((o2 * w).sum() + s2.sum(), leaves, allow_unused=True)
        for i, (x1, x2) in enumerate(zip(d1, d2, strict=True)):
            assert_close(x1, x2, f"{chk.__name__} gradient {i}")


def test_hyena_fft_equals_direct_convolution():
    m = build(HyenaMixer, max_length=32)
    x = torch.randn(B, T, D, dtype=F64, requires_grad=True)
    y_fft = m(x)
    g_fft = grads(m, x, y_fft)
    m.form = "direct"
    y_direct = m(x)
    assert_close(y_fft, y_direct, "hyena outputs")
    for i, (a, b) in enumerate(zip(g_fft, grads(m, x, y_direct), strict=True)):
        assert_close(a, b, f"hyena gradient {i}")


def test_slstm_stabilised_equals_the_plain_equations():
    """The stabilised loop against the unstabilised cell (i = exp(ĩ), f = σ(f̃), h = o c / n) in float64."""
    from seqbench.models.slstm import slstm_recurrent

    g_ = torch.Generator().manual_seed(0)
    heads, dh = 2, 3
    d = heads * dh
    wx = torch.randn(B, T, 4 * d, dtype=F64, generator=g_)
    R = torch.randn(heads, dh, 4 * dh, dtype=F64, generator=g_) * 0.3
    z = torch.zeros(B, d, dtype=F64)
    got, _ = slstm_recurrent(wx, R, (z, z, z, torch.full((B, d), -1e30, dtype=F64)))
    h, c, n, ref = z, z, z, []
    for t in range(T):
        rh = torch.einsum("bhd,hde->bhe", h.view(B, heads, dh), R).view(B, heads, 4, dh).transpose(1, 2)
        i, f, zz, o = (u.flatten(1) for u in (wx[:, t].view(B, 4, heads, dh) + rh).unbind(1))
        c = torch.sigmoid(f) * c + i.exp() * torch.tanh(zz)
        n = torch.sigmoid(f) * n + i.exp()
        h = torch.sigmoid(o) * c / n
        ref.append(h)
    assert_close(got, torch.stack(ref, 1), "slstm")


def test_slstm_step_equals_scan():
    m = build(SLSTMMixer, heads=2)
    x = torch.randn(B, T, D, dtype=F64)
    whole = m(x)
    ys, state = [], m.initial_state(B, None, F64)
    for x_t in x.unbind(1):
        y_t, state = m.step(x_t, state)
        ys.append(y_t)
    assert_close(whole, torch.stack(ys, 1), "slstm")
    assert torch.isfinite(whole).all()


def test_chunked_float32_at_the_strongest_decay():
    """Every step at MIN_LOG_DECAY with the largest chunk: the split factors stay finite in float32 and the
    chunked forms match the float64 recurrences."""
    from seqbench.models.linear_recurrence import CHUNK, MIN_LOG_DECAY

    g_ = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 3 * CHUNK, 8, generator=g_) for _ in range(3))
    k = torch.nn.functional.normalize(k, dim=-1)
    g = torch.full_like(q, MIN_LOG_DECAY)
    for rec, chk, args in [
        (gla_recurrent, gla_chunked, (q, k, v, g)),
        (dplr_recurrent, dplr_chunked, (q, 0.9 * k, v, k, -0.9 * k, g)),
    ]:
        ref = rec(*(a.double() for a in args))[0]
        out = chk(*args, chunk=CHUNK)[0]
        assert torch.isfinite(out).all()
        assert (out.double() - ref).abs().max().item() < 1e-4
