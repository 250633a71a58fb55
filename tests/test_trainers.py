"""Trainers against their oracle, BPTT, in float64: RTRL exactly, TBPTT at k1 = k2 = T, TBPTT's reach."""

from __future__ import annotations

import pytest
import torch

import seqbench
from seqbench.errors import OptionsError
from seqbench.network import build_network
from seqbench.tasks.base import Batch
from seqbench.trainers import make_trainer
from seqbench.trainers.rtrl import rtrl
from seqbench.trainers.segments import bptt, slice_batch, tbptt
from seqbench.trainers.uoro import generator, uoro

H = 4


def setup(model: str, task: str = "copy_memory", layers: int = 1, **task_options):
    task_options = task_options or ({"T": 3, "copy_length": 2} if task == "copy_memory" else {})
    t = seqbench.load_task(task, **task_options)
    torch.manual_seed(0)
    net = build_network(t, model, H, {"num_layers": layers}).double()
    batch = t.sample(3, t.train_lengths[1], torch.Generator().manual_seed(1))
    if batch.inputs.is_floating_point():
        batch = Batch(batch.inputs.double(), batch.targets.double(), batch.mask)
    return t, net, batch


def grads(net) -> dict[str, torch.Tensor]:
    out = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    net.zero_grad(set_to_none=True)
    return out


def assert_same(a: dict, b: dict, atol: float = 1e-10) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=atol, rtol=0), (k, (a[k] - b[k]).abs().max().item())


