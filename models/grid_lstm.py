"""2-D Grid LSTM over time x depth (Kalchbrenner, Danihelka & Graves 2016, "Grid Long Short-Term Memory",
ICLR, arXiv:1507.01526).

A Grid LSTM block has one LSTM per dimension of the grid. Here the grid has two, time t and depth k
(k = 1..K, K = `num_layers` >= 2), and both carry LSTM cells: the block at (t, k) receives a hidden and a
memory vector along time, (h^t_{t-1,k}, m^t_{t-1,k}), and along depth, (h^d_{t,k-1}, m^d_{t,k-1}), and sends
each on along its own dimension. With the paper's LSTM transform (Sect. 2)

    LSTM(H, m, W):  i = σ(W_i H),  f = σ(W_f H),  o = σ(W_o H),  z = tanh(W_z H)     (biases inside W)
                    m' = f ⊙ m + i ⊙ z,   h' = o ⊙ tanh(m')

the block computes (Sect. 3, with the depth dimension prioritised, Sect. 3.2):

    time:   H   = [h^t_{t-1,k} ; h^d_{t,k-1}]    (h^t_{t,k}, m^t_{t,k}) = LSTM(H,  m^t_{t-1,k}, W^t_k)
    depth:  H'  = [h^t_{t,k}   ; h^d_{t,k-1}]    (h^d_{t,k}, m^d_{t,k}) = LSTM(H', m^d_{t,k-1}, W^d_k)

The input enters at the bottom of the depth dimension, h^d_{t,0} = x_t (with `tied`, a learned projection
P x_t, so that every block has the same shape), m^d_{t,0} = 0; time starts from zeros; the output is the
top block's depth hidden vector h^d_{t,K}. `tied=True` is the paper's Tied Grid LSTM: one W^t and one W^d
shared by every layer. Forget-gate biases start at `forget_bias` (1) in both cells.

Two choices the paper leaves open or words differently, stated here:
- The paper prints h' = tanh(g^o ⊙ m'); this model uses the usual h' = o ⊙ tanh(m') (as nn.LSTM, TensorFlow's
  GridLSTMCell and the public Torch port do), so that its time cells are exactly LSTM layers.
- Priority (Sect. 3.2): the depth LSTM reads the new time output h^t_{t,k}, not h^t_{t-1,k}. With that, the
  paper's own reduction holds (Sect. 3.3: a non-LSTM dimension h' = α(V H'), with α the identity): replacing
  the depth LSTM by the identity transfer h^d_{t,k} = h^t_{t,k} (`depth="identity"`) gives exactly a stack of
  K LSTM layers, which the tests check against nn.LSTM with copied weights. (Fixing the depth LSTM's gates
  open cannot give the identity: its output passes tanh, so the reduction is the paper's non-LSTM dimension.)

Speed. The depth cells are not recurrent in time: the depth LSTM at layer k needs only layer k's time outputs
and layer k-1's depth outputs, so the grid runs layer by layer. Each layer is one time loop (the shared LSTM
cell's, `lstm_cell.py`, with its hand-written backward and C++ loops) followed by the depth cells of all steps
at once (both in `_GridLayer`): batched matrix products and one fused element-wise pass, forward and backward
(`csrc/grid_lstm.cpp` on the CPU; the Python functions below elsewhere, and as its specification). A block
costs twice a stacked LSTM layer's matrix products (measured: 2.0x the FLOPs of a two-layer nn.LSTM of the same
width); only the time loop's are per step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from seqbench import stateful
from seqbench.errors import OptionsError
from seqbench.models import cpp_loops, lstm_cell

CELL = lstm_cell.VARIANTS["np"]  # the time cells: LSTM with forget gate, no peepholes; blocks i, f, o, z


def depth_forward(gates, W_up, h_time, m_below, h, m, s) -> None:
    """The depth cells of one layer at every step, in Python (the C++ `grid_depth_forward` is the same).

    (features, batch) layout: gates (T, 4H, B), blocks i, f, o, z, holds W_below h^d_{k-1} + b on entry and
    the activated gates on return (each step's (4H, B) contiguous, the steps may be apart); W_up (4H, H) is the
    depth cell's weight on the new time output h_time (T, H, B); m_below (T, H, B) the memory from below
    (empty on the first layer: zero); fills h, m and s = tanh(m), each (T, H, B)."""
    T = gates.shape[0]
    H = W_up.shape[1]
    gates.baddbmm_(W_up.expand(T, -1, -1), h_time)
    gates[:, : 3 * H].sigmoid_()
    gates[:, 3 * H :].tanh_()
    i, f, o, z = gates.split(H, dim=1)
    torch.mul(i, z, out=m)
    if m_below.numel():
        m.addcmul_(f, m_below)
    torch.mul(o, torch.tanh(m, out=s), out=h)


def depth_backward(dh, dm, W_up, gates, m_below, s, dA, dm_below, dh_time) -> None:
    """Backward of `depth_forward`, in Python (the C++ `grid_depth_backward` is the same).

    dh, dm (T, H, B): the gradients reaching the layer's depth outputs. Fills dA (T, 4H, B) with the gates'
    pre-activation gradients, dm_below (T, H, B; empty on the first layer) with the gradient reaching the
    memory from below, and dh_time (T, H, B) with the gradient reaching the time outputs through W_up."""
    H = W_up.shape[1]
    i, f, o, z = gates.split(H, dim=1)
    dai, daf, dao, daz = dA.split(H, dim=1)
    torch.mul(dh, s, out=dao).mul_(torch.addcmul(o, o, o, value=-1))  # through σ
    dmt = dh * o
    dmt.sub_(dmt * s * s).add_(dm)  # through tanh, plus what reaches m directly
    torch.mul(dmt, z, out=dai).mul_(torch.addcmul(i, i, i, value=-1))
    torch.mul(dmt, i, out=daz).mul_(1 - z * z)
    if m_below.numel():
        torch.mul(dmt, m_below, out=daf).mul_(torch.addcmul(f, f, f, value=-1))
        torch.mul(dmt, f, out=dm_below)
    else:
        daf.zero_()
    dh_time.baddbmm_(W_up.t().expand(dA.shape[0], -1, -1), dA, beta=0)  # beta 0: dh_time's contents unread


def steps(device: torch.device) -> tuple[Callable[..., None], Callable[..., None]]:
    """(depth forward, depth backward): the C++ ones on the CPU where they build (`cpp_loops`), else Python."""
    ops = cpp_loops.ops_for("grid_lstm", device)
    return (
        (depth_forward, depth_backward) if ops is None else (ops.grid_depth_forward, ops.grid_depth_backward)
    )


def _as_matrix(x: torch.Tensor) -> torch.Tensor:
    """(T, F, B) -> (F, T B): the layout in which a weight gradient over all steps is one matrix product."""
    return x.transpose(0, 1).reshape(x.shape[1], -1)


class _GridLayer(torch.autograd.Function):
    """One layer of the grid at all T steps, with a hand-written backward: the time loop (the shared LSTM
    cell's loops, `lstm_cell.steps`), then the depth cells of every step at once (`steps` above).

    In: below (T, K, B) and m_below (T, H, B) (an empty tensor on the first layer) the depth vectors from the
    layer below; W_below (nH, K) and b (nH) the weights on them, rows [time i, f, o, z | depth i, f, o, z]
    (nH = 8H; 4H without depth cells); R (4H, H) the time cells' recurrent weight; W_up (4H, H) the depth
    cells' weight on the new time output (empty without depth cells). Out: this layer's depth outputs h and
    m (T, H, B); without depth cells h = h^t and m is empty.

    One batched product makes both cells' input parts from below before the loop; the products over all steps
    in backward read the pre-activation gradients of both cells as one (8H, T B) matrix."""

    @staticmethod
    def forward(ctx, below, m_below, W_below, b, R, W_up, peep):
        T, _, B = below.shape
        H = R.shape[1]
        depth = W_up.numel() > 0
        pre = torch.baddbmm(b.unsqueeze(1), W_below.expand(T, -1, -1), below)  # (T, nH, B)
        ys, cs, ss = below.new_empty(T + 1, H, B), below.new_empty(T + 1, H, B), below.new_empty(T, H, B)
        ys[0], cs[0] = 0, 0  # time starts from zeros
        time_fwd, _ = lstm_cell.steps(below.device)
        time_fwd(pre[:, : 4 * H], R, R.new_zeros(0), peep, ys, cs, ss, v=CELL)
        h_time = ys[1:]
        h, m, s = h_time, below.new_empty(0), below.new_empty(0)
        if depth:
            h, m, s = (below.new_empty(T, H, B) for _ in range(3))
            depth_fwd, _ = steps(below.device)
            depth_fwd(pre[:, 4 * H :], W_up, h_time, m_below, h, m, s)
        ctx.save_for_backward(below, m_below, W_below, R, W_up, peep, pre, ys, cs, ss, s)
        return h, m

    @staticmethod
    def backward(ctx, dh, dm):
        below, m_below, W_below, R, W_up, peep, pre, ys, cs, ss, s = ctx.saved_tensors
        T, _, B = pre.shape
        H = R.shape[1]
        depth = W_up.numel() > 0
        dh = below.new_zeros(T, H, B) if dh is None else dh.contiguous()
        dpre = torch.empty_like(pre)
        dm_below, dW_up = torch.empty_like(m_below), None
        if depth:
            dm = below.new_zeros(T, H, B) if dm is None else dm.contiguous()
            dh_time = below.new_empty(T, H, B)
            _, depth_bwd = steps(below.device)
            depth_bwd(dh, dm, W_up, pre[:, 4 * H :], m_below, s, dpre[:, 4 * H :], dm_below, dh_time)
            dh = dh_time
        dR = torch.zeros_like(R)
        _, time_bwd = lstm_cell.steps(below.device)
        time_bwd(dh, below.new_zeros(H, B), R, R.new_zeros(0), peep, pre[:, : 4 * H], ys, cs, ss,
                 dpre[:, : 4 * H], dR, R.new_zeros(0), v=CELL)  # fmt: skip
        d_below = torch.bmm(W_below.t().expand(T, -1, -1), dpre) if ctx.needs_input_grad[0] else None
        dP = _as_matrix(dpre)  # (nH, T B): one copy, read by every weight gradient
        dW_below = dP @ _as_matrix(below).t()
        if depth:
            dW_up = dP[4 * H :] @ _as_matrix(ys[1:]).t()
        return d_below, dm_below if m_below.numel() else None, dW_below, dP.sum(1), dR, dW_up, None


class _Block(nn.Module):
    """The weights of one grid block, blocks i, f, o, z each: on the depth input from below, both cells' in one
    matrix, `weight_below` (8H, K) with rows [time cell | depth cell] (4H rows without depth cells), and
    `bias`; the time cell's on its own previous output, `weight_hh` (4H, H); the depth cell's on the new
    time output, `weight_up` (4H, H)."""

    def __init__(self, below: int, H: int, depth_lstm: bool, forget_bias: float) -> None:
        super().__init__()
        k, cells = 1 / math.sqrt(H), 2 if depth_lstm else 1
        self.weight_below = nn.Parameter(torch.empty(cells * 4 * H, below).uniform_(-k, k))
        self.bias = nn.Parameter(torch.empty(cells * 4 * H).uniform_(-k, k))
        self.weight_hh = nn.Parameter(torch.empty(4 * H, H).uniform_(-k, k))
        if depth_lstm:
            self.weight_up = nn.Parameter(torch.empty(4 * H, H).uniform_(-k, k))
        with torch.no_grad():
            for c in range(cells):  # the forget gates' biases
                self.bias[(4 * c + 1) * H : (4 * c + 2) * H].fill_(forget_bias)


def _lstm(a: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The LSTM transform from pre-activations a (B, 4H), blocks i, f, o, z: (h', m')."""
    i, f, o, z = a.chunk(4, dim=-1)
    m = torch.sigmoid(f) * m + torch.sigmoid(i) * torch.tanh(z)
    return torch.sigmoid(o) * torch.tanh(m), m


class GridLSTM(nn.Module):
    version = 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 2,
        tied: bool = False,
        depth: Literal["lstm", "identity"] = "lstm",
        forget_bias: float = 1.0,
        implementation: Literal["fast", "reference"] = "fast",
    ) -> None:
        super().__init__()
        if num_layers < 2:
            raise OptionsError(
                f"grid_lstm: num_layers is the grid's depth and must be >= 2, got {num_layers}."
            )
        if depth not in ("lstm", "identity"):
            raise OptionsError(
                f"grid_lstm: depth must be 'lstm' or 'identity' (a stacked LSTM), got {depth!r}."
            )
        if implementation not in ("fast", "reference"):
            raise OptionsError(
                f"grid_lstm: implementation must be fast or reference, got {implementation!r}."
            )
        H = hidden_size
        self.H, self.num_layers, self.tied, self.depth_lstm = H, num_layers, tied, depth == "lstm"
        self.fast = implementation == "fast"
        if tied:  # one block for every layer: the input is projected to the depth dimension's width first
            self.input_proj = nn.Parameter(torch.empty(H, input_size).uniform_(-1, 1) / math.sqrt(input_size))
            self.blocks = nn.ModuleList([_Block(H, H, self.depth_lstm, forget_bias)])
        else:
            self.blocks = nn.ModuleList(
                _Block(input_size if k == 0 else H, H, self.depth_lstm, forget_bias)
                for k in range(num_layers)
            )
        self.register_buffer("_no_peepholes", torch.zeros(3, H), persistent=False)
        self.state_size = 2 * H * num_layers  # h^t and m^t of every layer are carried between steps

    def block(self, k: int) -> _Block:
        return self.blocks[0 if self.tied else k]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, I) -> (B, T, H)
        return self._fast(x) if self.fast else self._reference(x)

    def _fast(self, x: torch.Tensor) -> torch.Tensor:
        """Layer by layer in the loops' (T, features, B) layout: the time loop, then the depth cells."""
        below = x.permute(1, 2, 0)  # h^d_0 (T, I, B)
        if self.tied:
            below = torch.matmul(self.input_proj, below)  # (T, H, B)
        m_below = x.new_empty(0)
        none = x.new_empty(0)
        for k in range(self.num_layers):
            p = self.block(k)
            W_up = p.weight_up if self.depth_lstm else none
            below, m_below = _GridLayer.apply(
                below, m_below, p.weight_below, p.bias, p.weight_hh, W_up, self._no_peepholes
            )  # (T, H, B)
        return below.permute(2, 0, 1)

    def _reference(self, x: torch.Tensor) -> torch.Tensor:
        """The oracle: the block equations cell by cell through autograd, in the grid's natural order (each
        step t from the bottom of the depth dimension to its top, `step`), on (B, features) vectors."""
        return stateful.run_segment(self, x, self.initial_state(x.shape[0], x.device, x.dtype))[0]

    # The stateful protocol (seqbench.stateful): the state is what the time dimension carries, every layer's
    # (h^t, m^t), each (B, H), in layer order; the depth dimension starts afresh at every step. `step` is the
    # reference equations, segments a loop over it (`stateful.run_segment`); the fast layers start from zeros.

    def initial_state(
        self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> tuple[torch.Tensor, ...]:
        """h^t = m^t = 0 in every layer, as `forward` starts."""
        w = self.blocks[0].weight_hh
        device, dtype = device or w.device, dtype or w.dtype
        return tuple(
            torch.zeros(batch_size, self.H, device=device, dtype=dtype) for _ in range(2 * self.num_layers)
        )

    def step(
        self, x_t: torch.Tensor, state: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """One step of the grid, x_t (B, I) -> the top block's depth output (B, H), and the state after it."""
        H = self.H
        h_t, m_t = list(state[0::2]), list(state[1::2])
        h_d = x_t @ self.input_proj.t() if self.tied else x_t
        m_d = torch.zeros_like(h_t[0])
        for k in range(self.num_layers):
            p = self.block(k)
            W_t, W_d = p.weight_below[: 4 * H], p.weight_below[4 * H :]
            b_t, b_d = p.bias[: 4 * H], p.bias[4 * H :]
            h_t[k], m_t[k] = _lstm(h_t[k] @ p.weight_hh.t() + h_d @ W_t.t() + b_t, m_t[k])
            if self.depth_lstm:
                h_d, m_d = _lstm(h_t[k] @ p.weight_up.t() + h_d @ W_d.t() + b_d, m_d)
            else:
                h_d = h_t[k]
        return h_d, tuple(v for pair in zip(h_t, m_t, strict=True) for v in pair)
