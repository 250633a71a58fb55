"""Stack-augmented RNN (Joulin & Mikolov 2015, "Inferring Algorithmic Patterns with Stack-Augmented Recurrent
Nets", arXiv:1503.01007, §3.1).

A recurrent layer reads the input, its previous state and the top k elements of each stack:

    h_t = σ(U x_t + R h_{t-1} + P s_{t-1}[0:k])
    a_t = softmax(A h_t)                       over (push, pop, no-op), one distribution per stack
    s_t[0] = a_push σ(D h_t) + a_pop s_{t-1}[1] + a_no-op s_{t-1}[0]
    s_t[i] = a_push s_{t-1}[i-1] + a_pop s_{t-1}[i+1] + a_no-op s_{t-1}[i]

The stack is continuous: a soft action blends the three outcomes. The paper's stack elements are scalars
(`stack_width=1`); wider elements are the obvious extension and the default here. Stacks have a fixed
`depth`; what is pushed past the bottom is lost, and a pop brings an empty (zero) element up from below.
The paper's no-op action is an option (`no_op`, on by default; the paper uses it in some experiments).

Speed: the time loop runs in C++ with a hand-written backward (csrc/stack_loops.cpp) where the C++ loops build;
`implementation="reference"` (and the fallback elsewhere) is the loop below through autograd, its specification
(tests/test_stack_rnn_fast.py compares the two in float64, outputs and every gradient).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from seqbench.errors import OptionsError
from seqbench.models import cpp_loops

PUSH, POP, NO_OP = 0, 1, 2


def stack_update(stack: torch.Tensor, action: torch.Tensor, push_value: torch.Tensor) -> torch.Tensor:
    """One continuous stack step for all stacks of all sequences.

    stack (B, P, D, W): P stacks of depth D, elements of width W, index 0 the top; action (B, P, 3) over
    (push, pop, no-op), rows summing to 1 (no-op may be 0); push_value (B, P, W)."""
    pushed = torch.cat([push_value.unsqueeze(2), stack[:, :, :-1]], dim=2)  # everything moves down one
    popped = torch.cat([stack[:, :, 1:], torch.zeros_like(stack[:, :, :1])], dim=2)  # up one, empty below
    a = action.unsqueeze(-1).unsqueeze(-1)  # (B, P, 3, 1, 1)
    return a[:, :, PUSH] * pushed + a[:, :, POP] * popped + a[:, :, NO_OP] * stack


class StackRNN(nn.Module):
    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        stacks: int = 2,
        depth: int = 32,
        stack_width: int = 8,
        read_top: int = 2,  # k: how many top elements of each stack the recurrent layer reads
        no_op: bool = True,
        implementation: Literal[
            "fast", "reference"
        ] = "fast",  # the C++ loop, or the autograd loop it is checked against
    ) -> None:
        super().__init__()
        if stacks < 1 or depth < 2 or stack_width < 1 or not 1 <= read_top <= depth:
            raise OptionsError(
                "stack_rnn: stacks >= 1, depth >= 2, stack_width >= 1 and 1 <= read_top <= depth are required."
            )
        if implementation not in ("fast", "reference"):
            raise OptionsError(
                f"stack_rnn: implementation must be 'fast' or 'reference', got {implementation!r}."
            )
        self.P, self.D, self.W, self.k, self.no_op = stacks, depth, stack_width, read_top, no_op
        self.fast = implementation == "fast"
        self.input_proj = nn.Linear(input_size, hidden_size)  # U x + b
        self.recurrent = nn.Linear(hidden_size + stacks * read_top * stack_width, hidden_size, bias=False)
        self.actions = nn.Linear(hidden_size, stacks * (3 if no_op else 2))  # A
        self.push = nn.Linear(hidden_size, stacks * stack_width)  # D
        self.state_size = hidden_size + stacks * depth * stack_width

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, I) -> (B, T, H)
        ops = cpp_loops.ops_for("stack_rnn", x.device) if self.fast else None
        if ops is None:
            return self.reference_forward(x)
        drive = self.input_proj(x).transpose(0, 1).contiguous()  # (T, B, H), hoisted out of the loop
        dims = [self.P, self.D, self.W, self.k, 3 if self.no_op else 2]
        a, v = self.actions, self.push
        hs = _StackLoop.apply(ops, dims, drive, self.recurrent.weight, a.weight, a.bias, v.weight, v.bias)
        return hs.transpose(0, 1)

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The equations step by step through autograd: the specification of the C++ loop, and its fallback."""
        return self.forward_state(x, self.initial_state(x.shape[0], x.device, x.dtype))[0]

    def _cell(
        self, d_t: torch.Tensor, h: torch.Tensor, stack: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step from the input's drive d_t = U x_t + b: the new (h, stack)."""
        B, P = h.shape[0], self.P
        top = stack[:, :, : self.k].reshape(B, -1)
        h = torch.sigmoid(d_t + self.recurrent(torch.cat([h, top], dim=-1)))
        a = torch.softmax(self.actions(h).view(B, P, -1), dim=-1)
        if not self.no_op:
            a = torch.cat([a, a.new_zeros(B, P, 1)], dim=-1)
        return h, stack_update(stack, a, torch.sigmoid(self.push(h)).view(B, P, self.W))

    # The stateful protocol (seqbench.stateful): the state is (h (B, H), stacks (B, P, D, W)). `forward_state`
    # and `step` run the reference equations through autograd (the C++ loop starts from the empty stacks).

    def initial_state(
        self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """An empty state: h = 0 and every stack element 0, as `forward` starts."""
        w = self.recurrent.weight
        device, dtype = device or w.device, dtype or w.dtype
        h = torch.zeros(batch_size, self.recurrent.out_features, device=device, dtype=dtype)
        return h, torch.zeros(batch_size, self.P, self.D, self.W, device=device, dtype=dtype)

    def step(
        self, x_t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One step, x_t (B, I) -> h_t (B, H), and the state after it."""
        h, stack = self._cell(self.input_proj(x_t), *state)
        return h, (h, stack)

    def forward_state(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """A segment x (B, T, I) from `state`: its outputs (B, T, H) and the state after its last step."""
        drive = self.input_proj(x)
        outputs = []
        for d_t in drive.unbind(1):
            state = self._cell(d_t, *state)
            outputs.append(state[0])
        return torch.stack(outputs, dim=1), state


class _StackLoop(torch.autograd.Function):
    """hs (T, B, H) from drive (T, B, H) = U x + b; the C++ loop forward and its hand-written backward."""

    @staticmethod
    def forward(ctx, ops: Any, dims: list[int], drive, R, A, bA, D, bD):
        us, hs, acts, vs, stacks = ops.stack_forward(drive, R, A, bA, D, bD, dims)
        ctx.ops, ctx.dims = ops, dims
        ctx.save_for_backward(R, A, D, us, hs, acts, vs, stacks)
        return hs

    @staticmethod
    def backward(ctx, dhs):
        R, A, D, us, hs, acts, vs, stacks = ctx.saved_tensors
        grads = ctx.ops.stack_backward(dhs.contiguous(), R, A, D, us, hs, acts, vs, stacks, ctx.dims)
        return None, None, *grads
