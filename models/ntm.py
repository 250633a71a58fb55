"""Neural Turing Machine (Graves, Wayne & Danihelka 2014, "Neural Turing Machines", arXiv:1410.5401).

A controller (LSTM by default, or feed-forward) reads the input and the previous step's read vectors, and
emits, for every head, the parameters of the addressing mechanism (§3.3):

    content    w_c = softmax_i(β · cos(k, M_i))                     key k, key strength β >= 0
    interpolate w_g = g · w_c + (1 - g) · w_{t-1}                    gate g in (0, 1)
    shift      w~(i) = Σ_j w_g(j) · s(i - j)  (circular)            s a softmax over shifts {-S..S}
    sharpen    w(i) = w~(i)^γ / Σ_j w~(j)^γ                          γ >= 1

Read heads return r = Σ_i w(i) M_i; write heads erase then add: M_i <- M_i ⊙ (1 - w(i) e) + w(i) a, with
e = σ(·) and a = tanh(·) (the paper leaves a unconstrained; bounding it keeps the memory's scale stable).
Reads use the memory as it was before this step's write. The initial memory, read vectors, weightings
and controller state are learned biases, reset for every sequence; the memory bias starts as a small
constant, which converged fastest in Collier & Beel 2018 ("Implementing Neural Turing Machines"), and the
initial weightings start focused on slot 0 so that location-based addressing has a place to start from.

Everything is batched: addressing for all heads and all sequences is a handful of tensor ops per step. That
loop (`reference_forward`, `implementation="reference"`) is the specification; by default on the CPU the
whole time loop runs in C++ with a hand-written backward (ntm_loops.py, csrc/ntm_loops.cpp), equal to it in
float64 (tests/test_ntm_fast.py).
The module maps (B, T, input) to (B, T, hidden_size): a linear map of [controller output, read vectors].

Stateful protocol (`seqbench.stateful`): the state is (memory, read vectors, weightings[, controller h, c]),
starting from the learned initial state. `step` is the reference equations for one step; `forward_state`
runs them step by step through autograd (the C++ backward takes no gradient into the final memory, so a
window whose final state is carried with its gradient could not use it), and the C++ loop when no gradient
is recorded (evaluating a stream). So truncated BPTT on the NTM trains at the reference loop's speed.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from seqbench.errors import OptionsError
from seqbench.models import cpp_loops
from seqbench.models.common import set_forget_bias
from seqbench.models.ntm_loops import ntm_loop

# ε of the cosine similarity's norms and of the sharpening (w + ε)^γ; the DNC's content addressing uses it too
EPS = 1e-8


def content_weights(memory: torch.Tensor, keys: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Softmax over slots of β · cosine(key, slot). memory (B, N, M), keys (B, H, M), beta (B, H) -> (B, H, N)."""
    sim = torch.bmm(F.normalize(keys, dim=-1, eps=EPS), F.normalize(memory, dim=-1, eps=EPS).transpose(1, 2))
    return torch.softmax(beta.unsqueeze(-1) * sim, dim=-1)


