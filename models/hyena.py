"""Hyena (Poli et al. 2023, "Hyena Hierarchy: Towards Larger Convolutional Language Models",
arXiv:2302.10866), order 2, as in HazyResearch/zoology's `zoology/mixers/hyena.py`.

    (x1, x2, v) = ShortConv₃(W_in u)                       causal depthwise, length 3, on 3d channels
    z = x1 ⊙ (h ∗ (x2 ⊙ v) + D ⊙ (x2 ⊙ v))                 ∗: causal convolution over the whole sequence
    y = W_out z

The long filter h ∈ R^{d x T} is implicit (§3.3): h_j = Window(j) ⊙ FFN(PosEmb(j)), with PosEmb(j) = [j / L,
cos(2π f j / L), sin(2π f j / L)] for bands f, a 2-hidden-layer MLP with sin activations of learned
frequency, and an exponential decay window exp(-|δ_c| j / L) per channel (fast for some, slow for others).
L is `max_length`, fixed at construction: zoology rebuilds the embedding for each sequence length (so the
filter's lag j depends on how long the whole sequence is); here a lag means the same at every length, the
filter is defined at any lag (as sinusoidal positions are), and the model stays causal step by step.

Two forms: `fft` (the default, O(T log T): zero-padded FFT to 2T) and `direct` (the convolution sum
y_t = Σ_{j<=t} h_j s_{t-j} as a Toeplitz product: the specification, O(T²)). No recurrent form: the state is
the whole history of the filter's input, d floats per step (state_per_step), plus the short convolution's 2
previous inputs on 3d channels (state_size).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from seqbench.errors import OptionsError
from seqbench.models.backbone import Mixer, MixerModel


class Sin(nn.Module):
    def __init__(self, dim: int, w: float = 1.0) -> None:
        super().__init__()
        self.freq = nn.Parameter(w * torch.ones(1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.freq * x)


class ImplicitFilter(nn.Module):
    """h (d, T) for lags 0..T-1 (module docstring)."""

    def __init__(
        self, d: int, max_length: int, emb_dim: int = 5, order: int = 64, fast: float = 0.3, slow: float = 1.5
    ) -> None:
        super().__init__()
        self.L, self.bands = max_length, (emb_dim - 1) // 2
        self.mlp = nn.Sequential(
            nn.Linear(1 + 2 * self.bands, order), Sin(order),
            nn.Linear(order, order), Sin(order),
            nn.Linear(order, order), Sin(order),
            nn.Linear(order, d, bias=False),
        )  # fmt: skip
        target = 1e-2  # the window falls to 1% at fast·L lags (fastest channel) to slow·L lags (slowest)
        self.register_buffer("deltas", torch.linspace(math.log(target) / slow, math.log(target) / fast, d))

    def forward(self, T: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        j = torch.arange(T, device=device, dtype=dtype).unsqueeze(1)  # (T, 1)
        f = torch.linspace(1e-4, self.bands - 1, self.bands, device=device, dtype=dtype)
        angle = 2 * math.pi * f * j / self.L
        z = torch.cat([j / self.L, angle.cos(), angle.sin()], dim=1)  # (T, emb_dim)
        window = torch.exp(-(j / self.L) * self.deltas.to(dtype).abs())  # (T, d)
        return (self.mlp(z) * window).transpose(0, 1)  # (d, T)


def fft_conv(s: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Causal convolution of s (B, d, T) with h (d, T) by FFT, zero-padded to 2T (no wrap-around)."""
    T = s.shape[-1]
    y = torch.fft.irfft(torch.fft.rfft(s, n=2 * T) * torch.fft.rfft(h, n=2 * T), n=2 * T)
    return y[..., :T]


def direct_conv(s: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """The same as a sum over lags: y_t = Σ_{j<=t} h_j s_{t-j}, by a (d, T, T) Toeplitz product."""
    T = s.shape[-1]
    lag = torch.arange(T, device=s.device).unsqueeze(1) - torch.arange(T, device=s.device)  # t - s'
    toeplitz = h[:, lag.clamp(min=0)] * (lag >= 0)  # (d, T, T)
    return torch.einsum("dts,bds->bdt", toeplitz, s)


class HyenaMixer(Mixer):
    version = 1

    def __init__(
        self, d_model: int, max_length: int = 2048, filter_order: int = 64, form: str = "fft"
    ) -> None:
        super().__init__()
        if form not in ("fft", "direct"):
            raise OptionsError(f"hyena: form must be 'fft' or 'direct', got {form!r}.")
        if max_length < 1:
            raise OptionsError(f"hyena: max_length must be >= 1, got {max_length}.")
        d, self.form = d_model, form
        self.in_proj = nn.Linear(d, 3 * d)
        self.short = nn.Conv1d(3 * d, 3 * d, 3, groups=3 * d, padding=2)
        self.filter = ImplicitFilter(d, max_length, order=filter_order)
        self.D = nn.Parameter(torch.randn(d))  # zoology's filter bias: a skip through the long convolution
        self.out_proj = nn.Linear(d, d)
        self.state_per_step = d  # the long convolution reads every earlier input

    @property
    def state_size(self) -> int:
        return 2 * self.in_proj.out_features  # the short convolution's window: 2 steps of 3d channels

    def forward(self, u: torch.Tensor) -> torch.Tensor:  # (B, T, d) -> (B, T, d)
        T = u.shape[1]
        w = self.short(self.in_proj(u).transpose(1, 2))[..., :T]  # (B, 3d, T), causal
        x1, x2, v = w.chunk(3, dim=1)
        s = x2 * v
        h = self.filter(T, u.device, u.dtype)
        conv = fft_conv if self.form == "fft" else direct_conv
        z = x1 * (conv(s, h) + self.D.unsqueeze(-1) * s)
        return self.out_proj(z.transpose(1, 2))


class Hyena(MixerModel):
    mixer = HyenaMixer
    short_conv = 0  # Hyena has its own, inside the mixer
