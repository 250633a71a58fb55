"""End-to-end memory network (Sukhbaatar, Szlam, Weston & Fergus 2015, "End-To-End Memory Networks",
arXiv:1503.08895), in the streaming contract.

K hops of soft attention over memories (§2.1-2.2):

    p_i = softmax_i(uᵀ m_i)        o = Σ_i p_i c_i        u ← u + o       (repeated K times)

with adjacent weight tying (§2.2): K + 1 embedding matrices E_0 … E_K, hop k reads its memories through
A^k = E_{k-1} and its outputs through C^k = E_k, and the query embedding is B = E_0. Temporal encoding
(§4.1): m_i = A x_i + T_A(age_i), c_i = C x_i + T_C(age_i), with learned T_A, T_C per hop (tied the same way)
and age = how many memories back the item lies (the paper indexes memories in reverse order, i.e. by age).

Streaming: the model sees one input per step and must answer at every step without looking ahead. With
`sentence_length = J` the inputs are grouped into consecutive chunks of J steps (sentences: every sentence of
`language_facts` is six tokens); a memory is a finished chunk, combined with the paper's position encoding
(§4.1, m = Σ_j l_j ⊙ A x_j, l_kj = (1 - j/J) - (k/d)(1 - 2j/J)); the query at step t is the position-encoded
part of the current chunk seen so far. J = 1 (the default): every earlier input is a memory and the query is
the current input. Memories are the chunks strictly before the current one, so the answer at t never depends
on inputs after t. Everything is computed for all steps at once with a causal mask, not a loop over time:
O(T · T/J) per hop, quadratic by design. Exponent of the train step's time against length: 1.95 (J = 1,
H 128, batch 32, T = 100 and 1000, one thread: `seqbench bench --model memory_network --length 100 --length
1000`), against 1 for the recurrent models; 2.4x nn.LSTM at T = 100, 22.5x at T = 1000.

Departures: no linear start or random empty memories (training tricks of §4.2), the answer read-out
(W = C^K in the paper) is the network's shared linear read-out, and ages beyond `max_age` share the last
temporal embedding. The model's output at t is u after the last hop (hidden_size = embedding width d).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from seqbench.errors import OptionsError


def position_encoding(J: int, d: int) -> torch.Tensor:
    """The paper's l_kj for a sentence of J words and embedding width d: (J, d), 1-indexed j and k."""
    j = torch.arange(1, J + 1, dtype=torch.float32).unsqueeze(1)
    k = torch.arange(1, d + 1, dtype=torch.float32).unsqueeze(0)
    return (1 - j / J) - (k / d) * (1 - 2 * j / J)


def hop_attention(
    u: torch.Tensor, mem: torch.Tensor, age_logits: torch.Tensor, visible: torch.Tensor
) -> torch.Tensor:
    """Attention weights p (B, T, S) of queries u (B, T, d) over memories mem (B, S, d).

    `age_logits` (B, T, S) is uᵀ T_A(age) already gathered; `visible` (T, S) says which memories step t may
    read. Rows with nothing visible (the first chunk) get all-zero weights."""
    logits = torch.bmm(u, mem.transpose(1, 2)) + age_logits
    logits = logits.masked_fill(~visible, float("-inf"))
    any_visible = visible.any(dim=1, keepdim=True)  # (T, 1)
    # A row with no memory would be softmax(-inf, ...) = NaN: give it one dummy logit, then zero it.
    logits = logits.masked_fill(~any_visible & (torch.arange(visible.shape[1], device=u.device) == 0), 0.0)
    return torch.softmax(logits, dim=-1) * any_visible


class MemoryNetwork(nn.Module):
    presets: ClassVar[dict[str, dict]] = {
        # Sukhbaatar et al. clip the gradient's L2 norm at 40 (§4.2); Adam 1e-3 from the runner.
        "quick": {"clip": "norm", "clip_value": 40.0},
    }

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        hops: int = 3,
        sentence_length: int = 1,  # J: inputs per memory; 6 for language_facts' sentences
        max_age: int = 256,  # temporal encodings for ages 1..max_age (older memories share the last)
        temporal_encoding: bool = True,
    ) -> None:
        super().__init__()
        if hops < 1:
            raise OptionsError(f"memory_network: hops must be >= 1, got {hops}.")
        if sentence_length < 1 or max_age < 1:
            raise OptionsError("memory_network: sentence_length and max_age must be >= 1.")
        d = hidden_size
        self.hops, self.J, self.max_age, self.temporal = hops, sentence_length, max_age, temporal_encoding
        # Adjacent tying: E_0 = B = A^1, E_k = C^k = A^{k+1}.
        self.embed = nn.ModuleList(nn.Linear(input_size, d, bias=False) for _ in range(hops + 1))
        for e in self.embed:
            nn.init.normal_(e.weight, std=0.1)  # the paper's N(0, 0.1) initialisation
        if temporal_encoding:
            self.age = nn.Parameter(torch.randn(hops + 1, max_age, d) * 0.1)  # T_0 … T_K, index = age - 1
        if sentence_length > 1:
            self.register_buffer("pe", position_encoding(sentence_length, d), persistent=False)
        # Floats held per step of history: one memory and one output vector per hop's embedding, per chunk.
        self.state_size = 0
        self.state_per_step = -(-(hops + 1) * d // sentence_length)

    def _chunks(self, e: torch.Tensor, S: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Embedded inputs e (B, T, d) -> memories (B, S, d) and the queries' partial sums (B, T, d)."""
        B, T, d = e.shape
        if self.J == 1:
            return e, e
        e = torch.nn.functional.pad(e, (0, 0, 0, S * self.J - T)).view(B, S, self.J, d) * self.pe
        return e.sum(2), e.cumsum(2).reshape(B, S * self.J, d)[:, :T]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, I) -> (B, T, d)
        B, T, _ = x.shape
        S = -(-T // self.J)  # chunks
        t_chunk = torch.arange(T, device=x.device) // self.J
        s = torch.arange(S, device=x.device)
        visible = s.unsqueeze(0) < t_chunk.unsqueeze(1)  # (T, S): only finished chunks before t's own
        n_age = min(S, self.max_age)  # ages that occur in this sequence
        age = (t_chunk.unsqueeze(1) - s.unsqueeze(0)).clamp(1, n_age) - 1  # (T, S), index into T_k

        embedded = [self._chunks(e(x), S) for e in self.embed]  # per E_k: (memories, query sums)
        u = embedded[0][1]  # B x: the current (partial) chunk's query
        for k in range(1, self.hops + 1):
            a_mem, c_mem = embedded[k - 1][0], embedded[k][0]
            if self.temporal:
                # uᵀ T_A(age) for every (t, s): project u on every age's vector, then pick the pair's age.
                ta, tc = self.age[k - 1, :n_age], self.age[k, :n_age]
                age_logits = torch.gather(u @ ta.T, 2, age.unsqueeze(0).expand(B, -1, -1))
            else:
                age_logits = u.new_zeros(())
            p = hop_attention(u, a_mem, age_logits, visible)  # (B, T, S)
            o = torch.bmm(p, c_mem)
            if self.temporal:
                # Σ_s p_ts T_C(age_ts): sum p into age bins, then one product with T_C.
                by_age = u.new_zeros(B, T, n_age).scatter_add_(2, age.unsqueeze(0).expand(B, -1, -1), p)
                o = o + by_age @ tc
            u = u + o
        return u