def circular_shift(w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Circular convolution of weightings w (B, H, N) with shift distributions s (B, H, 2S+1) over -S..S.

    A shift of +1 moves weight from slot i to slot i + 1 (mod N)."""
    S = (s.shape[-1] - 1) // 2
    padded = torch.cat([w[..., w.shape[-1] - S :], w, w[..., :S]], dim=-1)  # wrap around: (B, H, N + 2S)
    windows = padded.unfold(-1, 2 * S + 1, 1)  # (B, H, N, 2S+1): windows[..., i, m] = w[i - S + m]
    return torch.matmul(windows, s.flip(-1).unsqueeze(-1)).squeeze(-1)  # Σ_m w[i - S + m] s[S - m]


def sharpen(w: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """w^γ renormalised; gamma (B, H) >= 1. The epsilon keeps d/dγ of 0^γ finite."""
    w = (w + EPS) ** gamma.unsqueeze(-1)
    return w / w.sum(dim=-1, keepdim=True)


def address(
    memory: torch.Tensor,
    prev_w: torch.Tensor,
    key: torch.Tensor,
    beta: torch.Tensor,
    gate: torch.Tensor,
    shift: torch.Tensor,
    gamma: torch.Tensor,
) -> torch.Tensor:
    """The full addressing pipeline of §3.3 for all heads at once; returns (B, H, N) weightings."""
    w_c = content_weights(memory, key, beta)
    w_g = gate.unsqueeze(-1) * w_c + (1 - gate.unsqueeze(-1)) * prev_w
    return sharpen(circular_shift(w_g, shift), gamma)


class NTM(nn.Module):
    presets: ClassVar[dict[str, dict]] = {
        # Graves et al.'s copy set-up: controller 100, RMSProp 1e-4 with momentum 0.9, element-wise clip at 10.
        "paper": {
            "hidden_size": 100,
            "optimizer": "rmsprop",
            "lr": 1e-4,
            "momentum": 0.9,
            "clip": "value",
            "clip_value": 10.0,
            "batch_size": 1,
        },
        # Batched instead: Adam 1e-3, batch 32 (from the task), L2-norm clip 10. Measured here: copy solved
        # (sequence accuracy 1.0 at length 20) after 1,400 steps = 44,800 sequences, about 4 CPU minutes.
        "quick": {"hidden_size": 100, "clip": "norm", "clip_value": 10.0},
    }

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        memory_slots: int = 128,  # N; the paper's copy set-up: 128 x 20
        memory_width: int = 20,  # M
        read_heads: int = 1,
        write_heads: int = 1,
        controller: str = "lstm",  # "lstm" or "feedforward"
        shift_range: int = 1,  # shifts over -S..S
        controller_clip: float = 20.0,  # clip the controller's outputs (Collier & Beel 2018); 0 = off
        implementation: Literal[
            "fast", "reference"
        ] = "fast",  # the C++ loop, or the autograd loop it is checked against
    ) -> None:
        super().__init__()
        if controller not in ("lstm", "feedforward"):
            raise OptionsError(f"ntm: controller must be 'lstm' or 'feedforward', got {controller!r}.")
        if memory_slots < 1 or memory_width < 1 or read_heads < 1 or write_heads < 0:
            raise OptionsError(
                "ntm: memory_slots, memory_width and read_heads must be >= 1, write_heads >= 0."
            )
        if implementation not in ("fast", "reference"):
            raise OptionsError(f"ntm: implementation must be 'fast' or 'reference', got {implementation!r}.")
        if not 0 <= shift_range < memory_slots:
            raise OptionsError(f"ntm: shift_range must be in [0, memory_slots), got {shift_range}.")
        N, M, C, R, W = memory_slots, memory_width, hidden_size, read_heads, write_heads
        self.N, self.M, self.C, self.R, self.W = N, M, C, R, W
        self.n_shifts = 2 * shift_range + 1
        self.controller_kind = controller
        self.controller_clip = controller_clip
        self.fast = implementation == "fast"

        ctrl_in = input_size + R * M
        if controller == "lstm":
            self.controller = nn.LSTMCell(ctrl_in, C)
            set_forget_bias(self.controller)  # 1, as for every LSTM here
        else:
            self.controller = nn.Linear(ctrl_in, C)
        # One fused projection for every head: key M, β, g, γ, shifts; write heads add erase M and add M.
        self.per_head = M + 3 + self.n_shifts
        self.head_params = nn.Linear(C, (R + W) * self.per_head + W * 2 * M)
        self.output = nn.Linear(C + R * M, hidden_size)

        # Learned initial state, reset for every sequence.
        self.memory_bias = nn.Parameter(torch.full((N, M), 1e-6))
        self.read_bias = nn.Parameter(torch.zeros(R, M))
        w0 = torch.full((R + W, N), -10.0)
        w0[:, 0] = 10.0  # start focused on slot 0
        self.weight_logits = nn.Parameter(w0)
        if controller == "lstm":
            self.h0 = nn.Parameter(torch.zeros(C))
            self.c0 = nn.Parameter(torch.zeros(C))
        lstm_state = 2 * C if controller == "lstm" else 0
        self.state_size = lstm_state + N * M + R * M + (R + W) * N

    def _split(self, p: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Controller projection (B, P) -> addressing parameters for all heads, and erase/add vectors."""
        B, H, M, W = p.shape[0], self.R + self.W, self.M, self.W
        heads = p[:, : H * self.per_head].view(B, H, self.per_head)
        key = heads[..., :M]  # (B, H, M)
        beta = F.softplus(heads[..., M])  # (B, H)
        gate = torch.sigmoid(heads[..., M + 1])
        gamma = 1 + F.softplus(heads[..., M + 2])
        shift = torch.softmax(heads[..., M + 3 :], dim=-1)  # (B, H, 2S+1)
        ea = p[:, H * self.per_head :].view(B, W, 2, M)
        return key, beta, gate, shift, gamma, torch.sigmoid(ea[:, :, 0]), torch.tanh(ea[:, :, 1])

    def _initial_state(self, B: int) -> tuple[torch.Tensor, ...]:
        memory = self.memory_bias.expand(B, -1, -1)  # (B, N, M)
        reads = self.read_bias.expand(B, -1, -1).reshape(B, -1)  # (B, R*M)
        w = torch.softmax(self.weight_logits, dim=-1).expand(B, -1, -1)  # (B, R+W, N)
        return memory, reads, w

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, I) -> (B, T, hidden)
        ops = cpp_loops.ops_for("ntm", x.device) if self.fast else None
        if ops is not None:
            return self._forward_loop(ops, x)
        return self.reference_forward(x)

    def _loop_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """The C++ loop's inputs: the input projection of every step in one product (xp (T, B, G)), the
        controller's recurrent and read columns as one matrix ([Whh | Wr]: one product a step) and dims."""
        n_in = x.shape[2]
        ctrl = self.controller
        if self.controller_kind == "lstm":
            Wx, bias = ctrl.weight_ih[:, :n_in], ctrl.bias_ih + ctrl.bias_hh
            Wc = torch.cat([ctrl.weight_hh, ctrl.weight_ih[:, n_in:]], dim=1)
        else:
            Wx, bias, Wc = ctrl.weight[:, :n_in], ctrl.bias, ctrl.weight[:, n_in:]
        # time-major input first: linear over a transposed view is ~2x slower, and its output would need the
        # copy the loop's contiguity asks for
        xp = torch.nn.functional.linear(x.transpose(0, 1).contiguous(), Wx, bias)
        dims = [self.N, self.M, self.R, self.W, (self.n_shifts - 1) // 2, int(self.controller_kind == "lstm")]
        return xp, Wc, dims

    def _forward_loop(self, ops, x: torch.Tensor) -> torch.Tensor:
        """The C++ loop (ntm_loops.py): the controller's input projection of all steps in one product, then
        the recurrence with its hand-written backward, then the read-out of all steps in one product."""
        B = x.shape[0]
        memory, reads, w = self._initial_state(B)
        if self.controller_kind == "lstm":
            h0, c0 = self.h0.expand(B, -1), self.c0.expand(B, -1)
        else:
            h0 = c0 = x.new_zeros(B, self.C)
        xp, Wc, dims = self._loop_inputs(x)
        hp = self.head_params
        memory = memory.transpose(1, 2)  # (B, M, N): the loops hold the memory slot-minor
        hr0 = torch.cat([h0, reads], dim=-1)
        hr = ntm_loop(ops, dims, self.controller_clip, EPS, xp, Wc, hp.weight, hp.bias, memory, hr0, w, c0)
        return self.output(hr).transpose(0, 1)  # [h_t | r_t] (T, B, C + R M) -> (B, T, hidden)

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The equations step by step through autograd: the specification of the C++ loop, and its fallback."""
        return self._reference(x, self._start(x.shape[0]))[0]

    def _start(self, B: int) -> tuple[torch.Tensor, ...]:
        """The learned initial state, expanded to the batch: (memory, reads, w[, h, c])."""
        memory, reads, w = self._initial_state(B)
        if self.controller_kind == "lstm":
            return memory, reads, w, self.h0.expand(B, -1), self.c0.expand(B, -1)
        return memory, reads, w

    def _reference(
        self, x: torch.Tensor, state: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        outputs = []
        for x_t in x.unbind(1):  # unbind, not x[:, t]: indexing makes backward quadratic in T
            out, state = self.step(x_t, state)
            outputs.append(out)
        return torch.stack(outputs, dim=1), state  # (B, T, hidden)

    # -- the stateful protocol (seqbench.stateful) ----------------------------------------------------------
    def initial_state(
        self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> tuple[torch.Tensor, ...]:
        """(memory (B, N, M), reads (B, R M), weightings (B, R + W, N)[, controller h, c (B, C)]): the learned
        initial state, a function of its parameters (a trainer that starts a window detaches it)."""
        return tuple(s.to(device=device, dtype=dtype).contiguous() for s in self._start(batch_size))

    def step(
        self, x_t: torch.Tensor, state: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """One step of the equations, x_t (B, I) -> (B, hidden)."""
        B = x_t.shape[0]
        memory, reads, w = state[:3]
        ctrl_in = torch.cat([x_t, reads], dim=-1)
        if self.controller_kind == "lstm":
            h, c = self.controller(ctrl_in, (state[3], state[4]))
        else:
            h = torch.tanh(self.controller(ctrl_in))
        p = self.head_params(h)
        if self.controller_clip > 0:
            p = p.clamp(-self.controller_clip, self.controller_clip)
        key, beta, gate, shift, gamma, erase, add = self._split(p)
        w = address(memory, w, key, beta, gate, shift, gamma)  # (B, R+W, N)
        w_read, w_write = w[:, : self.R], w[:, self.R :]
        read_vectors = torch.bmm(w_read, memory)  # (B, R, M), before this step's write
        reads = read_vectors.reshape(B, -1)
        for h_w in range(self.W):
            # Erase then add, head after head: M ⊙ (1 - w e^T) + w a^T. (A loop over the few write
            # heads: torch.prod over heads has a slow backward.)
            w_h = w_write[:, h_w].unsqueeze(-1)  # (B, N, 1)
            memory = memory * (1 - w_h * erase[:, h_w].unsqueeze(1)) + w_h * add[:, h_w].unsqueeze(1)
        out = self.output(torch.cat([h, reads], dim=-1))
        return out, ((memory, reads, w, h, c) if self.controller_kind == "lstm" else (memory, reads, w))

    def forward_state(
        self, x: torch.Tensor, state: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Without autograd (evaluation streams) the C++ loop from `state`; with it, the reference
        equations: the C++ backward takes no gradient into the final memory, weightings or cell state."""
        ops = cpp_loops.ops_for("ntm", x.device) if self.fast and not torch.is_grad_enabled() else None
        if ops is None:
            return self._reference(x, state)
        xp, Wc, dims = self._loop_inputs(x)
        lstm = self.controller_kind == "lstm"
        memory, reads, w = state[:3]
        h0, c0 = (state[3], state[4]) if lstm else (x.new_zeros(x.shape[0], self.C),) * 2
        hp = self.head_params
        hr0 = torch.cat([h0, reads], dim=-1)
        tensors = (xp, Wc, hp.weight, hp.bias, memory.transpose(1, 2), hr0, w, c0)
        # with the history kept (the last argument): the final memory, weightings and cell state come back
        saved = ops.ntm_forward(*(t.contiguous() for t in tensors), dims, self.controller_clip, EPS, True)
        hr, cs, mems, ws = saved[0], saved[1], saved[4], saved[5]
        out = self.output(hr[1:]).transpose(0, 1)
        C = self.C
        final = (mems[-1].transpose(-1, -2), hr[-1][:, C:], ws[-1])
        return out, ((*final, hr[-1][:, :C], cs[-1]) if lstm else final)
