"""The gradient-flow probe against cases whose answer is known."""

from __future__ import annotations

import torch
from click.testing import CliRunner

from seqbench.cli import main
from seqbench.network import build_network, load_task
from seqbench.probe import final_step_batch, gradient_profile
from seqbench.store import read_probes
from seqbench.tasks.base import Batch


def test_final_step_batch_keeps_each_sequences_last_scored_position():
    mask = torch.tensor([[0, 1, 1, 0], [1, 0, 0, 1], [0, 0, 1, 0]], dtype=torch.bool)
    b = final_step_batch(Batch(torch.zeros(3, 4, 2), torch.zeros(3, 4), mask))
    assert b.mask.tolist() == [[0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 1, 0]]


def test_without_recurrence_only_the_last_step_gets_a_gradient():
    """An Elman RNN with its recurrent matrix at zero is memoryless: the final loss reaches x_T only."""
    task = load_task("adding", T=12)
    torch.manual_seed(0)
    net = build_network(task, "rnn", 8, {})
    with torch.no_grad():
        net.core.rnn.weight_hh_l0.zero_()
    batch = task.sample(4, 12, torch.Generator().manual_seed(0))
    g = gradient_profile(net, task, batch)
    assert g[-1] > 0 and torch.equal(g[:-1], torch.zeros(11))


def test_with_recurrence_the_gradient_reaches_back():
    task = load_task("adding", T=12)
    torch.manual_seed(0)
    net = build_network(task, "lstm", 8, {})
    g = gradient_profile(net, task, task.sample(4, 12, torch.Generator().manual_seed(0)))
    assert (g > 0).all()


def test_probe_command_stores_both_stages(tmp_path):
    args = ["probe", "--model", "rnn", "--task", "adding", "--task-opt", "T=10", "--steps", "2"]
    res = CliRunner().invoke(main, [*args, "--hidden-size", "4", "--results", str(tmp_path)])
    assert res.exit_code == 0, res.output
    p = read_probes(tmp_path)
    assert set(p["stage"]) == {"init", "trained"} and len(p) == 20
    assert (p[p["distance"] == 0]["relative"] == 1).all()
    assert set(p[p["stage"] == "trained"]["steps_trained"]) == {2}
