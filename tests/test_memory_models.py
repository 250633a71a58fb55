"""Memory-augmented and attention models against their definitions (issue 5): DNC allocation and links,
the stack, memory-network attention, the transformer's positions, conv_rnn's block alignment, and
`--params` sizing for every registered model."""

from __future__ import annotations

import math

import pytest
import torch

import seqbench
from seqbench.errors import OptionsError
from seqbench.models import memory_network as memnet
from seqbench.models.dnc import allocation_weights, update_links
from seqbench.models.stack_rnn import NO_OP, POP, PUSH, stack_update
from seqbench.models.transformer import sinusoidal_positions
from seqbench.network import count_params, hidden_for_params
from seqbench.registry import MODELS
from seqbench.testing import check_model

IN, H = 5, 8


@pytest.mark.parametrize(
    "name,options",
    [
        ("memory_network", {}),
        ("memory_network", {"sentence_length": 3, "temporal_encoding": False, "hops": 1}),
        ("lstm_attention", {"score": "additive"}),
        ("lstm_attention", {"window": 3, "num_layers": 2}),
        ("transformer", {"positions": "learned", "heads": 3}),
        ("conv_rnn", {"rnn": "gru", "stride": 1, "kernel": 2}),
        ("stack_rnn", {"no_op": False, "stacks": 1, "stack_width": 1}),
        ("ntm", {"controller": "feedforward", "read_heads": 2, "write_heads": 2, "memory_slots": 6}),
        ("dnc", {"read_heads": 1, "memory_slots": 4}),
    ],
)
def test_contract_with_options(name, options):
    check_model(MODELS.get(name), IN, H, **options)


# DNC


def test_allocation_gives_the_least_used_slot():
    usage = torch.tensor([[0.9, 0.1, 0.5, 0.7]])
    a = allocation_weights(usage)
    assert a.argmax().item() == 1
    # a[φ_j] = (1 - u[φ_j]) Π_{i<j} u[φ_i], φ = (1, 2, 3, 0); usage is squeezed into [1e-6, 1] first
    u = 1e-6 + (1 - 1e-6) * usage[0]
    expected = [(1 - u[0]) * u[1] * u[2] * u[3], 1 - u[1], (1 - u[2]) * u[1], (1 - u[3]) * u[1] * u[2]]
    assert torch.allclose(a[0], torch.stack(expected), atol=1e-6)
    assert a.sum() <= 1 + 1e-6


def test_allocation_of_a_free_slot_is_one_and_a_full_memory_allocates_nothing():
    a = allocation_weights(torch.tensor([[1.0, 1.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]]))
    assert torch.allclose(a[0], torch.tensor([0.0, 0.0, 1.0, 0.0]), atol=1e-5)
    assert a[1].sum() < 1e-5


def test_link_matrix_rows_and_columns_sum_to_at_most_one():
    torch.manual_seed(0)
    B, N = 4, 6
    links, precedence = torch.zeros(B, N, N), torch.zeros(B, N)
    for _ in range(30):
        w = torch.softmax(torch.randn(B, N) * 3, dim=-1) * torch.rand(B, 1)  # Σ w <= 1
        links, precedence = update_links(links, precedence, w)
        assert (
            (links >= -1e-7).all() and (links.sum(-1) <= 1 + 1e-6).all() and (links.sum(-2) <= 1 + 1e-6).all()
        )
        assert torch.allclose(torch.diagonal(links, dim1=1, dim2=2), torch.zeros(B, N))
        assert (precedence.sum(-1) <= 1 + 1e-6).all()


def test_links_record_the_order_of_writes():
    """Write slot 2, then slot 0 (hard weightings): L[0, 2] = 1 says 0 was written right after 2."""
    N = 4
    links, precedence = torch.zeros(1, N, N), torch.zeros(1, N)
    for slot in (2, 0):
        links, precedence = update_links(links, precedence, torch.eye(N)[slot].unsqueeze(0))
    assert links[0, 0, 2] == 1 and links.sum() == 1
    assert torch.equal(precedence[0], torch.eye(N)[0])


# Stack RNN


def hard(action: int, B: int = 2, P: int = 3) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.full((B, P), action), 3).float()


def test_push_then_pop_returns_the_pushed_value():
    torch.manual_seed(0)
    B, P, D, W = 2, 3, 5, 4
    stack = torch.randn(B, P, D, W)
    value = torch.randn(B, P, W)
    pushed = stack_update(stack, hard(PUSH), value)
    assert torch.equal(pushed[:, :, 0], value) and torch.equal(pushed[:, :, 1:], stack[:, :, :-1])
    popped = stack_update(pushed, hard(POP), torch.randn(B, P, W))
    assert torch.equal(popped[:, :, :-1], stack[:, :, :-1])  # back as before, but the bottom was lost
    assert torch.equal(popped[:, :, -1], torch.zeros(B, P, W))
    assert torch.equal(stack_update(stack, hard(NO_OP), value), stack)


def test_a_soft_action_blends_the_three_outcomes():
    stack = torch.arange(6.0).view(1, 1, 3, 2)
    value = torch.tensor([[[10.0, 20.0]]])
    a = torch.tensor([[[0.5, 0.25, 0.25]]])
    top = stack_update(stack, a, value)[0, 0, 0]
    assert torch.allclose(top, 0.5 * value[0, 0] + 0.25 * stack[0, 0, 1] + 0.25 * stack[0, 0, 0])


