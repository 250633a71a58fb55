"""The read-out at the scored steps only (`network.scored_forward`) against the full read-out then the
task's masking, in float64: loss, every metric and every gradient, for every task that names the steps it
reads; and where the runner takes it (sparse masks) and where it does not."""

from __future__ import annotations

import pytest
import torch

import seqbench
from seqbench import network
from seqbench.network import build_network, scored_forward, scored_steps
from seqbench.registry import TASKS
from seqbench.tasks.base import Batch


def _task(name: str):
    return seqbench.load_task(name, **getattr(TASKS.get(name), "test_options", {}))


def _double(batch: Batch) -> Batch:
    def d(t: torch.Tensor) -> torch.Tensor:
        return t.double() if t.is_floating_point() else t

    return Batch(d(batch.inputs), d(batch.targets), batch.mask)


def _net(task, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_network(task, "lstm", 6, {}).double()


def _nudge(net: torch.nn.Module, task, batch: Batch) -> None:
    """Move the read-out's bias towards the targets on half the classes, so that accuracy is neither 0 nor 1
    and the metrics compare on something."""
    if batch.targets.dtype == torch.long:
        with torch.no_grad():
            net.read_out.bias[batch.targets[batch.mask][::2]] += 3.0


READERS = [n for n in TASKS.names() if scored_steps(_task(n), _task(n).sample(2, _task(n).train_length, torch.Generator().manual_seed(0)), sparse=1.0) is not None]  # fmt: skip


def test_the_sparse_tasks_name_their_read_steps():
    for name in ("mqar", "adding", "copy", "selective_copy", "associative_recall", "temporal_order"):
        assert name in READERS, name
    assert "permutation_composition" not in READERS  # overrides metrics, says nothing: full read-out


@pytest.mark.parametrize("name", READERS)
def test_scored_read_out_equals_full_read_out_then_masking(name, monkeypatch):
    """At any density (the runner's threshold lifted): the same loss, metrics and gradients, float64."""
    monkeypatch.setattr(network, "SPARSE_READ_OUT", 1.0)
    task = _task(name)
    batch = _double(task.sample(3, task.train_length, torch.Generator().manual_seed(3)))
    net = _net(task)
    _nudge(net, task, batch)

    full_out = net(batch.inputs)
    full_loss = task.loss(full_out, batch)
    full_grads = torch.autograd.grad(full_loss, list(net.parameters()), allow_unused=True)
    full_metrics = task.metrics(full_out.detach(), batch)

    out, cut = scored_forward(net, task, batch)
    assert out.shape[1] < full_out.shape[1] or bool(task.read_positions(batch).all())
    loss = task.loss(out, cut)
    grads = torch.autograd.grad(loss, list(net.parameters()), allow_unused=True)
    metrics = task.metrics(out.detach(), cut)

    torch.testing.assert_close(loss, full_loss, rtol=1e-12, atol=1e-12)
    assert metrics.keys() == full_metrics.keys()
    for k in metrics:
        assert metrics[k] == pytest.approx(full_metrics[k], rel=1e-12, abs=1e-12), k
    for (pname, _), g, fg in zip(net.named_parameters(), grads, full_grads, strict=True):
        if fg is None:
            assert g is None or not g.any(), pname
        else:
            torch.testing.assert_close(g, fg, rtol=1e-10, atol=1e-12, msg=pname)


def test_mqar_cuts_to_its_queries_with_real_padding():
    """Rows with fewer queries than the most are padded with steps that are not scored (mask False)."""
    task = seqbench.load_task("mqar", variant="seqbench", min_pairs=2, max_pairs=4)
    batch = task.sample(4, 4, torch.Generator().manual_seed(0))
    batch.mask[0, batch.mask[0].nonzero()[0]] = False  # row 0 now has one query fewer
    steps = scored_steps(task, batch)
    assert steps.shape == (4, 4)
    for row in range(4):
        picked = steps[row].tolist()
        assert len(set(picked)) == 4
        queries = batch.mask[row].nonzero().flatten().tolist()
        assert picked[: len(queries)] == queries  # the scored steps first, in order
        assert not batch.mask[row, picked[len(queries) :]].any()


def test_dense_masks_keep_the_full_read_out():
    """copy scores about half of its steps: above the runner's threshold, nothing is cut."""
    task = _task("copy")
    batch = task.sample(2, task.train_length, torch.Generator().manual_seed(0))
    assert batch.mask.float().mean() > network.SPARSE_READ_OUT
    assert scored_steps(task, batch) is None
    out, same = scored_forward(_net(task).float(), task, batch)
    assert same is batch and out.shape[:2] == batch.mask.shape


def test_a_task_overriding_the_loss_keeps_the_full_read_out():
    """A subclass with its own loss (it may read anywhere) is not cut unless it says where it reads."""
    from seqbench.tasks.selective_copy import SelectiveCopy

    class Everywhere(SelectiveCopy):
        def loss(self, outputs, batch):
            return outputs.mean()

    task = Everywhere()
    batch = task.sample(2, task.train_length, torch.Generator().manual_seed(0))
    assert SelectiveCopy().read_positions(batch) is not None
    assert task.read_positions(batch) is None and scored_steps(task, batch) is None


def test_the_training_step_and_the_evaluation_use_the_cut(monkeypatch):
    """The runner's step and its evaluator call `scored_forward`: an MQAR step reads out only the queries."""
    from seqbench.runner import Evaluator
    from seqbench.training import Training, training_config

    config = training_config("mqar", "lstm", "cpu", 1, batch_size=2, hidden_size=8)
    task = config.make_task()
    training = Training.build(config, task, torch.device("cpu"))
    shapes = []
    training.net.read_out.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
    batch = training.sample(torch.Generator().manual_seed(0))
    training.step(batch)
    assert shapes[-1][1] == int(batch.mask.sum(1).max()) < batch.steps
    results, _, _ = Evaluator(task, 2, torch.device("cpu"))(training.net, torch.device("cpu"), [4])
    assert shapes[-1][1] == 4 and 0.0 <= results[4]["accuracy"] <= 1.0
