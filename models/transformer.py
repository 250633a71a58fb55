"""A small causal transformer (Vaswani et al. 2017, "Attention Is All You Need"), decoder-only, as the
reference that modern memory papers compare against (e.g. Zoology, Arora et al. 2023).

Pre-layer-norm blocks (Xiong et al. 2020), which train without warm-up at these sizes:

    x = x + Attn(LN(x))      causal multi-head self-attention (F.scaled_dot_product_attention)
    x = x + MLP(LN(x))       H -> 4H -> H with GELU
    output = LN(x)

Positions: `sinusoidal` (the default; defined at every length, so a model can at least be run beyond its
training length) or `learned` (an embedding per position up to `max_length`; longer inputs are an error, and
positions never seen in training stay at their initial values). No dropout, so runs are deterministic.
With `heads` heads of width H // heads the attention's inner width is heads · (H // heads), which equals H
whenever `heads` divides it (any width is accepted, so `--params` can size the model freely).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from seqbench.errors import OptionsError


def sinusoidal_positions(T: int, d: int, device: torch.device | None = None) -> torch.Tensor:
    """(T, d): sin on even, cos on odd features, wavelengths from 2π to 10000·2π (Vaswani et al. §3.5)."""
    pos = torch.arange(T, device=device, dtype=torch.float32).unsqueeze(1)
    i = torch.arange(0, d, 2, device=device, dtype=torch.float32)
    angle = pos / torch.pow(10000.0, i / d)
    pe = torch.zeros(T, d, device=device)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : d // 2])
    return pe


class Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, max(1, d // heads)
        inner = heads * self.head_dim
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * inner)
        self.out = nn.Linear(inner, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, heads, T, head_dim)
        x = x + self.out(a.transpose(1, 2).reshape(B, T, -1))
        return x + self.mlp(self.ln2(x))


class Transformer(nn.Module):
    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 2,
        heads: int = 4,
        positions: Literal["sinusoidal", "learned"] = "sinusoidal",
        max_length: int = 4096,  # learned positions only
    ) -> None:
        super().__init__()
        if positions not in ("sinusoidal", "learned"):
            raise OptionsError(
                f"transformer: positions must be 'sinusoidal' or 'learned', got {positions!r}."
            )
        if num_layers < 1 or heads < 1 or max_length < 1:
            raise OptionsError("transformer: num_layers, heads and max_length must be >= 1.")
        d = hidden_size
        self.positions, self.max_length = positions, max_length
        self.embed = nn.Linear(input_size, d)
        if positions == "learned":
            self.pos = nn.Parameter(torch.randn(max_length, d) * 0.02)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(num_layers))
        self.ln = nn.LayerNorm(d)
        self.state_size = 0  # nothing fixed; the key/value cache grows by this much per step:
        self.state_per_step = 2 * num_layers * heads * max(1, d // heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, I) -> (B, T, H)
        T, d = x.shape[1], self.ln.normalized_shape[0]
        h = self.embed(x)
        if self.positions == "learned":
            if self.max_length < T:
                raise OptionsError(
                    f"transformer: a sequence of {T} steps is longer than max_length={self.max_length} "
                    "learned positions; raise max_length or use positions='sinusoidal'."
                )
            h = h + self.pos[:T]
        else:
            h = h + sinusoidal_positions(T, d, x.device)
        for block in self.blocks:
            h = block(h)
        return self.ln(h)
