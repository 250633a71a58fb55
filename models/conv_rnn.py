"""Convolution then RNN for very long sequences: a causal 1-D convolution downsamples the input by `stride`,
an LSTM (or GRU) runs on the sequence of blocks, and every step gets back the RNN state of the blocks that
have ended by then. The seeds' recipe for long inputs; the same shape as the conv front-ends of
speech models (e.g. Amodei et al. 2016, "Deep Speech 2") with the look-ahead removed.

With stride s and kernel k >= s, block j covers steps [js, js + s - 1]; its convolution feature reads steps
js + s - k … js + s - 1 (left-padded with zeros), and the RNN's state g_j after block j has seen everything
up to step js + s - 1. Step t is the (t mod s)-th step of its block and may use only finished blocks, so it
gets g_{⌊(t+1)/s⌋ - 1} (a learned initial state before the first block ends), together with a causal
convolution of its last s inputs for what happened inside the current block:

    y_t = tanh(W [g_{⌊(t+1)/s⌋-1}; local_t] + b),   local_t = Conv(x_{t-s+1} … x_t)

The RNN runs T/s steps instead of T: the point of the design.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from seqbench.errors import OptionsError
from seqbench.models.common import set_forget_bias


class ConvRNN(nn.Module):
    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        stride: int = 4,
        kernel: int = 8,
        rnn: Literal["lstm", "gru"] = "lstm",
        num_layers: int = 1,
    ) -> None:
        super().__init__()
        if stride < 1 or kernel < stride:
            raise OptionsError(f"conv_rnn: need stride >= 1 and kernel >= stride, got {stride}, {kernel}.")
        if rnn not in ("lstm", "gru"):
            raise OptionsError(f"conv_rnn: rnn must be 'lstm' or 'gru', got {rnn!r}.")
        H = hidden_size
        self.stride, self.kernel = stride, kernel
        self.down = nn.Conv1d(input_size, H, kernel_size=kernel, stride=stride)
        self.local = nn.Conv1d(input_size, H, kernel_size=stride)
        self.rnn = (nn.LSTM if rnn == "lstm" else nn.GRU)(H, H, num_layers, batch_first=True)
        if rnn == "lstm":
            set_forget_bias(self.rnn)  # 1, as for every LSTM here
        # What steps see before the first block has ended (with stride 1 every step ends a block: none).
        self.g0 = nn.Parameter(torch.zeros(H)) if stride > 1 else None
        self.combine = nn.Linear(2 * H, H)
        rnn_state = (2 if rnn == "lstm" else 1) * H * num_layers
        # RNN state + the last finished block's output + the inputs buffered for the convolutions
        self.state_size = rnn_state + H + input_size * (kernel - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, I) -> (B, T, H)
        B, T, _ = x.shape
        s, k = self.stride, self.kernel
        n_blocks = -(-T // s)
        xc = x.transpose(1, 2)  # (B, I, T)
        # Left padding aligns block j's window to end at js + s - 1; right padding completes the last block,
        # which only steps after T (none) could use.
        blocks = self.down(F.pad(xc, (k - s, n_blocks * s - T)))  # (B, H, n_blocks)
        g = self.rnn(blocks.transpose(1, 2))[0]  # (B, n_blocks, H)
        finished = (torch.arange(T, device=x.device) + 1) // s - 1  # ⌊(t+1)/s⌋ - 1: last finished block
        if self.g0 is not None:  # -1 (nothing finished yet) reads the learned initial state
            g, finished = torch.cat([self.g0.expand(B, 1, -1), g], dim=1), finished + 1
        local = self.local(F.pad(xc, (s - 1, 0))).transpose(1, 2)  # (B, T, H), causal
        return torch.tanh(self.combine(torch.cat([g[:, finished], local], dim=-1)))

    # The stateful protocol (seqbench.stateful), segments only (no `step`: RTRL and UORO do not take it):
    # the state is the RNN's state (batch first: (B, layers, H), h then c for an LSTM), the output of the last
    # block finished (g0 before the first), the last k - 1 inputs (what the convolutions read across a
    # segment's start) and the position within the current block (t mod s, the same in every row).

    def initial_state(
        self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> tuple[torch.Tensor, ...]:
        """Before step 0: the RNN at zero, the learned g0, zero inputs before the sequence, position 0."""
        w = self.combine.weight
        device, dtype = device or w.device, dtype or w.dtype
        B, H, L = batch_size, self.rnn.hidden_size, self.rnn.num_layers
        rnn = [
            torch.zeros(B, L, H, device=device, dtype=dtype)
            for _ in range(2 if isinstance(self.rnn, nn.LSTM) else 1)
        ]
        g = self.g0.expand(B, -1) if self.g0 is not None else torch.zeros(B, H, device=device, dtype=dtype)
        inputs = torch.zeros(B, self.kernel - 1, self.down.in_channels, device=device, dtype=dtype)
        return (*rnn, g.to(device=device, dtype=dtype), inputs, torch.zeros(B, device=device, dtype=dtype))

    def forward_state(
        self, x: torch.Tensor, state: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """A segment x (B, T, I) from `state`: its outputs (B, T, H) as `forward` gives them at these steps of
        the whole sequence, and the state after its last step."""
        *rnn, g_last, inputs, position = state
        B, T, _ = x.shape
        s, k = self.stride, self.kernel
        p = int(position[0].item()) if B else 0  # steps of the current block already seen
        # (B, I, k - 1 + T): the carried inputs, then the segment; index k - 1 is the segment's step 0
        z = torch.cat([inputs, x], dim=1).transpose(1, 2)
        first = (s - 1 - p) % s  # this segment's first step that ends a block
        g = g_last.unsqueeze(1)
        if first + k <= z.shape[2]:  # a block ends in this segment: the windows ending at block ends
            blocks = self.down(z[:, :, first:]).transpose(1, 2)
            h0 = tuple(r.transpose(0, 1).contiguous() for r in rnn)
            g_new, h1 = self.rnn(blocks, h0 if len(h0) > 1 else h0[0])
            rnn = [r.transpose(0, 1) for r in (h1 if isinstance(h1, tuple) else (h1,))]
            g = torch.cat([g, g_new], dim=1)
        finished = (torch.arange(T, device=x.device) - first + s) // s  # blocks of this segment ended by then
        local = self.local(z[:, :, k - s :]).transpose(1, 2)  # (B, T, H): the last s inputs at every step
        out = torch.tanh(self.combine(torch.cat([g[:, finished], local], dim=-1)))
        new_inputs = z[:, :, z.shape[2] - (k - 1) :].transpose(1, 2)
        return out, (*rnn, g[:, -1], new_inputs, (position + T) % s)
