"""Differentiable Neural Computer (Graves, Wayne, Reynolds et al. 2016, "Hybrid computing using a neural
network with dynamic external memory", Nature 538; equations from its Methods section).

An LSTM controller reads [x_t, r_{t-1}] and emits an interface vector per step. With memory M (N x W), R read
heads and one write head, at every step (all sequences of the batch at once; no loop over slots or batch):

    retention   ψ = Π_r (1 - f_r ⊙ w^r_{t-1,r})                               free gates f_r
    usage       u = (u_{t-1} + w^w_{t-1} - u_{t-1} ⊙ w^w_{t-1}) ⊙ ψ
    allocation  φ = slots sorted by usage, ascending; a[φ_j] = (1 - u[φ_j]) Π_{i<j} u[φ_i]
    write       w^w = g^w (g^a a + (1 - g^a) C(M_{t-1}, k^w, β^w))
    memory      M = M_{t-1} ⊙ (1 - w^w eᵀ) + w^w vᵀ
    links       L[i,j] = (1 - w^w_i - w^w_j) L_{t-1}[i,j] + w^w_i p_{t-1}[j],  L[i,i] = 0
    precedence  p = (1 - Σ_i w^w_i) p_{t-1} + w^w
    read        w^r = π_b L_tᵀ w^r_{t-1} + π_c C(M_t, k^r, β^r) + π_f L_t w^r_{t-1};  r = M_tᵀ w^r

C(M, k, β) = softmax_i(β cos(k, M_i)). Strengths go through oneplus (1 + softplus), gates and erase through σ,
read modes π through a softmax over (backward, content, forward). The module's output is a linear map of
[controller output, r_t] (the paper's v_t + W_r r_t, merged into one read-out).

Stateful protocol (`seqbench.stateful`): the state is (h, c, M, L, u, p, w^w, w^r, r), batch first; `forward` is
`forward_state` from the learned initial controller state and an empty memory. `step` is the equations above
(all differentiable ops) and the specification. `forward_state` runs, with `implementation="fast"` (the
default), `cpp_loop` on the CPU: the whole time loop in C++ with a hand-written backward (csrc/dnc_loops.cpp;
the controller's and interface's products as ATen calls, the addressing, write, links and reads as plain
loops over each sequence's memory; two steps of state under no_grad). Where it does not build or run (no
compiler, a GPU, SEQBENCH_LSTM_KERNEL=python) it runs `fast_loop`: the same equations through autograd with
fewer ops per step (the controller's input projection and the read-out of all steps in one product each,
the links' update, the memory's write and the allocation one autograd node each). `implementation=
"reference"` runs `reference_loop`, a loop over `step`. All three agree in float64 (tests/test_dnc_fast.py):
outputs, final state and every gradient, into the starting state too; float32 results differ by rounding.
Train step at H 128, batch 32, one thread, `seqbench bench` on a shared machine (results/reference/bench-dnc.md):
the C++ loop 3.4-4.2x nn.LSTM at T = 100 and 2.4-2.8x at T = 1000 (the loop over `step` and `fast_loop`
8-14x), peak memory 0.6x theirs; about half its time is the controller's products.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from seqbench.errors import OptionsError
from seqbench.models import cpp_loops
from seqbench.models.common import set_forget_bias
from seqbench.models.ntm import EPS as _CONTENT_EPS
from seqbench.models.ntm import content_weights

_EPS = 1e-6


def allocation_weights(usage: torch.Tensor) -> torch.Tensor:
    """a[φ_j] = (1 - u[φ_j]) Π_{i<j} u[φ_i], φ the slots sorted by usage (B, N) -> (B, N).

    Usage is squeezed into [ε, 1] first (as in DeepMind's release) so that the product never has an exact
    zero and the least-used slot is unique up to ties."""
    usage = _EPS + (1 - _EPS) * usage
    sorted_usage, order = torch.sort(usage, dim=-1)
    ones = torch.ones_like(sorted_usage[:, :1])
    before = torch.cumprod(torch.cat([ones, sorted_usage[:, :-1]], dim=-1), dim=-1)  # exclusive product
    return torch.zeros_like(usage).scatter(-1, order, (1 - sorted_usage) * before)


def update_links(
    links: torch.Tensor, precedence: torch.Tensor, w_write: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of the temporal link matrix (B, N, N) and precedence (B, N) given the write weighting (B, N)."""
    wi, wj = w_write.unsqueeze(2), w_write.unsqueeze(1)
    links = (1 - wi - wj) * links + wi * precedence.unsqueeze(1)
    links = links * (1 - torch.eye(links.shape[-1], device=links.device, dtype=links.dtype))
    precedence = (1 - w_write.sum(-1, keepdim=True)) * precedence + w_write
    return links, precedence


class DNC(nn.Module):
    presets: ClassVar[dict[str, dict]] = {
        # As the NTM's quick preset (Adam 1e-3 from the runner, L2-norm clip 10, controller 100).
        "quick": {"hidden_size": 100, "clip": "norm", "clip_value": 10.0},
    }

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        memory_slots: int = 32,  # N
        memory_width: int = 16,  # W
        read_heads: int = 2,  # R
        controller_clip: float = 20.0,  # clip the interface vector (as DeepMind's release does); 0 = off
        implementation: Literal[
            "fast", "reference"
        ] = "fast",  # `cpp_loop` (or `fast_loop`), or the loop over `step` they are checked against
    ) -> None:
        super().__init__()
        if memory_slots < 2 or memory_width < 1 or read_heads < 1:
            raise OptionsError("dnc: memory_slots must be >= 2, memory_width and read_heads >= 1.")
        if implementation not in ("fast", "reference"):
            raise OptionsError(f"dnc: implementation must be 'fast' or 'reference', got {implementation!r}.")
        self.fast = implementation == "fast"
        N, W, R, C = memory_slots, memory_width, read_heads, hidden_size
        self.N, self.W, self.R, self.C, self.clip = N, W, R, C, controller_clip
        self.controller = nn.LSTMCell(input_size + R * W, C)
        set_forget_bias(self.controller)  # 1, as for every LSTM here
        # Interface: read keys R*W, read strengths R, write key W, write strength 1, erase W, write vector W,
        # free gates R, allocation gate 1, write gate 1, read modes 3R.
        self.sizes = [R * W, R, W, 1, W, W, R, 1, 1, 3 * R]
        self.interface = nn.Linear(C, sum(self.sizes))
        self.output = nn.Linear(C + R * W, hidden_size)
        self.h0 = nn.Parameter(torch.zeros(C))
        self.c0 = nn.Parameter(torch.zeros(C))
        # controller h, c + memory + reads + read and write weightings + usage + precedence + links
        self.state_size = 2 * C + N * W + R * W + R * N + N + N + N + N * N

    def _interface(self, h: torch.Tensor) -> list[torch.Tensor]:
        return self._split(self.interface(h))

    def _split(self, xi: torch.Tensor) -> list[torch.Tensor]:
        B, R, W = xi.shape[0], self.R, self.W
        if self.clip > 0:
            xi = xi.clamp(-self.clip, self.clip)
        rk, rs, wk, ws, erase, wv, free, ga, gw, modes = torch.split(xi, self.sizes, dim=-1)
        return [
            rk.view(B, R, W),
            1 + F.softplus(rs),  # (B, R)
            wk.view(B, 1, W),
            1 + F.softplus(ws),  # (B, 1)
            torch.sigmoid(erase),
            wv,
            torch.sigmoid(free),  # (B, R)
            torch.sigmoid(ga),  # (B, 1)
            torch.sigmoid(gw),
            torch.softmax(modes.view(B, R, 3), dim=-1),  # backward, content, forward
        ]

    def _start(self, B: int, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(h, c, memory, links, usage, precedence, w_write, w_read, reads): the controller from its learned
        initial state, everything else zero."""
        N, W, R = self.N, self.W, self.R
        z = like.new_zeros
        h, c = self.h0.expand(B, -1), self.c0.expand(B, -1)
        return h, c, z(B, N, W), z(B, N, N), z(B, N), z(B, N), z(B, N), z(B, R, N), z(B, R * W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, I) -> (B, T, hidden)
        return self.forward_state(x, self._start(x.shape[0], x))[0]

    # -- the stateful protocol (seqbench.stateful) ----------------------------------------------------------
    def initial_state(
        self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> tuple[torch.Tensor, ...]:
        """The state `forward` starts from (see `_start`); h and c are the learned initial controller state,
        a function of its parameters (a trainer that starts a window detaches it)."""
        like = self.h0.to(device=device, dtype=dtype)
        return tuple(
            s.to(device=like.device, dtype=like.dtype).contiguous() for s in self._start(batch_size, like)
        )

    def forward_state(
        self, x: torch.Tensor, state: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        if not self.fast:
            return self.reference_loop(x, state)
        ops = None
        if x.dtype in (torch.float32, torch.float64):
            ops = cpp_loops.ops_for("dnc", x.device)
        if ops is None:
            return self.fast_loop(x, state)
        return self.cpp_loop(ops, x, state)

    def cpp_loop(
        self, ops: Any, x: torch.Tensor, state: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """The C++ loop (csrc/dnc_loops.cpp): the controller's input projection of all steps in one product,
        then the recurrence with its hand-written backward, then the read-out of all steps in one product."""
        h, c, memory, links, usage, precedence, w_write, w_read, reads = state
        n_in, C = x.shape[2], self.C
        ctrl = self.controller
        xp = F.linear(x.transpose(0, 1).contiguous(), ctrl.weight_ih[:, :n_in], ctrl.bias_ih + ctrl.bias_hh)
        Wc = torch.cat([ctrl.weight_hh, ctrl.weight_ih[:, n_in:]], dim=1)  # [Whh | Wr]: rows [h | r]
        tensors = (xp, Wc, self.interface.weight, self.interface.bias, torch.cat([h, reads], dim=-1), c)
        tensors += (memory, links, usage, precedence, w_write, w_read)
        tensors = tuple(t.contiguous() for t in tensors)
        dims, eps = [self.N, self.W, self.R], _CONTENT_EPS
        if torch.is_grad_enabled():
            hr, *final = _DNCLoop.apply(ops, dims, self.clip, eps, *tensors)
        else:  # no backward to come: two steps of history instead of T + 1
            saved = ops.dnc_forward(*tensors, dims, self.clip, eps, False)
            last = x.shape[1] % 2
            hr = saved[0][1:]
            final = [saved[1][last], *(saved[k][last] for k in range(4, 10))]
        out = self.output(hr).transpose(0, 1)  # [h_t | r_t] (T, B, C + R W) -> (B, T, hidden)
        c, memory, links, usage, precedence, w_write, w_read = final
        return out, (hr[-1][:, :C], c, memory, links, usage, precedence, w_write, w_read, hr[-1][:, C:])

    def reference_loop(
        self, x: torch.Tensor, state: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """`step` after `step`: the specification of `fast_loop`, and `implementation="reference"`."""
        outputs = []
        for x_t in x.unbind(1):  # unbind, not x[:, t]: indexing makes backward quadratic in T
            out, state = self.step(x_t, state)
            outputs.append(out)
        return torch.stack(outputs, dim=1), state

    def step(
        self, x_t: torch.Tensor, state: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """One step of the Methods' equations, x_t (B, I) -> (B, hidden)."""
        h, c, memory, links, usage, precedence, w_write, w_read, reads = state
        B, R, W = x_t.shape[0], self.R, self.W
        h, c = self.controller(torch.cat([x_t, reads], dim=-1), (h, c))
        rk, rs, wk, ws, erase, wv, free, ga, gw, modes = self._interface(h)

        retention = 1 - free[:, 0:1] * w_read[:, 0]  # Π over the few read heads (B, N); a loop,
        for r in range(1, R):  # as torch.prod's backward is slow
            retention = retention * (1 - free[:, r : r + 1] * w_read[:, r])
        usage = (usage + w_write - usage * w_write) * retention
        alloc = allocation_weights(usage)
        w_content = content_weights(memory, wk, ws).squeeze(1)  # (B, N)
        w_write = gw * (ga * alloc + (1 - ga) * w_content)
        memory = memory * (1 - w_write.unsqueeze(-1) * erase.unsqueeze(1)) + w_write.unsqueeze(
            -1
        ) * wv.unsqueeze(1)
        links, precedence = update_links(links, precedence, w_write)

        forward_w = torch.bmm(w_read, links.transpose(1, 2))  # (L w)_i = Σ_j L[i,j] w_j, per head
        backward_w = torch.bmm(w_read, links)  # (Lᵀ w)
        read_content = content_weights(memory, rk, rs)  # (B, R, N)
        w_read = modes[..., 0:1] * backward_w + modes[..., 1:2] * read_content + modes[..., 2:3] * forward_w
        reads = torch.bmm(w_read, memory).reshape(B, R * W)
        out = self.output(torch.cat([h, reads], dim=-1))
        return out, (h, c, memory, links, usage, precedence, w_write, w_read, reads)

    def fast_loop(
        self, x: torch.Tensor, state: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """`step`'s equations for all T steps with fewer ops per step (see the module's docstring)."""
        h, c, memory, links, usage, precedence, w_write, w_read, reads = state
        B, n_in = x.shape[0], x.shape[2]
        N, W, R, C = self.N, self.W, self.R, self.C
        ctrl = self.controller
        # The controller's gates: W_x x_t + b (all steps in one product) + [W_r | W_hh] [r_{t-1}; h_{t-1}].
        xp = F.linear(x.transpose(0, 1), ctrl.weight_ih[:, :n_in], ctrl.bias_ih + ctrl.bias_hh)  # (T, B, 4C)
        w_rec = torch.cat([ctrl.weight_ih[:, n_in:], ctrl.weight_hh], dim=1).t()  # (R W + C, 4C)
        w_if, b_if = self.interface.weight.t(), self.interface.bias
        keep = 1 - torch.eye(N, device=x.device, dtype=x.dtype)  # the links' zero diagonal
        mem_unit = F.normalize(memory, dim=-1, eps=_CONTENT_EPS)  # M_{t-1}'s rows, for the write key
        hs, rs = [], []
        for xp_t in xp.unbind(0):
            gates = torch.addmm(xp_t, torch.cat([reads, h], dim=-1), w_rec)
            sig = torch.sigmoid(gates)  # i, f, g, o (nn.LSTMCell's order); g's columns unused
            c = sig[:, C : 2 * C] * c + sig[:, :C] * torch.tanh(gates[:, 2 * C : 3 * C])
            h = sig[:, 3 * C :] * torch.tanh(c)
            rk, rs_, wk, ws, erase, wv, free, ga, gw, modes = self._split(torch.addmm(b_if, h, w_if))

            retention = 1 - free[:, 0:1] * w_read[:, 0]
            for r in range(1, R):
                retention = retention * (1 - free[:, r : r + 1] * w_read[:, r])
            usage = (usage + w_write - usage * w_write) * retention
            alloc = _Allocation.apply(usage)
            w_content = _content(mem_unit, wk, ws).squeeze(1)
            w_write = gw * (ga * alloc + (1 - ga) * w_content)
            memory = _Write.apply(memory, w_write, erase, wv)
            links = _Links.apply(links, precedence, w_write, keep)
            precedence = (1 - w_write.sum(-1, keepdim=True)) * precedence + w_write

            mem_unit = F.normalize(memory, dim=-1, eps=_CONTENT_EPS)
            forward_w = torch.bmm(w_read, links.transpose(1, 2))
            backward_w = torch.bmm(w_read, links)
            read_content = _content(mem_unit, rk, rs_)
            w_read = (
                modes[..., 0:1] * backward_w + modes[..., 1:2] * read_content + modes[..., 2:3] * forward_w
            )
            reads = torch.bmm(w_read, memory).reshape(B, R * W)
            hs.append(h)
            rs.append(reads)
        # the read-out of every step in one product: (T, B, C + R W) -> (B, T, hidden)
        out = self.output(torch.cat([torch.stack(hs), torch.stack(rs)], dim=-1)).transpose(0, 1)
        return out, (h, c, memory, links, usage, precedence, w_write, w_read, reads)


class _DNCLoop(torch.autograd.Function):
    """The C++ loop as one node: hr (T, B, C + R W), rows [h_t | r_t], and the final c, memory, links, usage,
    precedence and weightings, from the input projections xp (T, B, 4C) and the initial state; its backward
    takes a gradient into each of them and gives one to every input (csrc/dnc_loops.cpp)."""

    @staticmethod
    def forward(ctx, ops, dims, clip, eps, xp, Wc, Wi, bi, hr0, c0, M0, L0, u0, p0, ww0, wr0):  # type: ignore[override]
        saved = ops.dnc_forward(xp, Wc, Wi, bi, hr0, c0, M0, L0, u0, p0, ww0, wr0, dims, clip, eps, True)
        ctx.ops, ctx.dims, ctx.clip, ctx.eps = ops, dims, clip, eps
        ctx.save_for_backward(Wc, Wi, *saved)
        final = (saved[1][-1], *(saved[k][-1] for k in range(4, 10)))  # c, M, L, u, p, w^w, w^r
        return (saved[0][1:], *(f.clone() for f in final))

    @staticmethod
    def backward(ctx, dhr, dc, dM, dL, du, dp, dww, dwr):  # type: ignore[override]
        Wc, Wi, *saved = ctx.saved_tensors
        finals = tuple(g.contiguous() for g in (dhr, dc, dM, dL, du, dp, dww, dwr))
        grads = ctx.ops.dnc_backward(*finals, Wc, Wi, *saved, ctx.dims, ctx.clip, ctx.eps)
        return (None, None, None, None, *grads)


def _content(mem_unit: torch.Tensor, keys: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """`content_weights` given the memory's rows already normalised (B, N, W): the same ops."""
    sim = torch.bmm(F.normalize(keys, dim=-1, eps=_CONTENT_EPS), mem_unit.transpose(1, 2))
    return torch.softmax(beta.unsqueeze(-1) * sim, dim=-1)


class _Links(torch.autograd.Function):
    """`update_links`'s link matrix, L' = ((1 - w_i - w_j) L[i,j] + w_i p_j) ⊙ keep (B, N, N), as one node:
    its backward in a few products instead of autograd's pass over each element-wise op."""

    @staticmethod
    def forward(ctx, links, precedence, w_write, keep):  # type: ignore[override]
        wi, wj = w_write.unsqueeze(2), w_write.unsqueeze(1)
        ctx.save_for_backward(links, precedence, w_write, keep)
        return ((1 - wi - wj) * links + wi * precedence.unsqueeze(1)) * keep

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        links, precedence, w_write, keep = ctx.saved_tensors
        gk = grad * keep
        d_links = d_prec = d_w = None
        if ctx.needs_input_grad[0]:
            d_links = gk * (1 - w_write.unsqueeze(2) - w_write.unsqueeze(1))
        if ctx.needs_input_grad[1]:  # dp_j = Σ_i g[i,j] w_i
            d_prec = torch.bmm(w_write.unsqueeze(1), gk).squeeze(1)
        if ctx.needs_input_grad[2]:  # dw_k = Σ_j g[k,j] (p_j - L[k,j]) - Σ_i g[i,k] L[i,k]
            gl = gk * links
            d_w = torch.bmm(gk, precedence.unsqueeze(2)).squeeze(2) - gl.sum(2) - gl.sum(1)
        return d_links, d_prec, d_w, None


class _Write(torch.autograd.Function):
    """The memory's write, M' = M ⊙ (1 - w eᵀ) + w vᵀ (B, N, W), as one node with a hand-written backward."""

    @staticmethod
    def forward(ctx, memory, w_write, erase, value):  # type: ignore[override]
        ww = w_write.unsqueeze(2)
        ctx.save_for_backward(memory, w_write, erase, value)
        return memory * (1 - ww * erase.unsqueeze(1)) + ww * value.unsqueeze(1)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        memory, w_write, erase, value = ctx.saved_tensors
        d_mem = d_w = d_erase = d_value = None
        wrow = w_write.unsqueeze(1)  # (B, 1, N)
        if ctx.needs_input_grad[0]:
            d_mem = grad * (1 - w_write.unsqueeze(2) * erase.unsqueeze(1))
        gm = grad * memory if ctx.needs_input_grad[1] or ctx.needs_input_grad[2] else None
        if ctx.needs_input_grad[1]:  # dw_n = Σ_k g[n,k] (v_k - M[n,k] e_k)
            d_w = torch.bmm(grad, value.unsqueeze(2)).squeeze(2) - torch.bmm(gm, erase.unsqueeze(2)).squeeze(
                2
            )
        if ctx.needs_input_grad[2]:  # de_k = -Σ_n g[n,k] M[n,k] w_n
            d_erase = -torch.bmm(wrow, gm).squeeze(1)
        if ctx.needs_input_grad[3]:  # dv_k = Σ_n g[n,k] w_n
            d_value = torch.bmm(wrow, grad).squeeze(1)
        return d_mem, d_w, d_erase, d_value


class _Allocation(torch.autograd.Function):
    """`allocation_weights` as one node: the sort's permutation piecewise constant (as autograd treats it),
    and the exclusive product's backward without zeros (usage is squeezed into [ε, 1]):
    a_j = (1 - s_j) P_j, P_j = Π_{i<j} s_i  =>  ds_k = -g_k P_k + (Σ_{j>k} g_j a_j) / s_k."""

    @staticmethod
    def forward(ctx, usage):  # type: ignore[override]
        s, order = torch.sort(_EPS + (1 - _EPS) * usage, dim=-1)
        before = torch.cumprod(torch.cat([torch.ones_like(s[:, :1]), s[:, :-1]], dim=-1), dim=-1)
        a_sorted = (1 - s) * before
        ctx.save_for_backward(s, order, before, a_sorted)
        return torch.zeros_like(usage).scatter(-1, order, a_sorted)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        s, order, before, a_sorted = ctx.saved_tensors
        g = grad.gather(-1, order)
        ga = g * a_sorted
        after = ga.flip(-1).cumsum(-1).flip(-1) - ga  # Σ_{j>k} g_j a_j
        ds = (after / s - g * before) * (1 - _EPS)
        return torch.zeros_like(grad).scatter(-1, order, ds)