# Memory network


def capture_attention(monkeypatch) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    original = memnet.hop_attention

    def recording(*args):
        p = original(*args)
        seen.append(p.detach())
        return p

    monkeypatch.setattr(memnet, "hop_attention", recording)
    return seen


@pytest.mark.parametrize("J", [1, 3])
def test_memory_network_attention_sums_to_one_and_never_looks_ahead(monkeypatch, J):
    seen = capture_attention(monkeypatch)
    torch.manual_seed(0)
    model = seqbench.load_model("memory_network", IN, H, sentence_length=J, hops=3)
    T = 10
    model(torch.randn(2, T, IN))
    assert len(seen) == 3
    chunk = torch.arange(T) // J
    for p in seen:  # (B, T, chunks)
        visible = torch.arange(p.shape[-1]).unsqueeze(0) < chunk.unsqueeze(1)  # finished chunks only
        assert torch.equal(p[:, ~visible], torch.zeros_like(p[:, ~visible]))
        sums = p.sum(-1)
        has_memory = chunk > 0
        assert torch.allclose(sums[:, has_memory], torch.ones_like(sums[:, has_memory]), atol=1e-6)
        assert torch.equal(sums[:, ~has_memory], torch.zeros_like(sums[:, ~has_memory]))


def test_memory_network_one_hop_matches_the_equations():
    """J = 1, one hop, temporal encoding: u = B x_t, p = softmax_{s<t}(uᵀ(A x_s + T_A(t-s))),
    o = Σ p (C x_s + T_C(t-s)), output u + o, written as a loop."""
    torch.manual_seed(0)
    model = seqbench.load_model("memory_network", IN, H, hops=1, max_age=4)
    x = torch.randn(2, 7, IN)
    A, C = model.embed[0].weight, model.embed[1].weight
    TA, TC = model.age[0], model.age[1]
    out = model(x)
    for t in range(7):
        u = x[:, t] @ A.T  # B = A^1 = E_0
        o = torch.zeros(2, H)
        if t > 0:
            ages = [min(t - s, 4) - 1 for s in range(t)]  # older than max_age shares the last encoding
            m = x[:, :t] @ A.T + TA[ages]
            c = x[:, :t] @ C.T + TC[ages]
            p = torch.softmax((m @ u.unsqueeze(-1)).squeeze(-1), dim=-1)
            o = (p.unsqueeze(-1) * c).sum(1)
        assert torch.allclose(out[:, t], u + o, atol=1e-5), t


def test_position_encoding_is_the_papers():
    pe = memnet.position_encoding(4, 6)
    J, d = 4, 6
    for j in range(1, J + 1):
        for k in range(1, d + 1):
            assert math.isclose(
                pe[j - 1, k - 1].item(), (1 - j / J) - (k / d) * (1 - 2 * j / J), abs_tol=1e-6
            )


def test_memory_network_state_grows_with_the_history():
    m = seqbench.load_model("memory_network", IN, H, hops=3, sentence_length=2)
    assert m.state_size == 0 and m.state_per_step == 4 * H // 2
    assert seqbench.network.state_floats(m, 10) == (40 * H // 2, 4 * H // 2)


# Transformer, conv_rnn


def test_sinusoidal_positions():
    pe = sinusoidal_positions(5, 6)
    for pos in range(5):
        for i in range(3):
            angle = pos / 10000 ** (2 * i / 6)
            assert math.isclose(pe[pos, 2 * i].item(), math.sin(angle), abs_tol=1e-6)
            assert math.isclose(pe[pos, 2 * i + 1].item(), math.cos(angle), abs_tol=1e-6)


def test_learned_positions_refuse_longer_sequences():
    model = seqbench.load_model("transformer", IN, H, positions="learned", max_length=6)
    model(torch.randn(1, 6, IN))
    with pytest.raises(OptionsError, match="max_length=6"):
        model(torch.randn(1, 7, IN))


def test_conv_rnn_uses_a_block_as_soon_as_it_ends():
    """With stride 4, the RNN's first output reaches step 3 (the block's last step), and not step 2."""
    torch.manual_seed(0)
    model = seqbench.load_model("conv_rnn", IN, H, stride=4, kernel=4)
    model.eval()
    x = torch.randn(1, 12, IN)
    x2 = x.clone()
    x2[:, 0] += 5  # step 0 reaches steps 1-3 through the local convolution (width 4) and later steps via g
    a, b = model(x), model(x2)
    assert not torch.allclose(a[:, 3], b[:, 3]) and not torch.allclose(a[:, 4], b[:, 4])
    # At step 4 the local window (steps 1-4) no longer holds step 0: the change arrives through the RNN.
    with torch.no_grad():
        model.rnn.weight_ih_l0.zero_()  # cut the RNN path: now step 4 and later cannot see step 0
        assert torch.allclose(model(x)[:, 4:], model(x2)[:, 4:])


# --params for every model


@pytest.mark.parametrize("name", MODELS.names())
def test_params_within_ten_percent(name):
    task = seqbench.load_task("copy")
    target = 30_000
    hidden = hidden_for_params(task, name, target, {})
    actual = count_params(task, name, hidden, {})
    assert abs(actual - target) <= 0.1 * target, (name, hidden, actual)
