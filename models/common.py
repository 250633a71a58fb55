"""Helpers the model files share (one place, so that no model file imports another for a helper)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from seqbench.errors import OptionsError

RecurrentInit = Literal["default", "orthogonal", "identity"]


def init_recurrent(weight: torch.Tensor, hidden: int, how: str) -> None:
    """Initialise each (H, H) block of a stacked recurrent matrix: PyTorch's uniform default, orthogonal
    (Saxe et al. 2014) or identity (Le et al. 2015)."""
    if how == "default":
        return
    with torch.no_grad():
        for block in weight.split(hidden, dim=0):
            if how == "orthogonal":
                nn.init.orthogonal_(block)
            elif how == "identity":
                block.copy_(torch.eye(hidden, block.shape[1], dtype=block.dtype))
            else:
                raise OptionsError(f"recurrent_init must be default, orthogonal or identity, got {how!r}.")


def set_forget_bias(module: nn.LSTM | nn.LSTMCell, value: float = 1.0) -> None:
    """Start the forget gate of PyTorch's LSTM (every layer) or LSTMCell at bias `value`. The gate order
    in PyTorch is input, forget, cell, output, and the two biases add up: the input-side one gets the value,
    the recurrent one zero."""
    H = module.hidden_size
    suffixes = [""] if isinstance(module, nn.LSTMCell) else [f"_l{k}" for k in range(module.num_layers)]
    with torch.no_grad():
        for sfx in suffixes:
            getattr(module, f"bias_ih{sfx}")[H : 2 * H].fill_(value)
            getattr(module, f"bias_hh{sfx}")[H : 2 * H].zero_()


State = tuple[torch.Tensor, ...]


class FusedRecurrentState:
    """The optional stateful protocol (see `seqbench.stateful`) for a model that wraps one PyTorch fused
    `nn.RNN`, `nn.LSTM` or `nn.GRU` (batch_first) as the attribute named by `fused_attr`.

    State: `(h,)` for RNN/GRU, `(h, c)` for LSTM, each (B, layers, H), batch first so that a stream's rows
    can be sliced. `forward_state` runs the fused kernel from a given state; `step` writes the same cell
    equations out with `F.linear` (PyTorch's gate order and bias placement), so that `torch.func` can take
    its Jacobians for RTRL and UORO. The two agree in float64 (`seqbench.testing.check_stateful`).
    """

    fused_attr: str = "rnn"

    def _fused(self) -> nn.RNNBase:
        return getattr(self, self.fused_attr)

    def initial_state(
        self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> State:
        m = self._fused()
        w = m.weight_hh_l0
        z = torch.zeros(
            batch_size, m.num_layers, m.hidden_size, device=device or w.device, dtype=dtype or w.dtype
        )
        return (z, z.clone()) if isinstance(m, nn.LSTM) else (z,)

    def forward_state(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        m = self._fused()
        torch_state = tuple(s.transpose(0, 1).contiguous() for s in state)  # (layers, B, H)
        y, out = m(x, torch_state if isinstance(m, nn.LSTM) else torch_state[0])
        out = out if isinstance(m, nn.LSTM) else (out,)
        return y, tuple(s.transpose(0, 1) for s in out)

    def step(self, x_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:  # (B, I) -> (B, H)
        m = self._fused()
        new_h, new_c = [], []
        inp = x_t
        for k in range(m.num_layers):
            w_ih, w_hh = getattr(m, f"weight_ih_l{k}"), getattr(m, f"weight_hh_l{k}")
            b_ih, b_hh = getattr(m, f"bias_ih_l{k}"), getattr(m, f"bias_hh_l{k}")
            h = state[0][:, k]
            if isinstance(m, nn.LSTM):
                gates = F.linear(inp, w_ih, b_ih) + F.linear(h, w_hh, b_hh)
                i, f, g, o = gates.chunk(4, dim=-1)
                c = torch.sigmoid(f) * state[1][:, k] + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                new_c.append(c)
            elif isinstance(m, nn.GRU):
                xr, xz, xn = F.linear(inp, w_ih, b_ih).chunk(3, dim=-1)
                hr, hz, hn = F.linear(h, w_hh, b_hh).chunk(3, dim=-1)
                r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
                h = (1 - z) * torch.tanh(xn + r * hn) + z * h
            else:
                pre = F.linear(inp, w_ih, b_ih) + F.linear(h, w_hh, b_hh)
                h = torch.tanh(pre) if m.nonlinearity == "tanh" else torch.relu(pre)
            new_h.append(h)
            inp = h
        hs = torch.stack(new_h, dim=1)
        return inp, ((hs, torch.stack(new_c, dim=1)) if isinstance(m, nn.LSTM) else (hs,))