@pytest.mark.parametrize("model", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("task,layers", [("copy_memory", 1), ("copy", 1), ("copy_memory", 2)])
def test_rtrl_equals_bptt_without_intermediate_updates(model, task, layers):
    t, net, batch = setup(model, task, layers)
    loss_b, _ = bptt(net, batch, t.loss)
    ref = grads(net)
    loss_r, _, updates = rtrl(net, batch, t.loss, online=False)
    assert updates == 0 and loss_r == pytest.approx(loss_b, abs=1e-12)
    assert_same(grads(net), ref)


def test_online_rtrl_updates_add_up_to_bptt():
    """Online: one update per scored step, each the mean over that step; weighted by its share of the
    scored positions they add up to BPTT's gradient (here the update only records and zeroes)."""
    t, net, batch = setup("lstm", "copy")
    bptt(net, batch, t.loss)
    ref = grads(net)
    seen: list[dict] = []
    rtrl(net, batch, t.loss, update=lambda: seen.append(grads(net)), online=True)
    shares = [int(batch.mask[:, i].sum()) / int(batch.mask.sum()) for i in range(batch.steps)]
    shares = [s for s in shares if s]
    assert len(seen) == len(shares)
    total = {k: sum(w * g[k] for w, g in zip(shares, seen, strict=True)) for k in ref}
    assert_same(total, ref)


@pytest.mark.parametrize("model", ["rnn", "lstm", "gru", "conv_rnn"])  # conv_rnn: segments, no step
@pytest.mark.parametrize("k", [None, 100])  # k1 = k2 = T, and beyond T
def test_tbptt_with_k1_k2_T_equals_bptt(model, k):
    t, net, batch = setup(model)
    k = k or batch.steps
    loss_b, _ = bptt(net, batch, t.loss)
    ref = grads(net)
    loss_t, _, updates = tbptt(net, batch, t.loss, k, k)
    assert updates == 1 and loss_t == pytest.approx(loss_b, abs=1e-12)
    assert_same(grads(net), ref)


@pytest.mark.parametrize("k1,k2", [(4, 4), (2, 5), (3, 7), (1, 1)])
def test_tbptt_gradient_reaches_back_exactly_k2_steps(k1, k2):
    """The loss at update time tau credits inputs tau-k2 .. tau-1 (0-based) and nothing earlier."""
    t, net, batch = setup("lstm", "adding", T=24)
    tau = 2 * k1 + k1 * (12 // k1)  # an update time well inside the sequence
    mask = torch.zeros_like(batch.mask)
    mask[:, tau - 1] = True  # only the last step of that update's segment is scored
    x = batch.inputs.clone().requires_grad_(True)
    tbptt(net, Batch(x, batch.targets, mask), t.loss, k1, k2)
    reached = x.grad.abs().sum(dim=(0, 2)) > 0  # (T,)
    expected = torch.zeros_like(reached)
    expected[max(0, tau - k2) : tau] = True
    assert torch.equal(reached, expected), (reached.nonzero().flatten().tolist(), tau, k2)


def test_tbptt_carries_state_across_batches():
    """With k1 = k2 dividing the first batch's length, two batches with the state carried equal one."""
    t, net, batch = setup("gru", "adding", T=12)
    tbptt(net, batch, t.loss, 4, 4)
    whole = grads(net)
    _, state, _ = tbptt(net, slice_batch(batch, 0, 8), t.loss, 4, 4)
    tbptt(net, slice_batch(batch, 8, 12), t.loss, 4, 4, state=state)
    assert_same(grads(net), whole)


@pytest.mark.parametrize("model", ["rnn", "lstm"])
def test_uoro_is_exact_on_one_step_and_unbiased(model):
    t, net, batch = setup(model, "adding", T=3)
    one = slice_batch(batch, 0, 1)
    one = Batch(one.inputs, one.targets, torch.ones_like(one.mask))
    bptt(net, one, t.loss)
    ref = grads(net)
    uoro(net, one, t.loss, generator(torch.device("cpu"), 0), online=False)
    assert_same(grads(net), ref)
    # Unbiased: 4,000 copies of one sequence, each with its own random signs; their mean estimate is
    # close to the exact gradient (the error shrinks as 1/sqrt(copies)).
    seq = slice_batch(batch, 0, 3)
    many = Batch(
        *(v[:1].expand(4000, *v.shape[1:]).contiguous() for v in (seq.inputs, seq.targets, seq.mask))
    )
    bptt(net, many, t.loss)
    ref = torch.cat([g.flatten() for g in grads(net).values()])
    uoro(net, many, t.loss, generator(torch.device("cpu"), 0), online=False)
    est = torch.cat([g.flatten() for g in grads(net).values()])
    assert (est - ref).norm() < 0.1 * ref.norm()


def test_rtrl_refuses_a_wide_model_with_its_cost():
    t, _, _ = setup("rnn")
    net = build_network(t, "lstm", 128, {})
    with pytest.raises(OptionsError, match=r"FLOPs per time step.*--hidden-size"):
        make_trainer("rtrl").check(net, 32, "lstm", 128)


def test_trainer_configuration_errors():
    with pytest.raises(OptionsError, match="k1 <= k2"):
        make_trainer("tbptt", {"k1": 5, "k2": 2})
    with pytest.raises(OptionsError, match="Unknown trainer"):
        make_trainer("rtlr")
    with pytest.raises(OptionsError, match="unknown option"):
        make_trainer("tbptt", {"k3": 1})
    t, _, _ = setup("rnn")
    plain = build_network(t, "memory_network", 8, {})  # attends over every earlier step: no carried state
    with pytest.raises(OptionsError, match="lacks initial_state"):
        make_trainer("tbptt").check(plain, 2, "memory_network", 8)
    make_trainer("bptt").check(plain, 2, "memory_network", 8)  # the plain contract is enough for episodes
    with pytest.raises(OptionsError, match="on a stream"):
        make_trainer("bptt").check(plain, 2, "memory_network", 8, stream=True)


@pytest.mark.parametrize(
    "model,options",
    [
        ("gru_cho", {"num_layers": 2}),
        ("lstm_peephole", {"num_layers": 2}),
        ("lstm_fgr", {}),
        ("ntm", {"memory_slots": 4, "memory_width": 3}),
        ("ntm", {"memory_slots": 4, "memory_width": 3, "controller": "feedforward"}),
        ("dnc", {"memory_slots": 4, "memory_width": 3, "read_heads": 1}),
        ("stack_rnn", {"depth": 3, "stack_width": 2}),
        ("clockwork_rnn", {"modules": 3}),
        ("clockwork_rnn", {"periods": [1, 3], "num_layers": 2}),
        ("depth_gated_lstm", {}),
        ("grid_lstm", {"tied": True}),
    ],
)
def test_rtrl_and_whole_tbptt_equal_bptt_on_the_later_stateful_models(model, options):
    """The Greff cells, gru_cho and the memory models. The NTM's and DNC's initial state is learned: TBPTT
    from the model's own initial state leaves it attached, and RTRL starts its influence at ∂s_0/∂θ."""
    t = seqbench.load_task("copy_memory", T=3, copy_length=2)
    torch.manual_seed(0)
    net = build_network(t, model, H, options).double()
    batch = t.sample(3, t.train_lengths[1], torch.Generator().manual_seed(1))
    loss_b, _ = bptt(net, batch, t.loss)
    ref = grads(net)
    loss_t, _, _ = tbptt(net, batch, t.loss, batch.steps, batch.steps)
    assert loss_t == pytest.approx(loss_b, abs=1e-12)
    assert_same(grads(net), ref)
    loss_r, _, _ = rtrl(net, batch, t.loss, online=False)
    assert loss_r == pytest.approx(loss_b, abs=1e-12)
    assert_same(grads(net), ref)
