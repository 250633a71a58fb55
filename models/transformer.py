"""A small causal transformer (Vaswani et al. 2017, "Attention Is All You Need"), decoder-only, as the
reference that modern memory papers compare against (e.g. Zoology, Arora et al. 2023): the block backbone
(models/backbone.py) with causal multi-head self-attention as its mixer.

Pre-layer-norm blocks (Xiong et al. 2020), which train without warm-up at these sizes:

    x = x + Attn(LN(x))      causal multi-head self-attention (F.scaled_dot_product_attention, is_causal)
    x = x + MLP(LN(x))       H -> 4H -> H with GELU
    output = LN(x)

Positions: `sinusoidal` (the default; defined at every length, so a model can at least be run beyond its
training length) or `learned` (an embedding per position up to `max_length`; longer inputs are an error, and
positions never seen in training stay at their initial values). No dropout, so runs are deterministic.
With `heads` heads of width expand·H // heads the attention's inner width is heads · (expand·H // heads),
which equals H whenever `heads` divides it (any width is accepted, so `--params` can size the model freely).
The paper has no short convolution: `short_conv` defaults to 0. With the defaults the model computes what
it computed before it moved onto the backbone (same parameters, drawn in the same order), so version 1 stays.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from seqbench.errors import OptionsError
from seqbench.models.backbone import Mixer, MixerModel


def sinusoidal_positions(T: int, d: int, device: torch.device | None = None) -> torch.Tensor:
    """(T, d): sin on even, cos on odd features, wavelengths from 2π to 10000·2π (Vaswani et al. §3.5)."""
    pos = torch.arange(T, device=device, dtype=torch.float32).unsqueeze(1)
    i = torch.arange(0, d, 2, device=device, dtype=torch.float32)
    angle = pos / torch.pow(10000.0, i / d)
    pe = torch.zeros(T, d, device=device)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : d // 2])
    return pe


class AttentionMixer(Mixer):
    """Causal multi-head self-attention. No recurrent form: its cache grows by 2 · inner floats per step."""

    def __init__(self, d_model: int, expand: int = 1, heads: int = 4) -> None:
        super().__init__()
        if heads < 1 or expand < 1:
            raise OptionsError("transformer: heads and expand must be >= 1.")
        self.heads, self.head_dim = heads, max(1, expand * d_model // heads)
        inner = heads * self.head_dim
        self.qkv = nn.Linear(d_model, 3 * inner)
        self.out = nn.Linear(inner, d_model)
        self.state_per_step = 2 * inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, heads, T, head_dim)
        return self.out(a.transpose(1, 2).reshape(B, T, -1))


class Transformer(MixerModel):
    mixer = AttentionMixer

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 2,
        heads: int = 4,
        positions: Literal["sinusoidal", "learned"] = "sinusoidal",
        max_length: int = 4096,  # learned positions only
        expand: int = 1,
        short_conv: int = 0,
        mlp_ratio: int = 4,
    ) -> None:
        if positions not in ("sinusoidal", "learned"):
            raise OptionsError(
                f"transformer: positions must be 'sinusoidal' or 'learned', got {positions!r}."
            )
        if max_length < 1:
            raise OptionsError("transformer: max_length must be >= 1.")
        self.positions, self.max_length = positions, max_length  # plain values: allowed before Module init
        super().__init__(
            input_size, hidden_size, num_layers, short_conv, mlp_ratio, expand=expand, heads=heads
        )

    def init_embed(self, d: int) -> None:
        if self.positions == "learned":
            self.pos = nn.Parameter(torch.randn(self.max_length, d) * 0.02)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        T, d = x.shape[1], self.norm.normalized_shape[0]
        h = self.read_in(x)
        if self.positions == "learned":
            if self.max_length < T:
                raise OptionsError(
                    f"transformer: a sequence of {T} steps is longer than max_length={self.max_length} "
                    "learned positions; raise max_length or use positions='sinusoidal'."
                )
            return h + self.pos[:T]
        return h + sinusoidal_positions(T, d, x.device)
